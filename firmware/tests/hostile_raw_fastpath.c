/*
 * hostile_raw_fastpath.c — the fast path's ring against interrupts and errors
 * (tests/machine/test_hostile_rawpaths_fastpath.py; run with --fastpath on --sanitize off).
 * The blob serves the task's malloc/free and leaves a record in the ring; the machine
 * replays the ring inline (fastreplay.py) before an interrupt entry and at every return
 * (IrqState.watchers) and before it files an error (Machine.before_error).
 *
 * The task mallocs (the blob: a record in the ring) and hands the object to the timer
 * handler through `shared` with no hypercall in between; the handler, entered while the
 * record is still in the ring, frees it and kmallocs one (GFP_ATOMIC, the slow path) that
 * the task frees later. Were the ring not replayed at the entry, the handler's free would
 * hit an object the allocator never handed out.
 * `mode` (poked by the test, in .data):
 *   0  that, TICKS ticks, then exit 0: no error, the same report as without the fast path
 *   1  the same, and the task scribbles the ring's newest record right after a malloc, so
 *      the scribble is in the ring when the interrupt comes: one bad-hypercall, then the
 *      slow path, exit
 *   2  after a few ticks, a malloc (a record in the ring) and at once a store to address 0:
 *      the fault is filed while the ring holds the record (cpu-fault, 65)
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

__attribute__((section(".data"), used)) volatile uint32_t mode = 0;

#define WINDOW ((volatile uint32_t *)0xF4020000u)
#define HEAD 2             /* header word: records in the ring */
#define RING0 (0x2000 / 4) /* the first record */
#define RECORD_WORDS 32    /* 128 bytes */
#define TICKS 40u

static void *volatile shared;   /* the task's newest object: the handler frees it */
static void *volatile from_irq; /* the handler's object: the task frees it */
static volatile uint32_t ticks;

static void tick(unsigned int irq, void *arg)
{
    void *p = shared;

    (void)irq;
    (void)arg;
    shared = NULL;
    free(p);
    void *q = kmalloc(48, GFP_ATOMIC);
    void *old = from_irq;

    from_irq = q;
    kfree(old);
    if (++ticks < TICKS)
        kalloc_timer_set(151u + 2u * (ticks % 7u));
}

int main(void)
{
    uint32_t i;

    request_irq(KALLOC_IRQ_TIMER, tick, 0);
    kalloc_timer_set(151u);
    for (i = 0; ticks < TICKS; i++) {
        void *p = malloc(32 + (i & 3u) * 8u); /* the blob: a record in the ring */
        void *old;
        unsigned long flags;

        if (mode == 1 && i % 5u == 4u) {
            uint32_t head = WINDOW[HEAD]; /* read once: a boundary's drain may empty the ring at any time */

            if (head)
                WINDOW[RING0 + (head - 1) * RECORD_WORDS] = 0xdeadbeefu; /* w0: its frame count 0xde */
        }
        if (mode == 2 && ticks == 5u)
            *(volatile uint32_t *)(uintptr_t)p = *(volatile uint32_t *)0; /* the record still in the ring */
        local_irq_save(flags);
        old = shared;
        shared = p;
        local_irq_restore(flags);
        free(old);
    }
    kalloc_timer_cancel();
    free(shared);
    kfree(from_irq);
    return 0;
}
