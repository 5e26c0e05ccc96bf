/*
 * armv7m_it_ticks.c — Thumb IT blocks in a hot loop while SysTick ticks, on the
 * stm32f4 board (tests/machine/test_armv7m_it_slices.py). Unicorn runs an IT block
 * to its end when a slice's instruction count runs out inside it (rawcount.py), so
 * this is where a machine whose time or reports depend on where its slices end
 * shows it. The loop is a Collatz walk whose branches GCC -O2 makes IT blocks; the
 * timer ticks every PERIOD (odd) instructions, so ticks land all over the loop,
 * inside its IT blocks too; each tick folds kalloc_now() and the loop's state into
 * a digest, printed at the end with the tick count and the loop's result.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define PERIOD 997u
#define TICKS 300u

static volatile uint32_t ticks;
static volatile uint32_t x_seen;  /* where the loop is, for the handler */
static uint32_t digest;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    digest = digest * 31u + (uint32_t)kalloc_now() + x_seen;
    if (++ticks < TICKS)
        kalloc_timer_set(PERIOD);
}

__attribute__((noipa)) static uint32_t walk(uint32_t x, uint32_t n)
{
    uint32_t m = 0;

    while (n--) {
        x = (x & 1u) ? 3u * x + 1u : x >> 1;
        if (x < 2u)
            x = 27u + n;
        m = x > m ? x : m;
        x_seen = x;
    }
    return m;
}

int main(void)
{
    uint32_t m = 0, x = 27u;

    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(PERIOD);
    while (ticks < TICKS) {
        m ^= walk(x, 50u);
        x += 2u;
    }
    printf("ticks %lu digest %08lx m %08lx\n", (unsigned long)ticks, (unsigned long)digest, (unsigned long)m);
    return 0;
}
