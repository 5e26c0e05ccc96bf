/*
 * cache_destroy_poison.c — writes into a freed object of a cache (its poison and
 * the red zone after it), then destroys the cache: kmem_cache_destroy() checks
 * every freed object before its slabs go, so both writes are reported, at the
 * destroy's line, instead of vanishing with the cache.
 */
#include <kalloc.h>
#include <stdio.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

struct item {
    unsigned int id;
    unsigned char payload[20];
};

__attribute__((noipa)) static void scribble(unsigned char *p, int off, unsigned char v)
{
    p[off] = v;
}

int main(void)
{
    struct kmem_cache *c = kmem_cache_create("items", sizeof(struct item), 0, 0, NULL);
    struct item *a = kmem_cache_alloc(c, GFP_KERNEL);   /* DESTROY_ALLOC_A */
    struct item *b = kmem_cache_alloc(c, GFP_KERNEL);   /* DESTROY_ALLOC_B */

    __asm__ volatile("" : : "r"(a), "r"(b) : "memory");
    kmem_cache_free(c, a);                      /* DESTROY_FREE_A */
    kmem_cache_free(c, b);                      /* DESTROY_FREE_B */
    scribble((unsigned char *)a, 4, 0x11);      /* into a's poison */
    scribble((unsigned char *)b, (int)sizeof(struct item), 0x22);  /* b's red zone */
    kmem_cache_destroy(c);                      /* DESTROY */
    printf("destroyed\n");
    return 0;
}
