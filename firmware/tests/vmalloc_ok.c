/*
 * vmalloc_ok.c — vmalloc done right, checked from inside the run:
 *  1. a large vmalloc commits every page at once: nr_free_pages() drops by
 *     the full amount before a single byte is touched;
 *  2. the area is readable and writable contiguously although its physical
 *     pages are scattered (a pattern written and read back across pages);
 *  3. vzalloc is zeroed; vmap of pages from alloc_pages shows their bytes;
 *  4. everything freed gives the pages back; a console write of a vmalloc
 *     buffer goes through the page tables.
 * Prints "vmalloc ok" and exits 0 when all holds, else exits 1.
 */
#include <kalloc.h>
#include <stdio.h>
#include <string.h>

#define BIG_PAGES 64u

static unsigned int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        failures++;
        printf("FAIL: %s\n", what);
    }
}

int main(void)
{
    unsigned long before = nr_free_pages();
    uint32_t *big = vmalloc(BIG_PAGES * PAGE_SIZE);
    unsigned long after = nr_free_pages();

    check(big != NULL, "vmalloc(256 KiB)");
    printf("committed %lu pages for %u (free %lu -> %lu) before any touch\n",
           before - after, BIG_PAGES, before, after);
    check(before - after >= BIG_PAGES, "every page committed at vmalloc time");

    size_t n = BIG_PAGES * PAGE_SIZE / 4;
    for (size_t i = 0; i < n; i++)
        big[i] = (uint32_t)(i * 2654435761u);
    unsigned int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += big[i] != (uint32_t)(i * 2654435761u);
    check(bad == 0, "pattern across scattered pages");
    /* a memcpy across a page boundary, through the SDK's byte loop */
    memcpy((char *)big + PAGE_SIZE - 8, "across a page boundary", 23);
    check(strcmp((char *)big + PAGE_SIZE - 8, "across a page boundary") == 0, "memcpy across pages");
    uart_write((char *)big + PAGE_SIZE - 8, 22);
    uart_write("\n", 1);

    unsigned char *z = vzalloc(3 * PAGE_SIZE + 5);
    unsigned int nonzero = 0;
    for (size_t i = 0; i < 3 * PAGE_SIZE + 5; i++)
        nonzero += z[i] != 0;
    check(z != NULL && nonzero == 0, "vzalloc is zeroed");

    void *pages[3];
    for (int i = 0; i < 3; i++) {
        pages[i] = alloc_pages(GFP_KERNEL, 0);
        memset(pages[i], 'a' + i, PAGE_SIZE);
    }
    unsigned char *m = vmap(pages, 3);
    check(m != NULL && m[0] == 'a' && m[PAGE_SIZE] == 'b' && m[2 * PAGE_SIZE + 7] == 'c', "vmap shows the pages");
    m[5] = 'X';
    check(((unsigned char *)pages[0])[5] == 'X', "vmap writes reach the page");
    vunmap(m);
    for (int i = 0; i < 3; i++)
        free_pages(pages[i], 0);

    vfree(z);
    vfree(big);
    vfree(NULL);
    unsigned long end = nr_free_pages();
    printf("free pages back to %lu (page tables kept: %ld)\n", end, (long)(before - end));
    check(before - end <= 2, "vfree gives the pages back");
    printf(failures ? "vmalloc FAILED\n" : "vmalloc ok\n");
    return failures ? 1 : 0;
}
