/*
 * sdk.h — symbols the SDK's own files share, not part of the public API.
 */
#ifndef KALLOC_SDK_SDK_H
#define KALLOC_SDK_SDK_H

#include <stdint.h>

void __kalloc_sdk_init(void);               /* boot.c, called by crt0.S */
void __kalloc_irq_init(void);               /* irq.c: timer off, MIE on */
void __kalloc_trap(uint32_t mcause);        /* irq.c, called by trap.S */

/* Device registers, at the bases bootinfo gave. */
#define KALLOC_REG32(base, off) (*(volatile uint32_t *)(uintptr_t)((base) + (off)))
#define KALLOC_REG8(base, off) (*(volatile uint8_t *)(uintptr_t)((base) + (off)))

#endif /* KALLOC_SDK_SDK_H */
