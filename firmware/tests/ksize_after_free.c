/*
 * ksize_after_free.c — ksize() of a kmalloc object after kfree(): a
 * use-after-free naming both sites (not a bad hypercall); ksize() of a pointer
 * that was never allocated stays a bad hypercall.
 */
#include <kalloc.h>
#include <stdio.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

static char not_heap[32];

int main(void)
{
    char *p = kmalloc(100, GFP_KERNEL);         /* KSIZE_ALLOC */

    __asm__ volatile("" : : "r"(p) : "memory");
    kfree(p);                                   /* KSIZE_FREE */
    size_t n = ksize(p);                        /* KSIZE_UAF */
    size_t m = ksize(not_heap);                 /* KSIZE_BAD */
    printf("ksize %u %u\n", (unsigned)n, (unsigned)m);
    return 0;
}
