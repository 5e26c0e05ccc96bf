/*
 * hostile_ctx_mret.c — returns from interrupt that the SDK does not make.
 * ctx_mode & 0xff (poked by the test before the run; initialised so that it
 * lives in .data, which boot does not clear):
 *   0  a stray `mret` in task context (no interrupt to return from): the
 *      machine's depth stays 0; nothing is reported.
 *   1  a timer handler escapes through its own `mret` (to a trampoline that
 *      longjmps back into main): the SDK's depth word stays 1 but the
 *      interrupt has returned, so main's GFP_KERNEL is task context; one
 *      bad-hypercall names the claim (depth 1) and the truth (depth 0).
 *   2  a timer handler that never returns: it longjmps into main without any
 *      `mret`, so the CPU is still in the handler (interrupts off): main's
 *      GFP_KERNEL is invalid-context, at depth 1, as the SDK also says.
 * GFP_ATOMIC allocations work after each.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#define MSTATUS_MPP_M 0x1800u
#define MSTATUS_MPIE 0x80u

volatile uint32_t ctx_mode = 0x100;
static jmp_buf escape;

/* Where the handler's own mret lands: straight back into main. */
__attribute__((noinline, used)) static void trampoline(void)
{
    longjmp(escape, 1);
}

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    if ((ctx_mode & 0xff) == 2)
        longjmp(escape, 1);                     /* never returns, no mret */
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrw mepc, %0\n"
                     "csrs mstatus, %1\n"       /* return to M-mode, interrupts on */
                     "mret\n.option pop"
                     : : "r"(trampoline), "r"(MSTATUS_MPP_M | MSTATUS_MPIE) : "memory");
}

/* An mret with nothing to return from: jumps to the next instruction. */
__attribute__((noinline)) static void stray_mret(void)
{
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "la t0, 1f\n"
                     "csrw mepc, t0\n"
                     "csrs mstatus, %0\n"
                     "mret\n"
                     "1:\n.option pop"
                     : : "r"(MSTATUS_MPP_M | MSTATUS_MPIE) : "t0", "memory");
}

int main(void)
{
    if ((ctx_mode & 0xff) == 0) {
        stray_mret();
    } else if (!setjmp(escape)) {
        request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
        kalloc_timer_set(1000);
        for (;;)
            kalloc_wfi();                       /* the handler never comes back here */
    }
    printf("mode %u: back in main\n", (unsigned)(ctx_mode & 0xff));

    void *p = kmalloc(64, GFP_KERNEL);          /* invalid-context only in mode 2 */
    kfree(p);
    char *q = kmalloc(100, GFP_ATOMIC);
    if (q == NULL)
        return 2;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
