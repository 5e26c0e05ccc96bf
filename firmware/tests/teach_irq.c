/*
 * teach_irq.c — interrupt context (docs/teaching.md, "Interrupt context";
 * tests/cli/test_teaching_sessions.py).
 *
 * A small receive path: the handler of the board's test line (the "rx
 * interrupt") allocates a packet and pushes it on rx_head; the task detaches
 * the whole list, counts it, frees it. The bug: the task reads rx_head,
 * counts, then writes NULL, with interrupts on. A packet the handler pushes
 * in between is on the old list's head no more and on the new list never:
 * nothing points to it (a leak). `kalloc explore` finds the interrupt time;
 * teach_irq_fixed.c (this file with TEACH_IRQ_FIXED) detaches under
 * local_irq_save(). teach_irq_sleep.c (TEACH_IRQ_SLEEP) allocates in the
 * handler with GFP_KERNEL, which may sleep: invalid-context.
 */
#include <stdio.h>

#include "kalloc.h"

#ifdef TEACH_IRQ_SLEEP
#define RX_GFP GFP_KERNEL   /* the bug: a handler may not sleep */
#else
#define RX_GFP GFP_ATOMIC   /* never sleeps; may dip below the min watermark */
#endif

#define ROUNDS 100

struct pkt {
    struct pkt *next;
    unsigned int len;
    unsigned char data[52];
};

static struct pkt *volatile rx_head;
static volatile unsigned int received, processed, dropped;

static void rx_irq(unsigned int irq, void *arg)
{
    struct pkt *p = kmalloc(sizeof(*p), RX_GFP);

    (void)irq;
    (void)arg;
    if (!p) {
        dropped++;
        return;
    }
    p->len = ++received;
    p->next = rx_head;
    rx_head = p;
}

static unsigned int length(const struct pkt *p)
{
    unsigned int n = 0;

    for (; p; p = p->next)
        n++;
    return n;
}

/* Detach every received packet. */
__attribute__((noipa)) static struct pkt *take_all(unsigned int *n)
{
#ifdef TEACH_IRQ_FIXED
    unsigned long flags;

    local_irq_save(flags);
#endif
    struct pkt *list = rx_head;

    *n = length(list);
    rx_head = NULL;     /* unfixed: a packet pushed since the read is lost */
#ifdef TEACH_IRQ_FIXED
    local_irq_restore(flags);
#endif
    return list;
}

static void process(struct pkt *list)
{
    while (list) {
        struct pkt *next = list->next;

        processed++;
        kfree(list);
        list = next;
    }
}

int main(void)
{
    unsigned long flags;
    unsigned int n, most = 0;

    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, rx_irq, NULL);
    for (int round = 0; round < ROUNDS; round++) {
        process(take_all(&n));
        if (n > most)
            most = n;
    }
    if (kalloc_bootinfo.test_irq)
        free_irq(kalloc_bootinfo.test_irq);
    local_irq_save(flags);
    process(take_all(&n));
    local_irq_restore(flags);
    printf("rx: %u received, %u processed, %u dropped\n", received, processed, dropped);
    return 0;
}
