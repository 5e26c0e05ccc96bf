/* hostile_raw_clint_wfi.c — mtime reads around wfi and inside the timer handler
 * (tests/machine/test_hostile_rawpaths.py): the task sleeps in wfi, reads mtime (hi, lo,
 * hi and single words) at once after each wake-up, the handler reads it on entry, re-arms
 * with an odd period and reads again; every value read is folded into a digest printed at
 * the end. Exit 0; the digest and the report are the same for any quantum. */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define MTIME_LO (*(volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIME))
#define MTIME_HI (*(volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIME + 4))
#define TICKS 200u

static volatile uint32_t ticks;
static uint32_t digest;

static void fold(uint32_t v) { digest = digest * 31u + v; }

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    fold(MTIME_LO);
    if (++ticks < TICKS)
        kalloc_timer_set(97u + 2u * (ticks % 13u));
    fold((uint32_t)kalloc_now());
}

int main(void)
{
    uint32_t seen = 0;

    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(101u);
    while (ticks < TICKS) {
        kalloc_wfi();
        fold(MTIME_LO);
        fold(MTIME_HI);
        fold((uint32_t)kalloc_now());
        seen++;
    }
    printf("ticks %lu wakes %lu digest %08lx\n", (unsigned long)ticks, (unsigned long)seen,
           (unsigned long)digest);
    return 0;
}
