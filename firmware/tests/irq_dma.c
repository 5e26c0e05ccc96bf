/*
 * irq_dma.c — interrupts and DMA end to end (tests/test_irq_dma.py). One ELF,
 * several scenarios: the test writes `irq_dma_mode` in RAM before the run.
 *
 *  0 ATOMIC      a timer handler allocates with GFP_ATOMIC: it must succeed
 *  1 UNREACHABLE DMA from a kmalloc(GFP_KERNEL) buffer (NORMAL zone): dma-unreachable
 *  2 BOUNDARY    a transfer across a 64 KiB boundary inside a GFP_DMA block: dma-boundary
 *  3 TRANSFERS   coherent, pool and kmalloc(GFP_DMA) buffers round-trip through the
 *                device buffer; the data is checked on both sides
 *  4 RESERVE     GFP_KERNEL fills memory until it fails; the timer handler's
 *                GFP_ATOMIC allocations still succeed from the reserve
 *  5 SCHEDULE    main allocates and checks patterns while the test line (driven by
 *                --irq-at) allocates, checks and frees in its handler
 *  6 COHERENT_FREE  dma_free_coherent() from a handler: invalid-context
 *  7 OVERRUN     a DMA write past the end of a GFP_DMA kmalloc object: out-of-bounds
 *
 * Exit status: 0 when the scenario's own checks passed, the failed check's number
 * otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

/* In .data (crt0 clears .bss after the host wrote it); the low byte is the mode. */
volatile uint32_t irq_dma_mode = 0x100;

static volatile int fired;
static void *volatile from_irq;

static int dma_copy(dma_addr_t src, dma_addr_t dst, uint32_t len)
{
    dma_engine_start(src, dst, len);
    while (dma_engine_status() == KALLOC_DMA_BUSY)
        ;
    return dma_engine_status() == KALLOC_DMA_DONE;
}

static void on_timer_atomic(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    from_irq = kmalloc(48, GFP_ATOMIC);
    fired = 1;
}

static int atomic_in_handler(void)
{
    request_irq(KALLOC_IRQ_TIMER, on_timer_atomic, NULL);
    kalloc_timer_set(500);
    kalloc_wait_until(fired);
    if (!from_irq)
        return 1;
    kfree(from_irq);
    return 0;
}

static int unreachable(void)
{
    unsigned char *buf = kmalloc(256, GFP_KERNEL);      /* NORMAL zone first: wrong */

    memset(buf, 1, 256);
    if (dma_copy((dma_addr_t)(uintptr_t)buf, dma_engine_buffer_dma(), 256))
        return 1;                                       /* the engine must refuse */
    kfree(buf);
    return 0;
}

static int boundary(void)
{
    unsigned char *blk = alloc_pages(GFP_KERNEL | GFP_DMA, 5);  /* 128 KiB, aligned */
    int refused;

    if (!blk)
        return 2;
    /* 64 bytes straddling the 64 KiB line in the middle of the block */
    refused = !dma_copy((dma_addr_t)(uintptr_t)(blk + 65536 - 32), dma_engine_buffer_dma(), 64);
    free_pages(blk, 5);
    return refused ? 0 : 1;
}

static int round_trip(unsigned char *buf, dma_addr_t dma, unsigned int salt)
{
    unsigned char *dev = dma_engine_buffer();

    for (int i = 0; i < 128; i++)
        buf[i] = (unsigned char)(i * 7 + salt);
    if (!dma_copy(dma, dma_engine_buffer_dma(), 128))
        return 0;
    for (int i = 0; i < 128; i++)                       /* device side */
        if (dev[i] != (unsigned char)(i * 7 + salt))
            return 0;
    memset(buf, 0, 128);
    for (int i = 0; i < 128; i++)
        dev[i] = (unsigned char)(i ^ salt);
    if (!dma_copy(dma_engine_buffer_dma(), dma, 128))
        return 0;
    for (int i = 0; i < 128; i++)                       /* RAM side */
        if (buf[i] != (unsigned char)(i ^ salt))
            return 0;
    return 1;
}

