/*
 * invalid_free.c — frees a pointer into the middle of an object, then a stack
 * address: kalloc reports invalid-free for each and the object stays live
 * until the last, correct free.
 */
#include <stdio.h>
#include <stdlib.h>

/* GCC sees both mistakes at compile time; they are the point of the test. */
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

int main(void)
{
    char *p = malloc(64);
    int on_stack = 0;

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    printf("interior pointer\n");
    free(p + 16);
    printf("stack address\n");
    free(&on_stack);
    free(p);
    return on_stack;
}
