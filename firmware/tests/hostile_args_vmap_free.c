/*
 * hostile_args_vmap_free.c — memory kalloc would hand out twice (issue 12).
 *
 * Two pages are vmap'd; the firmware then frees the first one while the
 * mapping is live. kalloc refuses that free (an invalid-free naming the vmap
 * area): the page stays the firmware's, so it is not handed to the next
 * allocation, and writes through the mapping cannot corrupt a new owner.
 * After vunmap the same free is accepted. Prints "vmap free ok" and exits 0
 * when the next owner's bytes survived, else exits 1.
 */
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

int main(void)
{
    void *pages[2];

    pages[0] = alloc_pages(GFP_KERNEL, 0);
    pages[1] = alloc_pages(GFP_KERNEL, 0);
    if (!pages[0] || !pages[1])
        return 1;
    unsigned char *m = vmap(pages, 2);
    if (!m)
        return 1;

    free_pages(pages[0], 0);            /* refused: still mapped at m */

    unsigned char *next = alloc_pages(GFP_KERNEL, 0);
    if (!next)
        return 1;
    memset(next, 0x42, PAGE_SIZE);
    memset(m, 0xEE, PAGE_SIZE);         /* through the mapping: the first page only */
    int ok = next != pages[0] && next[0] == 0x42 && next[PAGE_SIZE - 1] == 0x42;

    vunmap(m);
    free_pages(pages[0], 0);            /* accepted now */
    free_pages(pages[1], 0);
    free_pages(next, 0);

    char *q = kmalloc(64, GFP_KERNEL);  /* normal allocations still work */
    if (!q)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    if (!ok)
        return 1;
    printf("vmap free ok\n");
    return 0;
}
