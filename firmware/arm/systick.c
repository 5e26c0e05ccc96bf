/*
 * arm/systick.c — the Cortex-M SDK's one-shot timer on SysTick (ARMv7-M B3.3),
 * behind kalloc_timer_set() / kalloc_timer_cancel(). The RV32 SDK's are the
 * CLINT compare in ../sdk/irq.c; kalloc_now() is irq.c's on both (the board's
 * 64-bit count of executed instructions).
 *
 * SysTick counts executed instructions (the machine's time) down from its
 * reload value and pends exception 15 each time it reaches 0; its 24-bit
 * counter reaches 2^24 instructions at most, so a longer delay runs as several
 * periods: trap.S asks __kalloc_systick_expired() at each SysTick exception,
 * which starts the next period and returns 0 until the whole delay is over.
 *
 * Invariants:
 *  1. The timer is off (CSR = 0, no SysTick pending) whenever no delay runs.
 *  2. systick_left is what remains of the delay after the running period.
 */
#include <stdint.h>

#include "kalloc.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define CSR_ENABLE 1u
#define CSR_TICKINT 2u
#define CSR_CLKSOURCE 4u        /* the processor clock: one count per instruction */
#define ICSR_PENDSTCLR (1u << 25)
#define ICSR_PENDSTSET (1u << 26)
#define SYST_PERIOD_MAX 0x01000000u /* RVR + 1 with RVR = 0xFFFFFF */

static uint32_t systick_left;

/* One period of `ticks` >= 2 instructions: the count loads RVR on the next
 * instruction after the enabling store and reaches 0 RVR instructions later. */
static void systick_period(uint32_t ticks)
{
    uint32_t period = ticks > SYST_PERIOD_MAX ? SYST_PERIOD_MAX : ticks;

    systick_left = ticks - period;
    SYST_CSR = 0;
    SYST_RVR = period - 1;
    SYST_CVR = 0;
    SYST_CSR = CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE;
}

void kalloc_timer_set(uint32_t delta)
{
    unsigned long flags;

    local_irq_save(flags);
    SYST_CSR = 0;
    SCB_ICSR = ICSR_PENDSTCLR;
    if (delta < 2) {            /* now: pend it (RVR 0 would never fire) */
        systick_left = 0;
        SCB_ICSR = ICSR_PENDSTSET;
    } else {
        systick_period(delta);
    }
    local_irq_restore(flags);
}

void kalloc_timer_cancel(void)
{
    SYST_CSR = 0;
    systick_left = 0;
    SCB_ICSR = ICSR_PENDSTCLR;
}

/* trap.S, at each SysTick exception: 1 when the delay is over (the handler
 * runs; dispatch cancels the timer), 0 when the next period was started. */
int __kalloc_systick_expired(void)
{
    if (!systick_left)
        return 1;
    systick_period(systick_left < 2 ? 2 : systick_left);
    return 0;
}
