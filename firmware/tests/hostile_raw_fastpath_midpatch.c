/*
 * hostile_raw_fastpath_midpatch.c — a tick between the patch's two instructions finds the ring
 * corrupt (tests/machine/test_hostile_rawpaths_fastpath.py; --fastpath on --sanitize off).
 *
 * Under --fastpath on, free's first 8 bytes are `auipc t0; jalr x0` into the blob. A tick
 * may land between them (the PC at free+4 is outside the window: nothing defers it), and the
 * drain before the interrupt entry may find the ring corrupt and unpatch. The return then
 * lands at free+4 in free's own code: `add sp,sp,-64; sw s0,56(sp)` (the 4 bytes the auipc
 * stood for) never ran. Found by helper C, session 18 (F5): FastPath.unpatch leaves a PC (or
 * an interrupted task's mepc) at a patch's second instruction where it is.
 *
 * main: one object through the slow path into the magazine, a hypercall (the ring replayed),
 * the timer armed `delta` instructions ahead (poked by the test: it tries each), a header word
 * the drain checks scribbled, then malloc (the blob: a record) and free, where for one delta
 * the tick lands at free+4. Exit 0 after the tick.
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

#define WINDOW ((volatile uint32_t *)0xF4020000u)
#define UNUSED (0xF0 / 4) /* a header word between the trampolines and the class table */

__attribute__((section(".data"), used)) volatile uint32_t delta = 1; /* poked by the test */
static volatile uint32_t ticked;
static void *volatile object; /* volatile: GCC would drop a malloc/free pair */

static void tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticked = 1;
}

int main(void)
{
    object = malloc(24); /* the slow path: then free puts it in the magazine (a record) */
    free(object);
    request_irq(KALLOC_IRQ_TIMER, tick, 0); /* a hypercall: the ring replayed */
    kalloc_timer_set(delta);
    WINDOW[UNUSED] = 0x5c1b1e; /* the next drain fails the fast path */
    object = malloc(24);       /* the blob, from the magazine: a record */
    free(object);              /* the tick lands here for one delta */
    while (!ticked)
        ;
    return 0;
}
