/*
 * bad_hypercall.c — bypasses the SDK and rings the doorbells by hand: first a
 * doorbell with no service behind it (a bad-hypercall report naming main; the
 * run goes on), then a real service (KH_KMALLOC) with an argument block
 * pointer that points nowhere (a fatal bad-hypercall: there is nowhere to put
 * a result). Never a crash of the machine.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define NO_SUCH_SERVICE 1000            /* inside the doorbell window, unassigned */
#define WILD_BLOCK 0x00000400u          /* unmapped: below every device and RAM */

static void ring(unsigned int service, uint32_t block)
{
    *(volatile uint32_t *)(uintptr_t)(KALLOC_DOORBELL_BASE + 4u * service) = block;
}

/* A well-formed block, as the SDK's stub builds it, so the report can say
 * where the call came from. */
__attribute__((noinline)) static void ring_unknown(unsigned int service)
{
    uint32_t block[KH_BLOCK_SIZE / 4] = { 0 };

    block[KH_BLOCK_OFF_RA / 4] = (uint32_t)(uintptr_t)__builtin_return_address(0);
    block[KH_BLOCK_OFF_FP / 4] = (uint32_t)(uintptr_t)__builtin_frame_address(0);
    block[KH_BLOCK_OFF_CTX / 4] = KH_CTX_MIE;
    __asm__ volatile("" : : : "memory");        /* the block is in memory before the store */
    ring(service, (uint32_t)(uintptr_t)block);
}

int main(void)
{
    printf("ringing doorbell %d\n", NO_SUCH_SERVICE);
    ring_unknown(NO_SUCH_SERVICE);
    printf("KH_KMALLOC with a wild block pointer\n");
    ring(KH_KMALLOC, WILD_BLOCK);
    printf("survived\n");
    return 0;
}
