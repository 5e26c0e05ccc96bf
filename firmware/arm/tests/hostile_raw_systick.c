/*
 * hostile_raw_systick.c — hostile SysTick and SCS use on the stm32f4 board, against the
 * raw SCS callbacks (isa/armv7m_scsport.py: SysTick's start stamped in place) and the
 * exact Cortex-M slices through IT blocks (rawcount.py) (tests/machine/
 * test_hostile_rawpaths_armv7m.py). `hostile_mode`, poked by the test before the run:
 *  0  SysTick reprogrammed raw from its own handler (RVR odd and varying, CVR cleared,
 *     CSR re-enabled, CVR and CSR read back) while the task runs IT blocks; exit 0 after
 *     TICKS ticks with a digest of everything read;
 *  1  a storm: the handler sets RVR 1 (a tick every 2 instructions) and the task keeps
 *     clearing CVR in its loop; never exits (the budget ends it);
 *  2  a SysTick handler that never returns (an IT-block loop with the exception active);
 *  3  a byte read of SYST_CSR (word-only register): reported, the run ends as a cpu-fault;
 *  4  a misaligned word store to SYST_RVR: reported likewise;
 *  5  a word read of a reserved SCS word (0xE000E020): reported likewise.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define TICKS 150u

volatile uint32_t hostile_mode = 0xffffffffu; /* .data: poked by the test (0xffffffff: mode 0) */
static volatile uint32_t ticks, x_seen;
static uint32_t digest;

static void fold(uint32_t v) { digest = digest * 31u + v; }

__attribute__((noipa)) static uint32_t walk(uint32_t x, uint32_t n)
{
    uint32_t m = 0;

    while (n--) { /* GCC -O2 makes these branches IT blocks */
        x = (x & 1u) ? 3u * x + 1u : x >> 1;
        if (x < 2u)
            x = 27u + n;
        m = x > m ? x : m;
        x_seen = x;
    }
    return m;
}

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticks++;
    if (hostile_mode == 2) {
        for (;;)
            x_seen = walk(x_seen | 1u, 1000u);
    }
    if (hostile_mode == 1) {
        SYST_RVR = 1u;
        SYST_CVR = 0u;
        SYST_CSR = 7u;
        return;
    }
    fold(SYST_CVR);
    fold((uint32_t)kalloc_now() + x_seen);
    if (ticks >= TICKS)
        return;
    SYST_CSR = 0u;
    SYST_RVR = 60u + 2u * (ticks % 17u) + 1u;
    SYST_CVR = 0xdeadu; /* any value clears the count */
    SYST_CSR = 7u;
    fold(SYST_CVR ^ SYST_CSR);
}

int main(void)
{
    uint32_t m = 0, x = 27u;
    volatile uint8_t *b;

    if (hostile_mode == 0xffffffffu)
        hostile_mode = 0;
    switch (hostile_mode) {
    case 3:
        b = (volatile uint8_t *)0xE000E010u;
        return b[0];
    case 4:
        *(volatile uint32_t *)0xE000E015u = 5u;
        return 0;
    case 5:
        return (int)*(volatile uint32_t *)0xE000E020u;
    default:
        break;
    }
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(101u);
    while (hostile_mode != 0 || ticks < TICKS) {
        m ^= walk(x, 20u);
        x += 2u;
        if (hostile_mode == 1)
            SYST_CVR = x;
    }
    printf("ticks %lu digest %08lx m %08lx\n", (unsigned long)ticks, (unsigned long)digest, (unsigned long)m);
    return 0;
}
