/*
 * hostile_ctx_depthword.c — the SDK's interrupt depth (kalloc_irq_depth, a
 * RAM variable every hypercall reports) is overwritten, as a stack overflow
 * or a wild store would. kalloc takes the depth from the interrupts the
 * machine delivered and returned, so every later call is still attributed
 * right: GFP_KERNEL from task context is fine, a timer handler's GFP_ATOMIC
 * allocation is counted as interrupt context, and a handler that zeroes the
 * word to hide cannot: its GFP_KERNEL is still invalid-context. Each distinct
 * lie is one bad-hypercall naming both depths.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#define ROUNDS 500

static void *volatile from_irq;
static void *volatile hidden;
static volatile int fired;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    if (fired == 0) {
        from_irq = kmalloc(48, GFP_ATOMIC);     /* the SDK reports depth 8: the machine says 1 */
    } else {
        kalloc_irq_depth = 0;                   /* hide: "this is task context" */
        hidden = kmalloc(32, GFP_KERNEL);       /* still invalid-context */
        kalloc_irq_depth = 1;
    }
    fired++;
}

int main(void)
{
    kalloc_irq_depth = 7;                       /* the corruption */
    for (int i = 0; i < ROUNDS; i++) {
        void *p = kmalloc(64, GFP_KERNEL);      /* task context: fine */
        if (!p)
            return 1;
        kfree(p);
    }
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(fired == 1);
    kalloc_irq_depth = 0;                       /* repaired, for the second handler */
    kalloc_timer_set(1000);
    kalloc_wait_until(fired == 2);
    kfree(from_irq);
    kfree(hidden);
    printf("handlers ran: %d\n", fired);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 2;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
