/*
 * dma.c — the DMA API (coherent buffers, pools) and the DMA engine device.
 *
 * DMA addresses come back in the block's aux slot. On this machine a DMA
 * address equals the CPU (physical) address, the device buffer included, but
 * firmware should pass what it was given, as on real hardware.
 */
#include "hcall.h"
#include "sdk.h"

KH_API void *dma_alloc_coherent(size_t size, dma_addr_t *handle, gfp_t gfp)
{
    struct kh_ret r = KH_CALL2(KH_DMA_ALLOC_COHERENT, size, gfp);

    if (handle)
        *handle = r.aux;
    return (void *)(uintptr_t)r.result;
}

KH_API void dma_free_coherent(size_t size, void *cpu, dma_addr_t handle)
{
    KH_CALL3(KH_DMA_FREE_COHERENT, size, cpu, handle);
}

KH_API struct dma_pool *dma_pool_create(const char *name, size_t size, size_t align,
                                        size_t boundary)
{
    return (struct dma_pool *)(uintptr_t)KH_CALL4(KH_DMA_POOL_CREATE, name, size, align,
                                                  boundary).result;
}

KH_API void *dma_pool_alloc(struct dma_pool *pool, gfp_t gfp, dma_addr_t *handle)
{
    struct kh_ret r = KH_CALL2(KH_DMA_POOL_ALLOC, pool, gfp);

    if (handle)
        *handle = r.aux;
    return (void *)(uintptr_t)r.result;
}

KH_API void dma_pool_free(struct dma_pool *pool, void *vaddr, dma_addr_t handle)
{
    KH_CALL3(KH_DMA_POOL_FREE, pool, vaddr, handle);
}

KH_API void dma_pool_destroy(struct dma_pool *pool)
{
    KH_CALL1(KH_DMA_POOL_DESTROY, pool);
}

/* The engine: program src/dst/len, then a write of START to ctrl. */
void dma_engine_start(dma_addr_t src, dma_addr_t dst, uint32_t len)
{
    uint32_t base = kalloc_bootinfo.dma_base;

    KALLOC_REG32(base, KALLOC_DMA_SRC) = src;
    KALLOC_REG32(base, KALLOC_DMA_DST) = dst;
    KALLOC_REG32(base, KALLOC_DMA_LEN) = len;
    KALLOC_REG32(base, KALLOC_DMA_CTRL) = KALLOC_DMA_CTRL_START;
}

uint32_t dma_engine_status(void)
{
    return KALLOC_REG32(kalloc_bootinfo.dma_base, KALLOC_DMA_STATUS);
}

void *dma_engine_buffer(void)
{
    return (void *)(uintptr_t)(kalloc_bootinfo.dma_base + KALLOC_DMA_BUF);
}

dma_addr_t dma_engine_buffer_dma(void)
{
    return kalloc_bootinfo.dma_base + KALLOC_DMA_BUF;
}
