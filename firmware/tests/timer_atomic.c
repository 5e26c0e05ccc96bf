/*
 * timer_atomic.c — a timer handler that allocates correctly: GFP_ATOMIC in
 * interrupt context, three ticks, each re-arming the one-shot timer. No error;
 * exits with the number of ticks (3). On the Cortex-M board the timer is
 * SysTick: the machine stacks the exception frame, the handler returns through
 * EXC_RETURN, and the interrupted loop goes on with its registers intact.
 */
#include <stdio.h>

#include "kalloc.h"

#define TICKS 3

static void *volatile kept[TICKS];
static volatile int ticks;
static volatile int in_irq_seen;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    in_irq_seen += in_interrupt();
    kept[ticks] = kmalloc(48, GFP_ATOMIC);
    ticks = ticks + 1;
    if (ticks < TICKS)
        kalloc_timer_set(500);
}

int main(void)
{
    /* Registers live across the interrupts: the exception frame must give them back. */
    register unsigned int a = 0x11111111, b = 0x22222222;

    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(500);
    kalloc_wait_until(ticks == TICKS);
    __asm__ volatile("" : "+r"(a), "+r"(b));
    printf("ticks %d in_interrupt %d regs %s\n", ticks, in_irq_seen,
           a == 0x11111111 && b == 0x22222222 ? "kept" : "LOST");
    for (int i = 0; i < TICKS; i++)
        kfree(kept[i]);
    return ticks;
}
