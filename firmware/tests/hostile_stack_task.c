/* hostile_stack_task.c — a runaway recursion in task context overflows the
 * stack.
 *
 * The first access below the stack's bottom lands in the stack guard
 * (link.ld): kalloc ends the run with one `stack-overflow` error naming
 * runaway() and the stack in use, exit status 65, before anything below the
 * guard (.bss: kalloc_irq_depth, canary[]) is touched. Without the guard, this
 * firmware rewrote .bss and surfaced as bogus invalid-context errors and an
 * illegal instruction in unrelated code. */
#include <stdio.h>

#include "kalloc.h"

#define CANARY 0x5AC0FFEEu

volatile unsigned canary[16];  /* in .bss, below the guard; the test reads it */
static void *volatile early;

__attribute__((noinline)) unsigned runaway(unsigned n)
{
    volatile unsigned frame[8];  /* 32 bytes of locals per call */

    frame[0] = n;
    if (n == 0)
        return frame[0];
    return runaway(n - 1) + frame[0];  /* not a tail call: every frame stays */
}

int main(void)
{
    for (unsigned i = 0; i < 16; i++)
        canary[i] = CANARY;
    early = kmalloc(64, GFP_KERNEL);  /* allocations before the overflow work */
    kfree(early);
    early = kmalloc(32, GFP_KERNEL);
    printf("recursing\n");
    printf("never printed: %u\n", runaway(1000000));
    return 0;
}
