/* hostile_time_handler.c — a timer handler that never returns: an endless loop
 * with interrupts off (handlers run with mstatus.MIE clear).
 *
 * The run ends on the instruction budget or the wall-clock limit, whichever
 * comes first (exit status 66), naming spin_in_handler. */
#include <stdio.h>

#include "kalloc.h"

static volatile unsigned long spins;

__attribute__((noinline)) void spin_in_handler(void)
{
    for (;;)
        spins++;
}

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    spin_in_handler();
}

int main(void)
{
    void *p = kmalloc(128, GFP_KERNEL);

    kfree(p);
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    for (;;)
        kalloc_wfi();
}
