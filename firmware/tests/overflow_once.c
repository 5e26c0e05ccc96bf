/*
 * overflow_once.c — one overflow of each kind of heap object (a kmalloc slot, a
 * malloc slot, a cache object, a page-level kmalloc object) and one write after
 * free, each freed (or left to the end of the run).
 * kasan: each is reported once, at the store, never again as red-zone or poison
 * damage at free or at exit; poison: each is found by the free or exit check.
 */
#include <kalloc.h>
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

__attribute__((noipa)) static void write_at(char *p, int n)
{
    p[n] = 'X';
}

int main(void)
{
    struct kmem_cache *c = kmem_cache_create("things", 24, 0, 0, NULL);
    char *k = kmalloc(13, GFP_KERNEL);
    char *m = malloc(40);
    char *o = kmem_cache_alloc(c, GFP_KERNEL);
    char *big = kmalloc(10000, GFP_KERNEL);     /* three pages */
    char *u = malloc(70);

    __asm__ volatile("" : : "r"(k), "r"(m), "r"(o), "r"(big), "r"(u) : "memory");
    write_at(k, 13);                            /* OOB_KMALLOC */
    write_at(m, 41);                            /* OOB_MALLOC */
    write_at(o, 24);                            /* OOB_CACHE */
    write_at(big, 10001);                       /* OOB_PAGES */
    free(u);
    write_at(u, 5);                             /* UAF_WRITE */
    kfree(k);
    free(m);
    kmem_cache_free(c, o);
    kfree(big);
    kmem_cache_destroy(c);
    printf("done\n");
    return 0;
}
