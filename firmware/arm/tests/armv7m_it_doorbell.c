/*
 * armv7m_it_doorbell.c — a hypercall whose doorbell store sits inside a Thumb IT block, right
 * after a load that evicts the doorbell page's TLB entry (tests/machine/test_doorbell_fills.py).
 * The engine fills the doorbell page itself (mmu.py, "Doorbell"); a fill inside an IT block leaves
 * the engine's IT state restored, and the doorbell's callback must put it back (Machine.
 * doorbell_settle): else the first instruction of the next translated block runs as part of the
 * finished block (`eq` with Z clear: skipped) and `ring_in_it` answers 1, not 3.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define EVICT 0x80000000u /* the image's first page: the doorbell page's TLB index (256 entries) */

__attribute__((noipa)) static uint32_t ring_in_it(uint32_t *block)
{
    uint32_t out;

    (void)*(volatile uint32_t *)EVICT;
    __asm__ volatile("movs %[o], #0\n\t"
                     "cmp %[o], #0\n\t"
                     "itt eq\n\t"
                     "streq %[b], [%[db]]\n\t"
                     "addeq %[o], %[o], #1\n\t"
                     "cmp %[o], #0\n\t" /* Z clear: an `eq` left over would skip the next add */
                     "b 1f\n"
                     "1:\n\t"
                     "adds %[o], %[o], #2\n\t"
                     : [o] "=&r"(out)
                     : [b] "r"(block), [db] "r"(KALLOC_DOORBELL_BASE + 4u * KH_NOP)
                     : "cc", "memory");
    return out;
}

int main(void)
{
    uint32_t block[KH_BLOCK_SIZE / 4] = { 0 };
    uint32_t got = 0;

    block[KH_BLOCK_OFF_CTX / 4] = KH_CTX_MIE;
    for (int i = 0; i < 3; i++)
        got += ring_in_it(block);
    printf("ring_in_it: %u\n", (unsigned)got);
    return got == 9u ? 0 : 1;
}
