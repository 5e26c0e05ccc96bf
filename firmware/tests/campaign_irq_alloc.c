/*
 * campaign_irq_alloc.c — a handler that allocates, racing the task's allocation.
 *
 * log_value() reads the head of the event log, allocates an entry, then links
 * the entry to the head it read. The test line's handler (registered with
 * request_irq) allocates an entry of its own and links it at the head too. An
 * interrupt taken while the task is inside its allocation links the handler's
 * entry after the task read the head: the task then overwrites the head, and
 * the handler's entry is lost — a leak, allocated in the handler.
 *
 * The window is the allocation itself, a few dozen instructions in a run of
 * thousands spent computing: `kalloc campaign --irq-points K` raises the line
 * at K evenly spread times and misses it; `--irq-allocs` pre-empts every
 * allocation from task context once, right after its hypercall, and finds it.
 * Unperturbed (and with every allocation failing in turn) the run is clean.
 */
#include <stdio.h>

#include "kalloc.h"

#define EVENTS 8

struct entry {
    struct entry *next;
    unsigned int value;
};

struct entry *volatile log_head;
volatile unsigned int sink;

__attribute__((noipa)) static void compute(unsigned int n)
{
    unsigned int x = 1;

    for (unsigned int i = 0; i < n; i++)
        x = x * 1103515245u + 12345u;
    sink = x;
}

__attribute__((noipa)) static int log_value(unsigned int value)
{
    struct entry *old = log_head;                /* the bug: read before the allocation, irqs on */
    struct entry *e = kmalloc(sizeof(*e), GFP_KERNEL);

    if (!e)
        return -1;
    e->value = value;
    e->next = old;
    log_head = e;
    return 0;
}

static void on_test_irq(unsigned int irq, void *arg)
{
    struct entry *e = kmalloc(sizeof(*e), GFP_ATOMIC);

    (void)irq;
    (void)arg;
    if (!e)
        return;
    e->value = 0xee;
    e->next = log_head;
    log_head = e;
}

int main(void)
{
    int logged = 0;

    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, on_test_irq, NULL);
    for (unsigned int i = 0; i < EVENTS; i++) {
        compute(3000);
        if (log_value(i) == 0)
            logged++;
    }
    if (kalloc_bootinfo.test_irq)
        free_irq(kalloc_bootinfo.test_irq);
    while (log_head) {
        struct entry *e = log_head;

        log_head = e->next;
        kfree(e);
    }
    printf("%d events logged\n", logged);
    return logged == EVENTS ? 0 : 1;
}
