/*
 * irq_race.c — a real interrupt-timing bug, for `kalloc.explore` and the
 * pytest plugin (tests/test_explore.py, tests/test_pytest_plugin.py).
 *
 * A ring of buffers is shared between the task (the producer) and the
 * handler of the board's test line (the consumer, which frees). push()
 * updates `count` with a read-modify-write and no local_irq_save(): an
 * interrupt between the read and the write lets the handler drain the ring
 * (count = 0, every buffer freed), then the task writes back old + 1. The
 * ring now claims buffers the handler already freed, and the final drain
 * frees them again: double-free. With no interrupt in that window of a few
 * instructions the run is clean, so only some schedules find the bug.
 *
 * push(), ring_len() and checksum() are also called by tests (the pytest
 * plugin's Target.call); main takes their addresses through `callable` so the
 * linker's --gc-sections keeps them even where the compiler inlined them.
 */
#include <stdio.h>

#include "kalloc.h"

#define RING 16
#define PUSHES 40

void *volatile ring[RING];
volatile unsigned int head, tail, count, drained_in_irq;

static void *pop(void)
{
    void *p = ring[tail];

    tail = (tail + 1) % RING;
    count = count - 1;
    return p;
}

/* The bug: this whole update must run under local_irq_save(). */
void push(void *p)
{
    unsigned int n = count;

    ring[head] = p;
    head = (head + 1) % RING;
    count = n + 1;
}

static void drain(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    while (count) {
        kfree(pop());
        drained_in_irq++;
    }
}

unsigned int ring_len(void)
{
    return count;
}

unsigned int checksum(const unsigned char *p, unsigned int n)
{
    unsigned int sum = 0;

    while (n--)
        sum = sum * 31 + *p++;
    return sum;
}

void *const volatile callable[] = {push, ring_len, checksum};

int main(void)
{
    unsigned long flags;

    (void)callable[0];

    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, drain, NULL);
    for (int i = 0; i < PUSHES; i++) {
        void *p = kmalloc(32 + (i % 4) * 16, GFP_KERNEL);

        if (!p)
            return 1;
        if (count >= RING - 1) {        /* full: the task drains it itself, correctly */
            local_irq_save(flags);
            drain(0, NULL);
            local_irq_restore(flags);
        }
        push(p);
    }
    local_irq_save(flags);
    drain(0, NULL);
    local_irq_restore(flags);
    if (kalloc_bootinfo.test_irq)
        free_irq(kalloc_bootinfo.test_irq);
    printf("ring done: %d pushes, %u freed in interrupts\n", PUSHES, drained_in_irq);
    return 0;
}
