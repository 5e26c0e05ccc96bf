/*
 * armv7m_psp.c — the task on the process stack (kalloc_task_on_psp, arm/crt0.S),
 * on the stm32f4 board (tests/machine/test_armv7m_exceptions.py).
 *
 * The test writes `psp_mode` before the run (low byte):
 *  0 a SysTick handler allocates GFP_ATOMIC; the task and the handler print
 *    CONTROL and their stack pointer (the task on PSP below the handlers' 4
 *    KiB, the handler on MSP at the top, with PSP left on the 8-word frame)
 *  1 the handler allocates GFP_KERNEL: invalid-context, whose report unwinds
 *    across the frame on the process stack into main
 *  2 the task recurses until its stack overflows into the guard: stack-overflow
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

const unsigned int kalloc_task_on_psp = 1;
volatile uint32_t psp_mode = 0x100;  /* .data: crt0 clears .bss after the host wrote it */

extern char __kalloc_task_stack_top[], __kalloc_stack_top[], __kalloc_stack_bottom[];
static volatile uint32_t h_control, h_msp, h_psp, h_frame_pc;
static void *volatile from_irq;
static volatile int fired;

static uint32_t control(void) { uint32_t v; __asm__ volatile("mrs %0, control" : "=r"(v)); return v; }
static uint32_t msp(void) { uint32_t v; __asm__ volatile("mrs %0, msp" : "=r"(v)); return v; }
static uint32_t psp(void) { uint32_t v; __asm__ volatile("mrs %0, psp" : "=r"(v)); return v; }

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    h_control = control();
    h_msp = msp();
    h_psp = psp();
    h_frame_pc = ((volatile uint32_t *)h_psp)[6];  /* the stacked return address */
    from_irq = kmalloc(32, (psp_mode & 0xff) == 1 ? GFP_KERNEL : GFP_ATOMIC);
    fired = 1;
}

__attribute__((noipa)) static int recurse(int n)
{
    volatile char pad[64];

    pad[0] = (char)n;
    return n ? recurse(n - 1) + pad[0] : 0;
}

int main(void)
{
    uint32_t sp;

    __asm__ volatile("mov %0, sp" : "=r"(sp));
    printf("task control=%lu sp_on_task_stack=%d\n", (unsigned long)control(),
           sp > (uint32_t)__kalloc_stack_bottom && sp <= (uint32_t)__kalloc_task_stack_top);
    if ((psp_mode & 0xff) == 2)
        return recurse(1 << 20);
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(300);
    kalloc_wait_until(fired);
    printf("handler control=%lu msp_on_handler_stack=%d psp_below=%d frame_pc_in_main=%d\n",
           (unsigned long)h_control,
           h_msp > (uint32_t)__kalloc_task_stack_top && h_msp <= (uint32_t)__kalloc_stack_top,
           h_psp < (uint32_t)__kalloc_task_stack_top,
           h_frame_pc >= (uint32_t)(uintptr_t)main && h_frame_pc < (uint32_t)(uintptr_t)main + 0x100);
    kfree(from_irq);
    return 0;
}
