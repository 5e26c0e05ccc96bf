/*
 * hostile_ctx_spoof.c — argument blocks that lie about the caller's context.
 * From task context with interrupts on, it rings KMALLOC(GFP_KERNEL) and
 * KFREE by hand 1,000 times with a block that claims interrupt depth 255,
 * then 1,000 times with one that claims interrupts are off. kalloc judges
 * every call by the machine's own state (task context, interrupts on): no
 * invalid-context, one bad-hypercall per distinct lie naming the claim and
 * the truth. Normal allocations still work after.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#define ROUNDS 1000
#define CTX_DEPTH_255 (0xffu << KH_CTX_DEPTH_SHIFT | KH_CTX_MIE)
#define CTX_IRQS_OFF 0u                 /* depth 0, MIE clear */

/* One hypercall with a block built as the SDK's stub builds it, but the
 * context word chosen by the caller. Returns the block's result. */
__attribute__((noinline)) static uint32_t ring(unsigned int service, uint32_t ctx, uint32_t a0, uint32_t a1)
{
    volatile uint32_t block[KH_BLOCK_SIZE / 4] = { 0 };

    block[KH_BLOCK_OFF_RA / 4] = (uint32_t)(uintptr_t)__builtin_return_address(0);
    block[KH_BLOCK_OFF_FP / 4] = (uint32_t)(uintptr_t)__builtin_frame_address(0);
    block[KH_BLOCK_OFF_CTX / 4] = ctx;
    block[KH_BLOCK_OFF_ARGS / 4] = a0;
    block[KH_BLOCK_OFF_ARGS / 4 + 1] = a1;
    __asm__ volatile("" : : : "memory");        /* the block is in memory before the store */
    *(volatile uint32_t *)(uintptr_t)(KALLOC_DOORBELL_BASE + 4u * service) = (uint32_t)(uintptr_t)block;
    __asm__ volatile("" : : : "memory");
    return block[KH_BLOCK_OFF_RESULT / 4];
}

__attribute__((noinline)) static int spoof(uint32_t ctx)
{
    for (int i = 0; i < ROUNDS; i++) {
        uint32_t p = ring(KH_KMALLOC, ctx, 64, GFP_KERNEL);
        if (!p)
            return -1;
        ring(KH_KFREE, ctx, p, 0);
    }
    return 0;
}

int main(void)
{
    if (spoof(CTX_DEPTH_255) || spoof(CTX_IRQS_OFF))
        return 1;
    printf("spoofed %d calls\n", 2 * ROUNDS);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 2;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
