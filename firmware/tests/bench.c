/* bench.c — the workloads `kalloc bench` times (emulator/bench.py).
 *
 * The bench pokes `bench_mode` and `bench_iters` into RAM before the run (they
 * live in .data, which the machine loads and crt0 leaves alone). Each mode runs
 * one operation `bench_iters` times; the bench times two iteration counts and
 * takes the difference, so boot, exit and report costs cancel out.
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

#include "../sdk/hcall.h"

enum {
    MODE_EMPTY,        /* the loop alone */
    MODE_NOP,          /* an empty hypercall round trip: the floor */
    MODE_KMALLOC,      /* kmalloc + kfree, mixed small sizes */
    MODE_CACHE,        /* kmem_cache_alloc + kmem_cache_free */
    MODE_PAGES,        /* alloc_pages + free_pages, orders 0..3 */
    MODE_MALLOC,       /* malloc + realloc + free */
    MODE_COMPUTE,      /* a compute loop, no interrupts */
    MODE_COMPUTE_IRQ,  /* the same loop with the timer ticking */
};

volatile uint32_t bench_mode = 0xffffffffu;
volatile uint32_t bench_iters = 1000;
volatile uint32_t bench_timer_period = 10000;  /* instructions between timer ticks */
volatile uint32_t bench_sink;

static volatile uint32_t ticks;

static KH_API void bench_nop(void)
{
    KH_CALL0(KH_NOP);
}

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticks++;
    kalloc_timer_set(bench_timer_period);
}

__attribute__((noipa)) uint32_t bench_compute(uint32_t n)
{
    uint32_t x = 2166136261u;
    for (uint32_t i = 0; i < n * 64; i++)
        x = (x ^ i) * 16777619u;
    return x;
}

int main(void)
{
    static const size_t sizes[] = {8, 24, 64, 96, 150, 192, 256, 40};
    uint32_t n = bench_iters;
    struct kmem_cache *cache;

    switch (bench_mode) {
    case MODE_EMPTY:
        for (uint32_t i = 0; i < n; i++)
            __asm__ volatile("" ::: "memory");
        break;
    case MODE_NOP:
        for (uint32_t i = 0; i < n; i++)
            bench_nop();
        break;
    case MODE_KMALLOC:
        for (uint32_t i = 0; i < n; i++)
            kfree(kmalloc(sizes[i & 7], GFP_KERNEL));
        break;
    case MODE_CACHE:
        cache = kmem_cache_create("bench", 72, 0, 0, NULL);
        for (uint32_t i = 0; i < n; i++)
            kmem_cache_free(cache, kmem_cache_alloc(cache, GFP_KERNEL));
        kmem_cache_destroy(cache);
        break;
    case MODE_PAGES:
        for (uint32_t i = 0; i < n; i++)
            free_pages(alloc_pages(GFP_KERNEL, i & 3), i & 3);
        break;
    case MODE_MALLOC:
        for (uint32_t i = 0; i < n; i++) {
            void *p = malloc(sizes[i & 7]);
            p = realloc(p, sizes[(i + 3) & 7]);
            free(p);
        }
        break;
    case MODE_COMPUTE:
        bench_sink = bench_compute(n);
        break;
    case MODE_COMPUTE_IRQ:
        request_irq(0, on_tick, NULL);
        kalloc_timer_set(bench_timer_period);
        local_irq_enable();
        bench_sink = bench_compute(n);
        kalloc_timer_cancel();
        break;
    default:
        return 2;
    }
    return 0;
}
