/*
 * armv7m_hostile_exc.c — hostile firmware against the Cortex-M exception model
 * (tests/machine/test_armv7m_exceptions.py). The test writes `hostile_mode`
 * (low byte) before the run; each mode must end in a clear cpu-fault report:
 *  1 a SysTick handler returns with EXC_RETURN 0xFFFFFFF5 (no such value)
 *  2 ... with 0xFFFFFFF1 (to handler mode) with no other exception active
 *  3 ... through a forged frame whose stacked xPSR names exception 5 while it
 *    returns to thread mode (a spoofed context)
 *  4 ... through a forged frame with the Thumb bit clear in its xPSR
 *  5 the task writes SHCSR (enabling the fault handlers): not modelled
 *  6 the task requests a system reset (AIRCR SYSRESETREQ): not modelled
 *  7 the task points VTOR at a table whose SysTick vector lacks the Thumb bit
 *  8 a halfword store to NVIC_ISER0 (word-only register)
 *  9 every NVIC line enabled and pending: IRQ 1 has no vector in the SDK's table
 */
#include <stdint.h>

#include "kalloc.h"

#define REG(a) (*(volatile uint32_t *)(a))
volatile uint32_t hostile_mode = 0x100;  /* .data: crt0 clears .bss after the host wrote it */

static uint32_t fake[8] __attribute__((aligned(8)));
static uint32_t table[48] __attribute__((aligned(256)));
static volatile int fired;

static void parked(void)
{
    for (;;)
        ;
}

static void exc_return(uint32_t value, uint32_t *frame)
{
    if (frame)
        __asm__ volatile("msr msp, %0" : : "r"(frame) : "memory");
    __asm__ volatile("bx %0" : : "r"(value) : "memory");
}

static void on_tick(unsigned int irq, void *arg)
{
    uint32_t mode = hostile_mode & 0xff;

    (void)irq;
    (void)arg;
    fired = 1;
    fake[6] = (uint32_t)(uintptr_t)parked & ~1u;
    fake[7] = mode == 3 ? (1u << 24) | 5u : 0u;
    if (mode == 1)
        exc_return(0xFFFFFFF5u, 0);
    else if (mode == 2)
        exc_return(0xFFFFFFF1u, 0);
    else
        exc_return(0xFFFFFFF9u, fake);
}

int main(void)
{
    uint32_t mode = hostile_mode & 0xff;

    if (mode == 5)
        REG(0xE000ED24u) = 0x70000u;                    /* SHCSR: MEMFAULTENA | BUSFAULTENA | USGFAULTENA */
    if (mode == 6)
        REG(0xE000ED0Cu) = 0x05FA0000u | 4u;            /* AIRCR: SYSRESETREQ */
    if (mode == 7) {
        for (int i = 0; i < 48; i++)
            table[i] = ((volatile uint32_t *)0x80000000u)[i < 17 ? i : 16];
        table[15] &= ~1u;                               /* SysTick: no Thumb bit */
        REG(0xE000ED08u) = (uint32_t)(uintptr_t)table;
    }
    if (mode == 8)
        *(volatile uint16_t *)0xE000E100u = 1;
    if (mode == 9) {
        REG(0xE000E100u) = 0xFFFFFFFFu;                 /* ISER0 */
        REG(0xE000E200u) = 0xFFFFFFFEu;                 /* ISPR0: IRQ 1..31 */
    }
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(200);
    kalloc_wait_until(fired);
    return 0;
}
