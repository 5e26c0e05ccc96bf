/* Teaching session 4 (DMA zones) on the Cortex-M board: CCM RAM, which the DMA engine
 * cannot reach. On stm32f4 the Normal zone is the 64 KiB CCM bank, so an ordinary
 * kmalloc() lands where no DMA transfer can read it; GFP_DMA memory is SRAM.
 * The first transfer is refused (and reported: dma-unreachable), the second completes. */
#include <stdint.h>
#include <string.h>
#include "kalloc.h"

static int dma_copy(void *src, uint32_t len)
{
    dma_engine_start((dma_addr_t)(uintptr_t)src, dma_engine_buffer_dma(), len);
    while (dma_engine_status() == KALLOC_DMA_BUSY)
        ;
    return dma_engine_status() == KALLOC_DMA_DONE;
}

int main(void)
{
    unsigned char *frame = kmalloc(256, GFP_KERNEL);    /* Normal zone: CCM on stm32f4 */
    unsigned char *dma_frame = kmalloc(256, GFP_DMA);   /* the DMA zone: SRAM */
    int refused, done;

    if (!frame || !dma_frame)
        return 2;
    memset(frame, 1, 256);
    memset(dma_frame, 1, 256);
    refused = !dma_copy(frame, 256);
    done = dma_copy(dma_frame, 256);
    kfree(frame);
    kfree(dma_frame);
    return refused && done ? 0 : 1;
}
