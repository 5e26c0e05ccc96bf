/*
 * hostile_ctx_nested.c — a timer handler that turns interrupts back on and
 * waits for the timer to interrupt it again (the SDK does not nest, this
 * firmware does it by hand, saving mepc and mstatus as a nesting kernel
 * must: the nested mret changes both). The
 * nested handler's GFP_KERNEL is invalid-context at depth 2 — the machine's
 * depth, which the SDK's word agrees with — and everything unwinds to task
 * context: GFP_KERNEL works again in main.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

static volatile int entered;
static void *volatile nested;

static void on_timer(unsigned int irq, void *arg)
{
    uint32_t mepc, mstatus;

    (void)irq;
    (void)arg;
    if (++entered == 2) {
        nested = kmalloc(32, GFP_KERNEL);       /* depth 2: invalid-context */
        return;
    }
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrr %0, mepc\ncsrr %1, mstatus\n.option pop" : "=r"(mepc), "=r"(mstatus));
    kalloc_timer_set(200);
    local_irq_enable();
    while (entered < 2)
        ;
    local_irq_disable();
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrw mepc, %0\ncsrw mstatus, %1\n.option pop" : : "r"(mepc), "r"(mstatus) : "memory");
}

int main(void)
{
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(entered == 2);
    kfree(nested);
    printf("depth now %u\n", (unsigned)kalloc_irq_depth);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 2;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
