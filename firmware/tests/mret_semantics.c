/*
 * mret_semantics.c — the privileged spec's trap entry and return from trap as
 * the firmware sees them, for the machine that performs both (runloop.py takes
 * the interrupt at a slice boundary; every mret of the image is marked and the
 * machine performs it in the interrupt hook: irqstate.py, isa/rv32.py):
 *   entry  mcause = 0x80000007 (machine timer), mepc = the interrupted
 *          instruction, MIE = 0, MPIE = the old MIE (1 here), MPP = M (3)
 *   mret   MIE = MPIE, MPIE = 1, MPP = U (0: the least-privileged mode this
 *          CPU has), privilege = the old MPP, pc = mepc
 * mret_mode & 0xff (poked by the test; initialised so that it lives in .data):
 *   0  checks the entry in a timer handler, mstatus in task code after its
 *      return, two stray mrets in task code (MPIE 0 and 1), and a handler
 *      interrupted by a second one (nested: mepc and mstatus saved by hand, as
 *      hostile_ctx_nested.c does); one line per check, exit 0 when all hold
 *   1  an mret with MPP = U drops to user mode: the csrr at after_user_mret
 *      is an illegal instruction there (the run ends in a cpu-fault)
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define MIE 0x8u
#define MPIE 0x80u
#define MPP 0x1800u
#define STATE (MIE | MPIE | MPP)
#define CAUSE_TIMER 0x80000007u

volatile uint32_t mret_mode = 0x100;
extern char spin_begin[], spin_end[];

static volatile int phase, ticks, failures;
static volatile uint32_t entry_mcause, entry_mstatus, entry_mepc;
static volatile uint32_t nested_mstatus, nested_mepc, back_in_outer;

static inline uint32_t csr_mstatus(void)
{
    uint32_t v;
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, mstatus\n.option pop" : "=r"(v));
    return v;
}

static inline uint32_t csr_mepc(void)
{
    uint32_t v;
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, mepc\n.option pop" : "=r"(v));
    return v;
}

static inline uint32_t csr_mcause(void)
{
    uint32_t v;
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, mcause\n.option pop" : "=r"(v));
    return v;
}

/* Waits for ticks to reach n: the interrupted instruction is in [spin_begin, spin_end). */
__attribute__((noinline)) static void spin_until(int n)
{
    __asm__ volatile(".globl spin_begin\nspin_begin:\n"
                     "1: lw t0, 0(%0)\n"
                     "blt t0, %1, 1b\n"
                     ".globl spin_end\nspin_end:\n"
                     : : "r"(&ticks), "r"(n) : "t0", "memory");
}

static int in_spin(uint32_t pc)
{
    return pc >= (uint32_t)(uintptr_t)spin_begin && pc < (uint32_t)(uintptr_t)spin_end;
}

static void check(const char *what, uint32_t got, uint32_t want)
{
    printf("%s: %#lx%s\n", what, (unsigned long)got, got == want ? "" : " WRONG");
    failures += got != want;
}

/* An mret in task code with nothing to return from: MPP = M, MPIE as given. */
__attribute__((noinline)) static uint32_t stray_mret(uint32_t mpie)
{
    uint32_t after;
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "la t0, 1f\n"
                     "csrw mepc, t0\n"
                     "li t0, 0x88\n"
                     "csrc mstatus, t0\n"
                     "csrs mstatus, %1\n"
                     "mret\n"
                     "1: csrr %0, mstatus\n"
                     ".option pop"
                     : "=r"(after) : "r"(MPP | mpie) : "t0", "memory");
    return after;
}

static void on_timer(unsigned int irq, void *arg)
{
    uint32_t mepc, mstatus;

    (void)irq;
    (void)arg;
    if (phase == 0) {                       /* a handler of task code */
        entry_mcause = csr_mcause();
        entry_mstatus = csr_mstatus();
        entry_mepc = csr_mepc();
        ticks++;
        return;
    }
    if (phase == 2) {                       /* the nested one */
        nested_mstatus = csr_mstatus();
        nested_mepc = csr_mepc();
        ticks++;
        return;
    }
    phase = 2;                              /* the outer one: nest by hand */
    mepc = csr_mepc();
    mstatus = csr_mstatus();
    kalloc_timer_set(300);
    local_irq_enable();
    spin_until(1);                          /* the nested handler counts the tick */
    back_in_outer = csr_mstatus();          /* after the nested handler's mret */
    local_irq_disable();
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrw mepc, %0\ncsrw mstatus, %1\n.option pop" : : "r"(mepc), "r"(mstatus) : "memory");
}

static void drop_to_user(void)
{
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "la t0, after_user_mret\n"
                     "csrw mepc, t0\n"
                     "li t0, 0x1800\n"
                     "csrc mstatus, t0\n"           /* MPP = U */
                     "mret\n"
                     ".globl after_user_mret\nafter_user_mret:\n"
                     "csrr t0, mstatus\n"           /* illegal in user mode */
                     ".option pop" : : : "t0", "memory");
}

int main(void)
{
    if ((mret_mode & 0xff) == 1) {
        drop_to_user();
        return 3;                                   /* not reached */
    }
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);

    kalloc_timer_set(500);
    local_irq_enable();
    spin_until(1);
    check("entry mcause", entry_mcause, CAUSE_TIMER);
    check("entry mstatus", entry_mstatus & STATE, MPIE | MPP);
    check("entry mepc in the spin", in_spin(entry_mepc), 1);
    check("after mret mstatus", csr_mstatus() & STATE, MIE | MPIE);

    local_irq_disable();
    check("stray mret, MPIE 0", stray_mret(0) & STATE, MPIE);
    check("stray mret, MPIE 1", stray_mret(MPIE) & STATE, MIE | MPIE);

    local_irq_disable();
    phase = 1;
    ticks = 0;
    kalloc_timer_set(500);
    local_irq_enable();
    spin_until(1);
    check("nested entry mstatus", nested_mstatus & STATE, MPIE | MPP);
    check("nested entry mepc in the spin", in_spin(nested_mepc), 1);
    check("outer after nested mret", back_in_outer & STATE, MIE | MPIE);
    check("task after outer mret", csr_mstatus() & STATE, MIE | MPIE);
    printf("failures: %d\n", failures);
    return failures;
}
