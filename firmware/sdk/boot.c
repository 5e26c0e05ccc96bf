/*
 * boot.c — SDK start-up and shutdown: fetch bootinfo, switch interrupts on,
 * and the ways out (exit, panic, and picolibc's _exit/abort hooks).
 *
 * crt0.S calls __kalloc_sdk_init() before constructors and main(), so every
 * C function can rely on kalloc_bootinfo.
 */
#include <stdlib.h>

#include "hcall.h"
#include "sdk.h"

/* Until KH_BOOTINFO answers, the fixed memory map is the best guess; it keeps
 * the UART usable for a panic message if the answer is bad. */
struct kalloc_bootinfo kalloc_bootinfo = {
    .ram_base = KALLOC_RAM_BASE,
    .uart_base = KALLOC_UART_BASE,
    .clint_base = KALLOC_CLINT_BASE,
    .intc_base = KALLOC_INTC_BASE,
    .dma_base = KALLOC_DMA_BASE,
};

void __kalloc_sdk_init(void)
{
    struct kh_ret r = KH_CALL2(KH_BOOTINFO, &kalloc_bootinfo, sizeof kalloc_bootinfo);

    if (r.result < sizeof kalloc_bootinfo)
        kalloc_panic("kalloc SDK: KH_BOOTINFO returned a short boot information block");
    if (kalloc_bootinfo.magic != KH_BOOTINFO_MAGIC)
        kalloc_panic("kalloc SDK: boot information has a bad magic number");
    if (kalloc_bootinfo.abi_version != KALLOC_ABI_VERSION)
        kalloc_panic("kalloc SDK: the machine speaks another hypercall ABI version "
                     "than this firmware was built for; rebuild it against this SDK");
    __kalloc_irq_init();
}

uint32_t kalloc_ram_total(void)
{
    uint32_t total = 0;

    for (uint32_t i = 0; i < kalloc_bootinfo.nbanks && i < KH_BOOTINFO_MAX_BANKS; i++)
        total += kalloc_bootinfo.bank[i].size;
    return total;
}

void kalloc_exit(int code)
{
    register int a0 __asm__(__KALLOC_ECALL_ARG()) = code;
    register int a7 __asm__(__KALLOC_ECALL_NR()) = KH_ECALL_EXIT;

    __asm__ volatile(__KALLOC_ECALL() : : "r"(a0), "r"(a7) : "memory");
    for (;;)        /* the machine ends the run at the ecall */
        ;
}

void kalloc_panic(const char *msg)
{
    register const char *a0 __asm__(__KALLOC_ECALL_ARG()) = msg;
    register int a7 __asm__(__KALLOC_ECALL_NR()) = KH_ECALL_PANIC;

    __asm__ volatile(__KALLOC_ECALL() : : "r"(a0), "r"(a7) : "memory");
    for (;;)
        ;
}

/* picolibc's exit() runs destructors, then lands here. */
void _exit(int code)
{
    kalloc_exit(code);
}

/* picolibc's abort() would go through signal(); a panic names the cause. */
void abort(void)
{
    kalloc_panic("abort() called");
}
