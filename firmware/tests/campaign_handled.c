/*
 * campaign_handled.c — every allocation failure handled: each result is
 * checked, everything allocated so far is freed, and main returns an error
 * code. `kalloc campaign --fail-each` (and --depth 2) finds no bug.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kalloc.h"

#define N 5

__attribute__((noipa)) static int build(void **slots)
{
    for (int i = 0; i < N; i++) {
        slots[i] = (i & 1) ? kmalloc(24 + 8 * i, GFP_KERNEL) : malloc(16 + 16 * i);
        if (!slots[i]) {
            while (i--)
                (i & 1) ? kfree(slots[i]) : free(slots[i]);
            return -1;
        }
    }
    return 0;
}

int main(void)
{
    void *slots[N];

    if (build(slots))
        return 3;
    for (int i = 0; i < N; i++)
        (i & 1) ? kfree(slots[i]) : free(slots[i]);
    printf("built and freed %d objects\n", N);
    return 0;
}
