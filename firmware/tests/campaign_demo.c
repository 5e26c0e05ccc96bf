/*
 * campaign_demo.c — a small driver with three seeded bugs of the kinds
 * `kalloc campaign` exists for (docs/user-guide.md, *Campaigns*):
 *
 *  1. dev_name() dereferences kmalloc's result unchecked: a cpu-fault when
 *     that allocation fails (fail-each);
 *  2. open_channel() allocates the channel, then its rx buffer, then its tx
 *     buffer, and when tx fails returns NULL without freeing the other two:
 *     a leak (fail-each);
 *  3. push() updates the ring's count with a read-modify-write that the test
 *     line's handler, which drains the ring, can interrupt: the task then
 *     counts buffers the handler already freed and frees them again, a
 *     double-free (irq points).
 *
 * Every other allocation failure is handled: main frees what it holds and
 * returns an error code. Unperturbed, the run is clean.
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

    __asm__ volatile("" : : "r"(s) : "memory");  /* keep the allocation real */
    s[0] = 'd';                                  /* bug 1: no NULL check */
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
    if (!c->tx)
        return NULL;                             /* bug 2: c and c->rx leak */
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
    unsigned int n = count;                      /* bug 3: no local_irq_save() */

    ring[head] = p;
    head = (head + 1) % RING;
    count = n + 1;
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
