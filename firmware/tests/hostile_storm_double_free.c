/*
 * hostile_storm_double_free.c — an error storm: frees one malloc object twice,
 * 200,000 times in a loop (one double-free report each time, all alike: same
 * pc, same allocation and free sites). kalloc reports it once with a count;
 * the run goes on, and normal allocations still work after the storm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

#ifndef ROUNDS
#define ROUNDS 200000
#endif

__attribute__((noinline)) static void free_twice(void)
{
    char *p = malloc(32);

    __asm__ volatile("" : : "r"(p) : "memory");     /* keep the malloc */
    free(p);
    free(p);
}

int main(void)
{
    for (int i = 0; i < ROUNDS; i++)
        free_twice();
    printf("storm over: %d double frees\n", ROUNDS);

    char *q = malloc(100);
    if (q == NULL)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    free(q);
    return 0;
}
