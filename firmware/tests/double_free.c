/* double_free.c — frees one malloc object twice: kalloc reports double-free. */
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

int main(void)
{
    char *p = malloc(32);

    /* Otherwise GCC may drop a malloc whose only uses are frees. */
    __asm__ volatile("" : : "r"(p) : "memory");

    printf("freeing %s\n", "twice");
    free(p);
    free(p);
    return 0;
}
