/*
 * hostile_args_linux_noops.c — calls Linux accepts quietly (issue 12):
 * kmem_cache_destroy(NULL) and dma_pool_destroy(NULL) are no-ops, and
 * kmemleak_not_leak() of a vmalloc pointer marks the area, so dropping the
 * pointer is no leak. Expect a clean run: exit 0, no report entries.
 */
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

static void *volatile keep;

int main(void)
{
    kmem_cache_destroy(NULL);
    dma_pool_destroy(NULL);

    char *v = vmalloc(2 * PAGE_SIZE);
    if (!v)
        return 1;
    memset(v, 0x5a, 2 * PAGE_SIZE);
    kmemleak_not_leak(v);
    keep = v;
    keep = NULL;                        /* nothing points at the area any more */
    v = NULL;

    char *q = kmalloc(64, GFP_KERNEL);
    if (!q)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
