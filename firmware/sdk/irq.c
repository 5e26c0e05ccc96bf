/*
 * irq.c — interrupts: the handler table, the C half of the trap vector, the
 * INTC line switches and the CLINT timer (time = executed instructions).
 *
 * trap.S saves the caller-saved registers, bumps kalloc_irq_depth and calls
 * __kalloc_trap(mcause); everything that needs a decision happens here.
 * Handlers run with mstatus.MIE clear (the machine cleared it on entry and
 * nothing sets it again before mret), so there is no nesting.
 *
 * Invariants:
 *  1. irq_table[0] is the CLINT timer; 1..31 are INTC lines.
 *  2. A line is enabled in the INTC only while it has a handler, so a claim
 *     never returns a line nobody handles (a stray one is disabled again).
 *  3. The timer is disarmed (mtimecmp = ~0) before its handler runs: a timer
 *     is one-shot and a handler re-arms it with kalloc_timer_set().
 */
#include <errno.h>

#include "kalloc.h"
#include "sdk.h"

#define MCAUSE_INTERRUPT 0x80000000u
#define MCAUSE_TIMER __KALLOC_CAUSE_TIMER()        /* RV32: MCAUSE_INTERRUPT | 7 */
#define MCAUSE_EXTERNAL __KALLOC_CAUSE_EXTERNAL()  /* RV32: MCAUSE_INTERRUPT | 11; Cortex-M: IPSR 16 */
#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)

volatile uint32_t kalloc_irq_depth;

struct irq_action {
    irq_handler_t handler;
    void *arg;
};

static struct irq_action irq_table[KALLOC_NR_IRQS];

/* --- CLINT timer ------------------------------------------------------ */

uint64_t kalloc_now(void)
{
    uint32_t base = kalloc_bootinfo.clint_base;
    uint32_t hi, lo;

    /* Two 32-bit halves: re-read until the high half did not move. */
    do {
        hi = KALLOC_REG32(base, KALLOC_CLINT_MTIME + 4);
        lo = KALLOC_REG32(base, KALLOC_CLINT_MTIME);
    } while (hi != KALLOC_REG32(base, KALLOC_CLINT_MTIME + 4));
    return (uint64_t)hi << 32 | lo;
}
#if !defined(__arm__) /* the CLINT's compare (Cortex-M: SysTick, arm/systick.c) */
/* The privileged spec's sequence: never let mtimecmp pass through a value
 * smaller than both the old and the new one, or a spurious tick fires. */
static void timer_write(uint64_t when)
{
    uint32_t base = kalloc_bootinfo.clint_base;

    KALLOC_REG32(base, KALLOC_CLINT_MTIMECMP) = 0xffffffffu;
    KALLOC_REG32(base, KALLOC_CLINT_MTIMECMP + 4) = (uint32_t)(when >> 32);
    KALLOC_REG32(base, KALLOC_CLINT_MTIMECMP) = (uint32_t)when;
}

void kalloc_timer_set(uint32_t delta)
{
    timer_write(kalloc_now() + delta);
}

void kalloc_timer_cancel(void)
{
    timer_write(~(uint64_t)0);
}
#endif
/* --- INTC lines ------------------------------------------------------- */

static void intc_update(unsigned int irq, int on)
{
    uint32_t base = kalloc_bootinfo.intc_base;
    unsigned long flags;

    local_irq_save(flags);
    if (on)
        KALLOC_REG32(base, KALLOC_INTC_ENABLE) |= 1u << irq;
    else
        KALLOC_REG32(base, KALLOC_INTC_ENABLE) &= ~(1u << irq);
    local_irq_restore(flags);
}

void enable_irq(unsigned int irq)
{
    if (irq > 0 && irq < KALLOC_NR_IRQS)
        intc_update(irq, 1);
}

void disable_irq(unsigned int irq)
{
    if (irq > 0 && irq < KALLOC_NR_IRQS)
        intc_update(irq, 0);
    else if (irq == KALLOC_IRQ_TIMER)
        kalloc_timer_cancel();
}

int request_irq(unsigned int irq, irq_handler_t handler, void *arg)
{
    unsigned long flags;

    if (irq >= KALLOC_NR_IRQS || !handler)
        return -EINVAL;
    local_irq_save(flags);
    if (irq_table[irq].handler) {
        local_irq_restore(flags);
        return -EBUSY;
    }
    irq_table[irq] = (struct irq_action){ handler, arg };
    local_irq_restore(flags);
    enable_irq(irq);        /* line 0 is armed by kalloc_timer_set() instead */
    return 0;
}

void free_irq(unsigned int irq)
{
    unsigned long flags;

    if (irq >= KALLOC_NR_IRQS)
        return;
    disable_irq(irq);
    local_irq_save(flags);
    irq_table[irq] = (struct irq_action){ NULL, NULL };
    local_irq_restore(flags);
}

/* --- dispatch ----------------------------------------------------------- */

static void dispatch_timer(void)
{
    struct irq_action *a = &irq_table[KALLOC_IRQ_TIMER];

    kalloc_timer_cancel();
    if (a->handler)
        a->handler(KALLOC_IRQ_TIMER, a->arg);
}

static void dispatch_external(void)
{
    uint32_t base = kalloc_bootinfo.intc_base;
    uint32_t irq = KALLOC_REG32(base, KALLOC_INTC_CLAIM);
    struct irq_action *a;

    if (irq == 0 || irq >= KALLOC_NR_IRQS)
        return;                 /* spurious: someone else claimed it */
    a = &irq_table[irq];
    if (a->handler)
        a->handler(irq, a->arg);
    else
        intc_update(irq, 0);    /* invariant 2: nobody wants it */
    KALLOC_REG32(base, KALLOC_INTC_CLAIM) = irq;
}

static void panic_unexpected(uint32_t mcause)
{
    static char msg[] = "kalloc SDK: unexpected trap, mcause=0x00000000";
    static const char hex[] = "0123456789abcdef";
    char *digit = msg + sizeof msg - 2;

    for (int i = 0; i < 8; i++, mcause >>= 4)
        *digit-- = hex[mcause & 0xf];
    kalloc_panic(msg);
}

void __kalloc_trap(uint32_t mcause)
{
    if (mcause == MCAUSE_TIMER)
        dispatch_timer();
    else if (mcause == MCAUSE_EXTERNAL)
        dispatch_external();
    else
        panic_unexpected(mcause);  /* Unicorn never vectors synchronous traps */
}

/* Boot: the timer disarmed (its reset value is not ours to trust), both
 * interrupt sources enabled in mie, then the global switch. */
void __kalloc_irq_init(void)
{
    kalloc_timer_cancel();
    __KALLOC_ENABLE_SOURCES(MIE_MTIE |   /* RV32: csrs mie (kalloc.h's end) */
                            MIE_MEIE);
    local_irq_enable();
}
