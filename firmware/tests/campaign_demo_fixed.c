/*
 * campaign_demo_fixed.c — campaign_demo.c with its three bugs fixed (the
 * solution of the teaching exercise "make this driver survive every
 * allocation failure", docs/teaching.md): dev_name() checks kmalloc's result
 * and main handles it; open_channel() frees what it allocated when tx fails;
 * push() updates the ring with interrupts off. `kalloc campaign --fail-each
 * --depth 2 --irq-points 40` finds no bug.
 */
#include <stdio.h>

#include "kalloc.h"

#define RING 16
#define PUSHES 20

struct chan {
    char *rx;
    char *tx;
};

void *volatile ring[RING];
volatile unsigned int head, tail, count;

__attribute__((noipa)) static char *dev_name(void)
{
    char *s = kmalloc(16, GFP_KERNEL);

    if (!s)
        return NULL;
    s[0] = 'd';
    s[1] = '\0';
    return s;
}

__attribute__((noipa)) static struct chan *open_channel(void)
{
    struct chan *c = kmalloc(sizeof(*c), GFP_KERNEL);

    if (!c)
        return NULL;
    c->rx = kmalloc(64, GFP_KERNEL);
    if (!c->rx) {
        kfree(c);
        return NULL;
    }
    c->tx = kmalloc(64, GFP_KERNEL);
    if (!c->tx) {
        kfree(c->rx);
        kfree(c);
        return NULL;
    }
    return c;
}

__attribute__((noipa)) static void close_channel(struct chan *c)
{
    kfree(c->tx);
    kfree(c->rx);
    kfree(c);
}

static void *pop(void)
{
    void *p = ring[tail];

    tail = (tail + 1) % RING;
    count = count - 1;
    return p;
}

__attribute__((noipa)) static void push(void *p)
{
    unsigned long flags;
    unsigned int n;

    local_irq_save(flags);
    n = count;
    ring[head] = p;
    head = (head + 1) % RING;
    count = n + 1;
    local_irq_restore(flags);
}

static void drain(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    while (count)
        kfree(pop());
}

static void drain_all(void)
{
    unsigned long flags;

    local_irq_save(flags);
    drain(0, NULL);
    local_irq_restore(flags);
}

int main(void)
{
    struct chan *c;
    char *name;

    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, drain, NULL);
    c = open_channel();
    if (!c)
        return 2;
    name = dev_name();
    if (!name) {
        close_channel(c);
        return 4;
    }
    for (int i = 0; i < PUSHES; i++) {
        void *p = kmalloc(32 + (i % 4) * 16, GFP_KERNEL);

        if (!p) {
            drain_all();
            kfree(name);
            close_channel(c);
            return 3;
        }
        if (count >= RING - 1)
            drain_all();
        push(p);
    }
    drain_all();
    if (kalloc_bootinfo.test_irq)
        free_irq(kalloc_bootinfo.test_irq);
    printf("%s: %d buffers through the ring\n", name, PUSHES);
    kfree(name);
    close_channel(c);
    return 0;
}
