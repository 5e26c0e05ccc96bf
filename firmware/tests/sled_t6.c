/*
 * The idle sled counts its laps in t6 (emulator/kalloc_machine/sled.py): a slice that
 * ends early — at a store that moves the timer deadline (a cut) or at a wfi — must give
 * the firmware its t6 back unchanged. Prints "t6 kept" and exits 0 when every round kept it.
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdio.h>

static volatile int ticks;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticks++;
    kalloc_timer_cancel();
}

int main(void)
{
    volatile uint32_t *cmp = (volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIMECMP);
    uint32_t bad = 0;

    local_irq_disable();
    for (uint32_t round = 0; round < 40; round++) {
        register uint32_t t6 __asm__("t6") = 0x5a5a0000u + round;
        /* mtimecmp = 1, in the past: the deadline moves before the slice's end, a cut */
        __asm__ volatile("sw zero, 4(%1)\n\tsw %2, 0(%1)" : "+r"(t6) : "r"(cmp), "r"(1u) : "memory");
        if (t6 != 0x5a5a0000u + round)
            bad++;
        kalloc_timer_cancel();
    }
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    for (uint32_t round = 0; round < 20; round++) {
        int before = ticks;
        kalloc_timer_set(300);
        local_irq_enable();
        register uint32_t t6 __asm__("t6") = 0xa5a50000u + round;
        while (ticks == before)
            __asm__ volatile("wfi" : "+r"(t6));
        local_irq_disable();
        if (t6 != 0xa5a50000u + round)
            bad++;
    }
    printf(bad ? "t6 lost %lu times\n" : "t6 kept\n", (unsigned long)bad);
    return bad ? 1 : 0;
}
