/*
 * armv7m_systick.c — kalloc_timer_set() on SysTick (arm/systick.c), on the
 * stm32f4 board (tests/machine/test_armv7m_exceptions.py): a short delay, one
 * longer than SysTick's 24-bit counter (chained periods: the handler runs once,
 * at the end), and a cancelled one that never fires. Prints each delay as
 * measured with kalloc_now() (executed instructions) and the handler count.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

static volatile int fired;
static volatile uint64_t fired_at;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    fired_at = kalloc_now();
    fired++;
}

static void measure(uint32_t delta)
{
    uint64_t start;

    fired = 0;
    start = kalloc_now();
    kalloc_timer_set(delta);
    kalloc_wait_until(fired);
    printf("delay %lu took %lu fired %d\n", (unsigned long)delta, (unsigned long)(fired_at - start), fired);
}

int main(void)
{
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    measure(1000);
    measure(40000000u);         /* > 2^24: three periods */
    fired = 0;
    kalloc_timer_set(500);
    kalloc_timer_cancel();
    for (volatile int i = 0; i < 2000; i++)
        ;
    printf("cancelled fired %d\n", fired);
    return 0;
}
