/*
 * misaligned.c — a 32-bit store and load at an odd address, in a kmalloc buffer
 * and on the stack. Misaligned loads and stores are legal on this machine (the
 * CPU performs them; docs/abi.md): no fault, the value reads back, exit 0.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

__attribute__((noipa)) uint32_t roundtrip(uint8_t *base, unsigned offset, uint32_t value)
{
    volatile uint32_t *p = (volatile uint32_t *)(base + offset);

    *p = value;
    return *p;
}

int main(void)
{
    uint8_t *heap = kmalloc(16, GFP_KERNEL);
    uint8_t local[16];
    uint32_t a, b;

    a = roundtrip(heap, 1, 0x11223344u);
    b = roundtrip(local, 3, 0x55667788u);
    printf("misaligned %08x %08x\n", (unsigned)a, (unsigned)b);
    kfree(heap);
    return a == 0x11223344u && b == 0x55667788u ? 0 : 1;
}
