/*
 * cache_oob.c — writes 4 bytes past the end of a 20-byte kmem_cache object.
 * poison: the red zone after the object is damaged; kasan: out-of-bounds.
 */
#include <kalloc.h>
#include <stdio.h>

struct item {
    unsigned int id;
    unsigned char payload[16];
};

__attribute__((noipa)) static void fill_items(struct item *it, int n)
{
    for (int i = 0; i <= n; i++)                /* <= : one word too many */
        ((unsigned int *)it)[i] = 0xabab0000u + (unsigned int)i;
}

int main(void)
{
    struct kmem_cache *c = kmem_cache_create("items", sizeof(struct item), 0, 0, NULL);
    struct item *it = kmem_cache_alloc(c, GFP_KERNEL);

    __asm__ volatile("" : : "r"(it) : "memory");  /* keep the allocation real */

    fill_items(it, sizeof(struct item) / 4);
    printf("filled\n");
    kmem_cache_free(c, it);
    kmem_cache_destroy(c);
    return 0;
}
