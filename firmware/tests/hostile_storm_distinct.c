/*
 * hostile_storm_distinct.c — a storm of DIFFERENT errors: rings each of the
 * unassigned doorbells 100..999 (one bad-hypercall per service number, so
 * 900 distinct errors) ROUNDS times over. With --max-errors N below 900,
 * kalloc keeps the first N (each with its count) and counts the rest as
 * suppressed. Normal allocations still work after.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#ifndef ROUNDS
#define ROUNDS 20
#endif
#define FIRST 100
#define LAST 999

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
    for (int r = 0; r < ROUNDS; r++)
        for (unsigned int s = FIRST; s <= LAST; s++)
            ring_unknown(s);
    printf("storm over: %d rounds of %d services\n", ROUNDS, LAST - FIRST + 1);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
