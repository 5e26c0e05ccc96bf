/*
 * pool_oob.c — writes one word past the end of a 32-byte DMA pool block,
 * into the next (never used) block of the pool page.
 * poison: the next block's free poison is damaged (found at exit);
 * kasan: the store is out-of-bounds in fill_descriptor().
 */
#include <kalloc.h>
#include <stdio.h>

__attribute__((noipa)) static void fill_descriptor(unsigned int *d, int words)
{
    for (int i = 0; i <= words; i++)            /* <= : one word too many */
        d[i] = 0xd0d00000u + (unsigned int)i;
}

int main(void)
{
    struct dma_pool *pool = dma_pool_create("desc", 32, 8, 0);
    dma_addr_t dma;
    unsigned int *d = dma_pool_alloc(pool, GFP_KERNEL, &dma);

    fill_descriptor(d, 32 / 4);
    printf("descriptor filled\n");
    dma_pool_free(pool, d, dma);
    dma_pool_destroy(pool);
    return 0;
}
