/*
 * summary_mix.c — one run with every part of the text report's summary line:
 * the same double free three times (one entry, "x3"), one leak site of two
 * objects (24 + 40 bytes, definitely lost), and one refused allocation (an
 * oom warning). Exits 0; kalloc's status is 64.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kalloc.h"

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

static void *volatile sink;
static volatile int rounds = 3;  /* volatile: the loops stay loops (one call site each) */

/* noipa: one call site, so the three double frees are the same error */
__attribute__((noipa)) static void free_twice(void)
{
    char *p = malloc(32);

    sink = p;
    free(p);
    free(p);
}

__attribute__((noipa)) static void *leak_one(unsigned int size)
{
    return malloc(size);
}

int main(void)
{
    for (int i = 0; i < rounds; i++)
        free_twice();
    for (int i = 0; i < rounds - 1; i++)
        sink = leak_one(24 + 16 * (unsigned int)i);
    sink = NULL;
    void *big = kmalloc(64u << 20, GFP_KERNEL);  /* more than the board's RAM */
    printf("64 MiB: %s\n", big ? "allocated" : "refused");
    return 0;
}
