/*
 * free_stack_irq.c — stack addresses freed from a timer interrupt handler. This
 * board has no separate interrupt stack: handlers run on the task stack, below
 * the frames of the code they interrupted. The handler frees a local of its own
 * frame (on_timer: a handler frame), then a local of main() that main published
 * (a task frame, interrupted). Two invalid-free errors, each naming the stack,
 * the frame's function and whether it is a handler's frame; exit status 64.
 */
#include <stdio.h>

#include "kalloc.h"

static volatile int fired;
static void *volatile task_local;

__attribute__((noipa)) static void on_timer(unsigned int irq, void *arg)
{
    volatile int mine = 7;

    (void)irq;
    (void)arg;
    kfree((void *)&mine);
    kfree(task_local);
    fired = mine;
}

int main(void)
{
    volatile int local = 3;

    task_local = (void *)&local;
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(fired);
    printf("handler ran\n");
    return local - 3;
}
