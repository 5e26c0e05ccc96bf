/* hostile_time_wfi_far.c — sleeps in wfi until a timer armed ~2^31
 * instructions ahead, while --irq-every N raises a line nobody enabled.
 *
 * The raised line is not a wake-up; the timer is, so the machine fast-forwards
 * from one injected interrupt to the next. That must still honour --timeout
 * (the idle loop reads the wall clock) and --max-instructions, exit status 66. */
#include <stdio.h>

#include "kalloc.h"

static volatile int fired;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    fired = 1;
}

int main(void)
{
    void *p = kmalloc(256, GFP_KERNEL);

    kfree(p);
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(0x7FFFFFFF);
    kalloc_wait_until(fired);
    printf("woke after %llu instructions\n", (unsigned long long)kalloc_now());
    return 0;
}
