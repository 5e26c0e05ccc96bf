/*
 * hostile_raw_fastpath_unpatch.c — a tick between the two instructions of an unpatched
 * prologue (tests/machine/test_hostile_rawpaths_fastpath.py; --fastpath on --sanitize off).
 *
 * Under --fastpath on, free's first 8 bytes are `auipc t0; jalr x0` into the blob, and
 * Unicorn translates them as one block the first time free runs. When a drain finds the
 * window corrupt, FastPath.unpatch writes free's own bytes back. Unicorn's uc_mem_write does
 * not drop translated blocks (2.1.4: its invalidate_and_set_dirty is empty), so unless
 * unpatch drops them itself (ctl_remove_cache), free+0 still runs the patch's block.
 * Run whole, that block is harmless (the blob is off and falls back to the trampoline); cut
 * after its first instruction, it is not: the slice ends at free+4, and the next emu_start
 * translates free's own code from there, so `add sp,sp,-64; sw s0,56(sp)` never ran and
 * free's epilogue pops 64 bytes it never pushed.
 *
 * So: free runs once patched (its block translated), a word of the header page the drain
 * checks is scribbled (the drain then unpatches), and then, one tick each, the timer is
 * armed SWEEP times with deltas 1, 2, ... right before a free: one of them lands exactly
 * after free's first instruction, the count being the same at every step. Exit 0.
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

#define WINDOW ((volatile uint32_t *)0xF4020000u)
#define ALLOWED 1         /* header word: 1 while the blob may serve */
#define UNUSED (0xF0 / 4) /* a header word between the trampolines and the class table */
#define SWEEP 64u

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
    uint32_t d;

    WINDOW[UNUSED] = 0x5c1b1e; /* the drain compares the header page with its copy */
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
    return 0;
}
