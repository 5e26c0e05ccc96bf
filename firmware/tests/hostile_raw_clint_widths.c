/* hostile_raw_clint_widths.c — CLINT accesses of every width at every byte of mtime and
 * mtimecmp, at MSIP and at unmapped offsets inside the window, loads and stores
 * (tests/machine/test_hostile_rawpaths.py). The CLINT's MMIO is raw ctypes callbacks
 * (timerport.py) that decode the SDK's aligned words inline and hand everything else to
 * Clint.read/write; an mtime read may take its boundary in place (RunLoop.read_boundary).
 * Misaligned accesses are legal on this machine (docs/abi.md): words and halves at odd
 * bytes of mtime and mtimecmp, and across their ends, too.
 * Whatever the width, the run must end cleanly (exit 0), with the same digest and the same
 * report for any quantum. The timer ticks meanwhile: each tick folds kalloc_now() in. */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define CLINT KALLOC_CLINT_BASE
#define R8(o) (*(volatile uint8_t *)(CLINT + (o)))
#define R16(o) (*(volatile uint16_t *)(CLINT + (o)))
#define R32(o) (*(volatile uint32_t *)(CLINT + (o)))

static volatile uint32_t ticks;
static uint32_t digest;

static void fold(uint32_t v) { digest = digest * 31u + v; }

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    fold((uint32_t)kalloc_now());
    ticks++;
    kalloc_timer_set(211u);
}

static const uint32_t holes[] = {0x4, 0x100, 0x3ffc, 0x4008, 0x8000, 0xbff0, 0xc000, 0xfffc};

__attribute__((noipa)) static void sweep(void)
{
    unsigned i;

    for (i = 0; i < 8; i++) { /* mtime, every byte, half and word */
        fold(R8(KALLOC_CLINT_MTIME + i));
        if (!(i & 1))
            fold(R16(KALLOC_CLINT_MTIME + i));
        if (!(i & 3))
            fold(R32(KALLOC_CLINT_MTIME + i));
    }
    for (i = 0; i < 8; i++) { /* mtimecmp, read back */
        fold(R8(KALLOC_CLINT_MTIMECMP + i));
        if (!(i & 1))
            fold(R16(KALLOC_CLINT_MTIMECMP + i));
    }
    for (i = 0; i < sizeof holes / sizeof holes[0]; i++) { /* nothing there: reads 0, stores ignored */
        R32(holes[i]) = 0xdeadbeefu;
        R16(holes[i]) = 0xbeefu;
        R8(holes[i]) = 0xefu;
        fold(R32(holes[i]) + R16(holes[i]) + R8(holes[i]));
    }
    R32(0) = 1u; /* MSIP: no software interrupt on this machine */
    fold(R32(0));
    R32(KALLOC_CLINT_MTIME) = 0u; /* mtime is read-only */
    R8(KALLOC_CLINT_MTIME + 7) = 0xffu;
    fold(R32(KALLOC_CLINT_MTIME));
}

__attribute__((noipa)) static void misaligned(void)
{
    unsigned i;

    for (i = 1; i < 8; i++) { /* mtime: words and halves at every odd place, the last across its end */
        fold(R32(KALLOC_CLINT_MTIME + i));
        fold(R16(KALLOC_CLINT_MTIME + i));
    }
    fold(R32(KALLOC_CLINT_MTIME - 2)); /* across its start */
    for (i = 1; i < 8; i++)
        fold(R32(KALLOC_CLINT_MTIMECMP + i) ^ R16(KALLOC_CLINT_MTIMECMP + i));
}

__attribute__((noipa)) static void misaligned_cmp(void)
{
    /* mtimecmp stored at odd places (far ahead), then re-armed: no early or lost tick */
    unsigned long flags;

    local_irq_save(flags);
    R32(KALLOC_CLINT_MTIMECMP + 1) = 0xffffffffu;
    R16(KALLOC_CLINT_MTIMECMP + 3) = 0xffffu;
    R32(KALLOC_CLINT_MTIMECMP + 5) = 0x00000100u;
    R32(KALLOC_CLINT_MTIMECMP - 2) = 0x12345678u; /* half of it in a hole */
    fold(R32(KALLOC_CLINT_MTIMECMP) ^ R32(KALLOC_CLINT_MTIMECMP + 4));
    local_irq_restore(flags);
    kalloc_timer_set(211u);
}

__attribute__((noipa)) static void bytewise_cmp(void)
{
    /* mtimecmp far ahead, byte by byte and half by half: the timer must not fire early */
    unsigned long flags;

    local_irq_save(flags);
    R32(KALLOC_CLINT_MTIMECMP) = 0xffffffffu;
    R8(KALLOC_CLINT_MTIMECMP + 4) = 0x01u;
    R8(KALLOC_CLINT_MTIMECMP + 5) = 0x00u;
    R16(KALLOC_CLINT_MTIMECMP + 6) = 0x0000u;
    R16(KALLOC_CLINT_MTIMECMP + 0) = 0x0000u;
    R8(KALLOC_CLINT_MTIMECMP + 2) = 0x00u;
    R8(KALLOC_CLINT_MTIMECMP + 3) = 0x00u; /* 0x1_0000_0000: far away */
    fold(R32(KALLOC_CLINT_MTIMECMP) ^ R32(KALLOC_CLINT_MTIMECMP + 4));
    local_irq_restore(flags);
    kalloc_timer_set(211u);
}

int main(void)
{
    unsigned n;

    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    kalloc_timer_set(211u);
    for (n = 0; n < 60; n++) {
        sweep();
        misaligned();
        if (n % 10 == 9)
            bytewise_cmp();
        if (n % 10 == 4)
            misaligned_cmp();
    }
    kalloc_timer_cancel();
    printf("ticks %lu digest %08lx\n", (unsigned long)ticks, (unsigned long)digest);
    return 0;
}
