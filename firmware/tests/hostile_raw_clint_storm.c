/* hostile_raw_clint_storm.c — endless storms on the CLINT's raw callbacks
 * (tests/machine/test_hostile_rawpaths.py): the task reads mtime in a tight loop while the
 * timer fires every few instructions, its handler reads mtime again and re-arms it in the
 * past (mtimecmp = 0: due at once) or all ones, in turn; the task also stores mtimecmp 0 and
 * all ones in the loop with interrupts on. It never exits: the run must end on the
 * instruction budget or the wall clock (status 66), with a report that is the same bytes for
 * any quantum and any number of runs. */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define CMP_LO (*(volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIMECMP))
#define CMP_HI (*(volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIMECMP + 4))
#define MTIME_LO (*(volatile uint32_t *)(KALLOC_CLINT_BASE + KALLOC_CLINT_MTIME))

static volatile uint32_t ticks, sum;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    sum += MTIME_LO;
    if (++ticks & 1) { /* in the past: pending again as soon as the handler returns */
        CMP_HI = 0u;
        CMP_LO = 0u;
    } else {
        kalloc_timer_set(3u + (ticks & 7u));
    }
}

int main(void)
{
    uint32_t i = 0;

    printf("storm\n");
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(5u);
    for (;;) {
        sum += MTIME_LO;
        if ((++i & 15u) == 0) { /* mtimecmp all ones, then 0: the handler runs at once */
            CMP_LO = 0xffffffffu;
            CMP_HI = 0xffffffffu;
            CMP_HI = 0u;
            CMP_LO = 0u;
        }
    }
}
