/*
 * hostile_doorbell_misaligned.c — a doorbell store that is not one aligned 32-bit word
 * (tests/machine/test_doorbell_store_width.py). `hostile_mode`, poked by the test before
 * the run:
 *  0  a word store to DOORBELL_BASE + 2 (misaligned: the engine may split it into
 *     byte stores, one MMIO callback each);
 *  1  a halfword store to DOORBELL_BASE;
 *  2  a byte store to DOORBELL_BASE + 4 * KH_NOP + 1.
 * Each is one fatal bad-hypercall report (Machine.fatal) at the store; nothing after it runs.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

volatile uint32_t hostile_mode = 0xffffffffu; /* .data: poked by the test */

/* One function per store, called through a table: no store sits in a Thumb IT block (where a
 * callback's redirect into the idle sled is lost on Cortex-M: docs/performance.md). */
__attribute__((noipa)) static void word_at_2(uint32_t value)
{
    *(volatile uint32_t *)(KALLOC_DOORBELL_BASE + 2u) = value;
}

__attribute__((noipa)) static void halfword(uint32_t value)
{
    *(volatile uint16_t *)KALLOC_DOORBELL_BASE = (uint16_t)value;
}

__attribute__((noipa)) static void byte_at_1(uint32_t value)
{
    *(volatile uint8_t *)(KALLOC_DOORBELL_BASE + 4u * KH_NOP + 1u) = (uint8_t)value;
}

static void (*const ring[3])(uint32_t) = { word_at_2, halfword, byte_at_1 };

int main(void)
{
    uint32_t mode = hostile_mode < 3u ? hostile_mode : 0u;

    printf("mode %u\n", (unsigned)mode);
    ring[mode](0x12345678u);
    printf("ran on after the store\n");
    return 0;
}
