/*
 * hostile_storm_unknown_service.c — an error storm of bad hypercalls: rings
 * a doorbell with no service behind it 200,000 times from one call site (a
 * well-formed argument block each time, as the SDK's stub builds it). kalloc
 * reports it once with a count; the run goes on and normal allocations still
 * work after.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#ifndef ROUNDS
#define ROUNDS 200000
#endif
#define NO_SUCH_SERVICE 1000            /* inside the doorbell window, unassigned */

__attribute__((noinline)) static void ring_unknown(unsigned int service)
{
    uint32_t block[KH_BLOCK_SIZE / 4] = { 0 };

    block[KH_BLOCK_OFF_RA / 4] = (uint32_t)(uintptr_t)__builtin_return_address(0);
    block[KH_BLOCK_OFF_FP / 4] = (uint32_t)(uintptr_t)__builtin_frame_address(0);
    block[KH_BLOCK_OFF_CTX / 4] = KH_CTX_MIE;
    __asm__ volatile("" : : : "memory");        /* the block is in memory before the store */
    *(volatile uint32_t *)(uintptr_t)(KALLOC_DOORBELL_BASE + 4u * service) = (uint32_t)(uintptr_t)block;
}

int main(void)
{
    for (int i = 0; i < ROUNDS; i++)
        ring_unknown(NO_SUCH_SERVICE);
    printf("storm over: %d unknown services\n", ROUNDS);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