static int transfers(void)
{
    dma_addr_t coh_dma, pool_dma;
    unsigned char *coh = dma_alloc_coherent(4096, &coh_dma, GFP_KERNEL);
    struct dma_pool *pool = dma_pool_create("irq_dma", 128, 16, 4096);
    unsigned char *blk = pool ? dma_pool_alloc(pool, GFP_KERNEL, &pool_dma) : NULL;
    unsigned char *km = kmalloc(128, GFP_KERNEL | GFP_DMA);

    if (!coh || !blk || !km)
        return 1;
    if (!round_trip(coh, coh_dma, 1))
        return 2;
    if (!round_trip(blk, pool_dma, 2))
        return 3;
    if (!round_trip(km, (dma_addr_t)(uintptr_t)km, 3))
        return 4;
    printf("coherent, pool and GFP_DMA buffers round-trip\n");
    kfree(km);
    dma_pool_free(pool, blk, pool_dma);
    dma_pool_destroy(pool);
    dma_free_coherent(4096, coh, coh_dma);
    return 0;
}

static volatile unsigned int atomic_ok, atomic_failed;

static void on_timer_reserve(unsigned int irq, void *arg)
{
    void *p = alloc_pages(GFP_ATOMIC, 0);

    (void)irq;
    (void)arg;
    if (p) {
        atomic_ok++;
        free_pages(p, 0);
    } else {
        atomic_failed++;
    }
    fired++;
    if (fired < 4)
        kalloc_timer_set(300);
}

static int reserve(void)
{
    void **head = NULL, **p;
    unsigned int n = 0;

    while ((p = alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0)) != NULL) {
        *p = head;
        head = p;
        n++;
    }
    request_irq(KALLOC_IRQ_TIMER, on_timer_reserve, NULL);
    kalloc_timer_set(300);
    kalloc_wait_until(fired >= 4);
    printf("GFP_KERNEL took %u pages; then the handler: %u atomic ok, %u failed\n", n, atomic_ok,
           atomic_failed);
    while (head) {
        p = *head;
        free_pages(head, 0);
        head = p;
    }
    return atomic_ok == 4 ? 0 : 1;
}

/* 5: the schedule scenario. Main keeps a table of patterned objects; the
 * test line's handler makes its own, checks it and frees it. */
#define SLOTS 24
static unsigned char *slot[SLOTS];
static volatile unsigned int handler_runs, handler_bad;

static void on_test_line(unsigned int irq, void *arg)
{
    unsigned char *p = kmalloc(40, GFP_ATOMIC);

    (void)irq;
    (void)arg;
    handler_runs++;
    if (!p) {
        handler_bad++;
        return;
    }
    memset(p, 0x5a, 40);
    for (int i = 0; i < 40; i++)
        handler_bad += p[i] != 0x5a;
    kfree(p);
}

static int schedule(void)
{
    unsigned int bad = 0;

    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, on_test_line, NULL);
    for (unsigned int round = 0; round < 40; round++) {
        unsigned int i = (round * 7) % SLOTS;
        size_t size = 16 + (round * 13) % 200;

        if (slot[i]) {
            for (size_t k = 0; k < 16; k++)
                bad += slot[i][k] != (unsigned char)(i + k);
            kfree(slot[i]);
        }
        slot[i] = kmalloc(size, GFP_KERNEL);
        if (!slot[i])
            return 1;
        for (size_t k = 0; k < 16; k++)
            slot[i][k] = (unsigned char)(i + k);
    }
    for (unsigned int i = 0; i < SLOTS; i++)
        kfree(slot[i]);
    if (kalloc_bootinfo.test_irq)
        free_irq(kalloc_bootinfo.test_irq);
    printf("schedule: %u handler runs\n", handler_runs);
    return bad || handler_bad ? 2 : 0;
}

static unsigned char *coherent;
static dma_addr_t coherent_dma;

static void on_timer_coherent_free(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    dma_free_coherent(4096, coherent, coherent_dma);    /* not from interrupt context */
    fired = 1;
}

static int coherent_free_in_irq(void)
{
    coherent = dma_alloc_coherent(4096, &coherent_dma, GFP_KERNEL);
    request_irq(KALLOC_IRQ_TIMER, on_timer_coherent_free, NULL);
    kalloc_timer_set(500);
    kalloc_wait_until(fired);
    return 0;
}

static int overrun(void)
{
    unsigned char *buf = kmalloc(100, GFP_KERNEL | GFP_DMA);

    if (dma_copy(dma_engine_buffer_dma(), (dma_addr_t)(uintptr_t)buf, 200))
        return 1;                                       /* refused under a sanitizer */
    kfree(buf);
    return 0;
}

int main(void)
{
    switch (irq_dma_mode & 0xff) {
    case 0: return atomic_in_handler();
    case 1: return unreachable();
    case 2: return boundary();
    case 3: return transfers();
    case 4: return reserve();
    case 5: return schedule();
    case 6: return coherent_free_in_irq();
    case 7: return overrun();
    default: return 63;
    }
}
