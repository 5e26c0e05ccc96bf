/*
 * armv7m_nesting.c — Cortex-M exception priorities and nesting, on the stm32f4
 * board (tests/machine/test_armv7m_exceptions.py).
 *
 * Each phase arms the timer; the SysTick handler allocates (GFP_ATOMIC), starts
 * a DMA transfer whose completion raises IRQ 0 (the interrupt controller's line)
 * 256 instructions later, and spins a while. Whether the DMA handler (which also
 * allocates GFP_ATOMIC) runs inside the SysTick handler depends only on the
 * priorities (ARMv7-M B1.5.4):
 *   equal     SysTick and IRQ 0 both 0 (reset)                 no nesting
 *   priority  SysTick 0x80, IRQ 0 0x40                         nests (depth 2)
 *   basepri   the same, the handler sets BASEPRI = 0x40         no nesting
 *   primask   the same, the handler uses local_irq_save()       no nesting
 *   subprio   SysTick 0x50, IRQ 0 0x40, PRIGROUP 4 (group 7:5)  no nesting (same group)
 *   group     the same, PRIGROUP 3 (group 7:4)                  nests
 *   reverse   SysTick 0x40, IRQ 0 0x80                          no nesting
 * Each phase prints "<name> nested=<0|1> depth=<kalloc_irq_depth in the DMA
 * handler>"; every object allocated in a handler is checked by main and freed.
 * Exit status: 0 when every phase nested as the manual says, else the phase's
 * number.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define REG8(a) (*(volatile uint8_t *)(a))
#define NVIC_IPR_IRQ0 REG8(0xE000E400u)
#define SHPR3_SYSTICK REG8(0xE000ED23u)
#define SCB_AIRCR REG(0xE000ED0Cu)
#define AIRCR_VECTKEY (0x05FAu << 16)
#define PHASES 7
#define OBJ 48

struct phase {
    const char *name;
    uint8_t systick, irq0, prigroup, basepri, primask, nests;
};

static const struct phase phases[PHASES] = {
    { "equal", 0x00, 0x00, 0, 0, 0, 0 },
    { "priority", 0x80, 0x40, 0, 0, 0, 1 },
    { "basepri", 0x80, 0x40, 0, 0x40, 0, 0 },
    { "primask", 0x80, 0x40, 0, 0, 1, 0 },
    { "subprio", 0x50, 0x40, 4, 0, 0, 0 },
    { "group", 0x50, 0x40, 3, 0, 0, 1 },
    { "reverse", 0x40, 0x80, 0, 0, 0, 0 },
};

static const struct phase *cur;
static dma_addr_t src_dma;
static volatile int in_tick, tick_done, dma_done, nested, depth;
static unsigned char *volatile tick_obj, *volatile dma_obj;

static void on_dma(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    dma_obj = kmalloc(OBJ, GFP_ATOMIC);
    if (dma_obj)
        memset(dma_obj, 0xd0, OBJ);
    nested = in_tick;
    depth = (int)kalloc_irq_depth;
    dma_done = 1;
}

static void on_tick(unsigned int irq, void *arg)
{
    unsigned long flags = 0;

    (void)irq;
    (void)arg;
    tick_obj = kmalloc(OBJ, GFP_ATOMIC);
    if (tick_obj)
        memset(tick_obj, 0x7e, OBJ);
    in_tick = 1;
    if (cur->primask)
        local_irq_save(flags);
    if (cur->basepri)
        __asm__ volatile("msr basepri, %0" : : "r"((uint32_t)cur->basepri) : "memory");
    dma_engine_start(src_dma, dma_engine_buffer_dma(), 256);
    for (volatile int i = 0; i < 3000 && !dma_done; i++)
        ;
    if (cur->basepri)
        __asm__ volatile("msr basepri, %0" : : "r"(0u) : "memory");
    if (cur->primask)
        local_irq_restore(flags);
    in_tick = 0;
    tick_done = 1;
}

static int intact(const unsigned char *p, unsigned char v)
{
    for (int i = 0; i < OBJ; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

int main(void)
{
    int failed = 0;
    void *src = dma_alloc_coherent(256, &src_dma, GFP_KERNEL);

    if (!src)
        return 100;
    request_irq(KALLOC_IRQ_TIMER, on_tick, NULL);
    request_irq(kalloc_bootinfo.dma_irq, on_dma, NULL);
    for (int n = 0; n < PHASES; n++) {
        cur = &phases[n];
        SHPR3_SYSTICK = cur->systick;
        NVIC_IPR_IRQ0 = cur->irq0;
        SCB_AIRCR = AIRCR_VECTKEY | (uint32_t)cur->prigroup << 8;
        tick_done = dma_done = nested = depth = 0;
        kalloc_timer_set(200);
        kalloc_wait_until(tick_done && dma_done);
        printf("%s nested=%d depth=%d\n", cur->name, nested, depth);
        if (!tick_obj || !dma_obj || !intact(tick_obj, 0x7e) || !intact(dma_obj, 0xd0))
            return 50 + n;
        kfree(tick_obj);
        kfree(dma_obj);
        if (nested != cur->nests && !failed)
            failed = n + 1;
    }
    dma_free_coherent(256, src, src_dma);
    return failed;
}
