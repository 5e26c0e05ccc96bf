/*
 * probe_fragment.c — a run whose worst moment is not its end (kalloc run --probe).
 * Takes 64 KiB page blocks (order 4) until the page allocator says no
 * (__GFP_NOWARN: quietly), frees every other one — half the memory is free again,
 * in 64 KiB holes, so a 1 MiB request would fail although the pages are there —
 * then frees the rest: at the end the same request would succeed.
 */
#include <stdio.h>

#include "kalloc.h"

#define MAXBLOCKS 512

static void *blocks[MAXBLOCKS];

int main(void)
{
    unsigned int n = 0, i;

    while (n < MAXBLOCKS && (blocks[n] = alloc_pages(GFP_KERNEL | __GFP_NOWARN, 4)) != NULL)
        n++;
    for (i = 0; i < n; i += 2)
        free_pages(blocks[i], 4);
    printf("probe_fragment: %u blocks, every other one freed, %lu pages free\n", n, nr_free_pages());
    for (i = 1; i < n; i += 2)
        free_pages(blocks[i], 4);
    printf("probe_fragment: all freed, %lu pages free\n", nr_free_pages());
    return 0;
}
