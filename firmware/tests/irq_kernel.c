/*
 * irq_kernel.c — a timer handler allocates with GFP_KERNEL, which may sleep:
 * kalloc reports invalid-context ("sleeping allocation from interrupt
 * context") with the handler in the backtrace.
 */
#include <stdio.h>

#include "kalloc.h"

static void *volatile from_irq;
static volatile int fired;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    from_irq = kmalloc(64, GFP_KERNEL);
    fired = 1;
}

int main(void)
{
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(fired);
    printf("timer fired: %d\n", fired);
    kfree(from_irq);
    return 0;
}
