/*
 * hostile_raw_fastpath_unpatch.c — ticks on the patched entry of free around the unpatch
 * (tests/machine/test_hostile_rawpaths_fastpath.py; --fastpath on --sanitize off).
 *
 * Under --fastpath on, free's first 8 bytes are `auipc t0; jalr x0` into the blob. When a
 * drain finds the window corrupt, FastPath.unpatch writes free's own bytes back and the run
 * goes on slow. Here a header word the drain checks (one the blob never reads) is scribbled,
 * and timer ticks land on each instruction of free's entry. `mode` and `delta` are poked by
 * the test.
 *
 * mode 0 (F2): free runs once patched (Unicorn translates `auipc; jalr` as one block), the
 *   drain unpatches, then the timer is armed SWEEP times with deltas 1, 2, ... right before
 *   a free: one tick lands on each instruction of its prologue. Unicorn's uc_mem_write does
 *   not drop translated blocks (2.1.4: its invalidate_and_set_dirty is empty), so unless
 *   unpatch drops them (ctl_remove_cache) free+0 still runs the patch's block; cut after its
 *   `auipc`, the next emu_start translates free's own code from free+4, so
 *   `add sp,sp,-64; sw s0,56(sp)` never ran and main later returns to 0.
 * mode 1 (F5): the timer is armed `delta` instructions ahead, the header scribbled, then
 *   malloc (the blob, from the magazine: a record) and free. For one delta the tick lands at
 *   free+4, between the patch's two instructions, and the drain at its entry unpatches: the
 *   return resumes at free+4 in free's own code (the same 4 bytes never ran).
 * Exit 0 either way when the machine gets it right.
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

#define WINDOW ((volatile uint32_t *)0xF4020000u)
#define ALLOWED 1         /* header word: 1 while the blob may serve */
#define UNUSED (0xF0 / 4) /* a header word between the trampolines and the class table */
#define SCRIBBLE 0x5c1b1eu
#define SWEEP 64u

__attribute__((section(".data"), used)) volatile uint32_t mode = 0;
__attribute__((section(".data"), used)) volatile uint32_t delta = 1;
static volatile uint32_t ticked;
static void *volatile object; /* volatile: GCC would drop a malloc/free pair */

static void tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticked = 1;
}

static void after_unpatch(void)
{
    uint32_t d;

    WINDOW[UNUSED] = SCRIBBLE; /* the drain compares the header page with its copy */
    object = malloc(24);       /* the blob: free's patch translated, records in the ring */
    free(object);
    while (WINDOW[ALLOWED]) /* a slice boundary drains the ring, fails and unpatches */
        ;
    request_irq(KALLOC_IRQ_TIMER, tick, 0);
    for (d = 1; d <= SWEEP; d++) {
        object = malloc(24);
        ticked = 0;
        kalloc_timer_set(d);
        free(object);
        while (!ticked)
            ;
    }
}

static void between_the_patchs_instructions(void)
{
    object = malloc(24); /* the slow path: then free puts it in the magazine (a record) */
    free(object);
    request_irq(KALLOC_IRQ_TIMER, tick, 0); /* a hypercall: the ring replayed */
    kalloc_timer_set(delta);
    WINDOW[UNUSED] = SCRIBBLE; /* the next drain fails the fast path */
    object = malloc(24);       /* the blob, from the magazine: a record */
    free(object);              /* the tick lands here for one delta */
    while (!ticked)
        ;
}

int main(void)
{
    if (mode == 0)
        after_unpatch();
    else
        between_the_patchs_instructions();
    return 0;
}
