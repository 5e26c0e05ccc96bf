/* hostile_stack_irq.c — a timer handler recurses without bound. Handlers run
 * on the task stack, below the interrupted frames, so the same guard catches
 * it: one `stack-overflow` error (context "interrupt") naming irq_runaway(),
 * exit status 65, and no bogus invalid-context error from a corrupted
 * kalloc_irq_depth. */
#include <stdio.h>

#include "kalloc.h"

volatile unsigned canary[16];
static volatile int fired;
static volatile unsigned result;

__attribute__((noinline)) unsigned irq_runaway(unsigned n)
{
    volatile unsigned frame[8];

    frame[0] = n;
    if (n == 0)
        return frame[0];
    return irq_runaway(n - 1) + frame[0];
}

static void on_timer(unsigned int irq, void *arg)
{
    void *p;

    (void)irq;
    (void)arg;
    p = kmalloc(48, GFP_ATOMIC);  /* a legitimate atomic allocation first */
    kfree(p);
    result = irq_runaway(1000000);
    fired = 1;
}

int main(void)
{
    void *p = kmalloc(128, GFP_KERNEL);

    for (unsigned i = 0; i < 16; i++)
        canary[i] = 0x5AC0FFEEu;
    kfree(p);
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(fired);
    printf("never printed: %u\n", result);
    return 0;
}
