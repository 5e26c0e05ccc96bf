/*
 * hostile_args_huge.c — one hypercall must never make the host allocate more
 * than the guest could use (issue 12, "host memory from one hypercall").
 *
 * Every call below asks for something no board can give: sizes near 2^32,
 * alignments and orders past the largest block, page counts past RAM, a
 * name with no NUL, and 2,000 caches of 1 MiB objects (kalloc caps live
 * caches at 1,024). Each must come back NULL (a bad-hypercall or an oom
 * warning), quickly and with the host's memory bounded; then normal
 * allocations must still work. Prints "hostile args ok" and exits 0 when
 * every call failed as it should, else exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kalloc.h"

#define N_CACHES 2000

/* volatile: the compiler must not fold a call it knows cannot succeed */
static volatile size_t huge = 0xFFFFFFF0u, sq = 0xFFFFu, align2g = 0x80000000u;
static int bad;
static struct kmem_cache *caches[N_CACHES];
static char no_nul[256];

static void expect_null(const void *p, const char *what)
{
    if (p != NULL) {
        printf("NOT NULL: %s\n", what);
        bad = 1;
    }
}

int main(void)
{
    void *pages[2];

    expect_null(kmem_cache_create("huge", 0xFFFFFFFFu, 0, 0, NULL), "cache of 4 GiB objects");
    expect_null(kmem_cache_create("huge", 0x7FFFFFFFu, 4096, 0, NULL), "cache of 2 GiB objects");
    expect_null(kmem_cache_create("align", 64, 0x80000000u, 0, NULL), "cache aligned to 2 GiB");
    memset(no_nul, 'A', sizeof no_nul);
    expect_null(kmem_cache_create(no_nul, 64, 0, 0, NULL), "cache named without a NUL");
    expect_null(dma_pool_create("huge", 0xFFFFFFFFu, 0, 0), "pool of 4 GiB blocks");
    expect_null(dma_pool_create("align", 8, 0x80000000u, 0), "pool aligned to 2 GiB");
    expect_null(dma_pool_create("bound", 64, 0, 0xFFFFFFFFu), "pool with a 4 GiB boundary");
    expect_null(kmalloc(0xFFFFFFFFu, GFP_KERNEL), "kmalloc 4 GiB");
    expect_null(kcalloc(0x10000u, 0x10000u, GFP_KERNEL), "kcalloc overflowing 32 bits");
    expect_null(kcalloc(0xFFFFu, 0xFFFFu, GFP_KERNEL), "kcalloc of 4 GiB");
    expect_null(krealloc(NULL, 0xFFFFFFF0u, GFP_KERNEL), "krealloc 4 GiB");
    expect_null(malloc(huge), "malloc 4 GiB");
    expect_null(calloc(sq, sq), "calloc of 4 GiB");
    expect_null(realloc(NULL, huge), "realloc 4 GiB");
    expect_null(aligned_alloc(align2g, 16), "aligned_alloc to 2 GiB");
    expect_null(alloc_pages(GFP_KERNEL, 31), "alloc_pages order 31");
    expect_null(alloc_pages(GFP_KERNEL, 20), "alloc_pages order 20");
    expect_null(alloc_pages_exact(0xFFFFFFF0u, GFP_KERNEL), "alloc_pages_exact 4 GiB");
    expect_null(dma_alloc_coherent(0xFFFFFFF0u, &(dma_addr_t){ 0 }, GFP_KERNEL), "dma_alloc_coherent 4 GiB");
    expect_null(vmalloc(0xFFFFFFFFu), "vmalloc 4 GiB");
    expect_null(vmalloc(0x1F000000u), "vmalloc 496 MiB (in the window, past RAM)");
    pages[0] = alloc_pages(GFP_KERNEL, 0);
    pages[1] = alloc_pages(GFP_KERNEL, 0);
    expect_null(vmap(pages, 0xFFFFFFFFu), "vmap of 2^32 pages");
    expect_null(vmap(pages, 0x10000u), "vmap of 65,536 pages (an array past RAM)");
    free_pages(pages[0], 0);
    free_pages(pages[1], 0);
    uart_write("x", 0xFFFFFFFFu);

    /* 2,000 caches of 1 MiB objects: past 1,024 they are refused. */
    int made = 0;
    for (int i = 0; i < N_CACHES; i++) {
        caches[i] = kmem_cache_create("big", 1u << 20, 0, 0, NULL);
        made += caches[i] != NULL;
    }
    printf("caches made: %d of %d\n", made, N_CACHES);
    if (made > 1024)
        bad = 1;
    for (int i = 0; i < N_CACHES; i++)
        kmem_cache_destroy(caches[i]); /* NULL for the refused ones: a no-op */

    /* Normal allocations still work. */
    char *q = kmalloc(100, GFP_KERNEL);
    struct kmem_cache *c = kmem_cache_create("small", 48, 0, 0, NULL);
    void *o = c ? kmem_cache_alloc(c, GFP_KERNEL) : NULL;
    void *v = vmalloc(3 * PAGE_SIZE);
    if (q == NULL || o == NULL || v == NULL)
        return 1;
    strcpy(q, "still works");
    memset(v, 0x11, 3 * PAGE_SIZE);
    kmem_cache_free(c, o);
    kmem_cache_destroy(c);
    vfree(v);
    printf("%s\n", q);
    kfree(q);
    if (bad)
        return 1;
    printf("hostile args ok\n");
    return 0;
}
