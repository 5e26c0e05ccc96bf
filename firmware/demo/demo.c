/*
 * demo.c — the main job's workload: every part of kalloc in one run, narrated
 * on the UART. `kalloc run` with no arguments boots this on the default board.
 *
 * Phases (each starts with kalloc_mark(phase) so the trace shows them):
 *  1. a slab cache with a constructor (72-byte objects)
 *  2. the kmalloc family: mixed sizes (96 and 192 included), krealloc,
 *     kzalloc, kcalloc
 *  3. the page allocator: orders 0..3, a GFP_DMA page, alloc_pages_exact, and a
 *     vmalloc table committed page by page before its first touch
 *  4. unmodified C: malloc, calloc, realloc, strdup, printf
 *  5. DMA: a coherent buffer and a dma_pool whose blocks go through the DMA
 *     engine; the completion interrupt frees each pool block
 *  6. memory pressure: GFP_KERNEL until it fails, then the reserve that
 *     GFP_ATOMIC (and the timer handler) may still use
 *  7. statistics, then teardown: everything is freed, nothing leaks
 *
 * All along, a timer interrupt ticks; its handler allocates a small record
 * with GFP_ATOMIC into a ring that the main program drains and frees.
 *
 * Sizes follow the board (kalloc_ram_total()), so one ELF runs on a 256 KiB
 * board and on a 1 GiB one within a few million instructions. Exit status 0
 * when every check passed, 1 otherwise.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kalloc.h"

#define TICK 20000              /* instructions between timer interrupts */
#define RING 16                 /* records the handler may have outstanding */
#define MAX_OBJS 64
#define OBJ_MAGIC 0x6f626a31u   /* "obj1": set by the constructor */
#define DMA_BLOCK 64
#define DMA_ROUNDS 4
#define COHERENT_SIZE 8192
#define FILL_MAX_ORDER 10       /* the pressure phase starts with 4 MiB blocks */

static unsigned int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("  FAIL: %s\n", what);
        failures++;
    }
}

static void phase(unsigned int n, const char *title)
{
    kalloc_mark(n);
    printf("\n[%u] %s\n", n, title);
}

/* ---- the timer: GFP_ATOMIC allocations from interrupt context ---------- */

struct tick_record {
    uint32_t seq;
    uint32_t depth;             /* kalloc_irq_depth seen by the handler: 1 */
    uint32_t when;              /* low half of mtime */
    uint32_t pad;
};

static struct tick_record *ring[RING];
static volatile unsigned int ring_head;     /* written by the handler only */
static volatile unsigned int ring_tail;     /* written by main only */
static volatile unsigned int ticks, tick_allocs, tick_failures, tick_full;
static volatile int ticking;

static void on_timer(unsigned int irq, void *arg)
{
    struct tick_record *r;

    (void)irq;
    (void)arg;
    ticks++;
    if (ring_head - ring_tail >= RING) {
        tick_full++;            /* main is busy; skip rather than block */
    } else if ((r = kmalloc(sizeof *r, GFP_ATOMIC)) != NULL) {
        r->seq = ticks;
        r->depth = kalloc_irq_depth;
        r->when = (uint32_t)kalloc_now();
        ring[ring_head % RING] = r;
        ring_head++;
        tick_allocs++;
    } else {
        tick_failures++;
    }
    if (ticking)
        kalloc_timer_set(TICK);
}

/* The test line: raised only by the host's injector (kalloc run --irq-every /
 * --irq-at), to shake the timing. Its handler allocates, checks and frees. */
static volatile unsigned int test_irqs, test_irq_bad;

static void on_test_irq(unsigned int irq, void *arg)
{
    unsigned char *p = kmalloc(32, GFP_ATOMIC);

    (void)irq;
    (void)arg;
    test_irqs++;
    if (!p)
        return;                 /* under pressure the reserve may be gone: fine */
    memset(p, 0xa5, 32);
    test_irq_bad += p[0] != 0xa5 || p[31] != 0xa5;
    kfree(p);
}

/* Frees what the handler allocated; returns how many records. */
static unsigned int ring_drain(void)
{
    unsigned int n = 0;

    while (ring_tail != ring_head) {
        struct tick_record *r = ring[ring_tail % RING];

        check(r->depth == 1, "a timer record was made in interrupt context");
        kfree(r);
        ring_tail++;
        n++;
    }
    return n;
}

/* Sleeps (wfi: the machine skips the idle time) until n more ticks. */
static void wait_ticks(unsigned int n)
{
    unsigned int target = ticks + n;

    kalloc_wait_until(ticks >= target);
}

/* ---- 1. a slab cache with a constructor -------------------------------- */

struct demo_obj {               /* 72 bytes: not a kmalloc size class */
    uint32_t magic;
    uint32_t id;
    char name[32];
    uint32_t payload[8];
};

static struct kmem_cache *obj_cache;
static struct demo_obj *objs[MAX_OBJS];
static unsigned int nobjs;
static unsigned int ctor_runs;

/* Runs once per object when its slab is new, not on every allocation: a
 * freed object goes back in its constructed state (magic set, id 0). */
static void demo_obj_ctor(void *p)
{
    struct demo_obj *o = p;

    memset(o, 0, sizeof *o);
    o->magic = OBJ_MAGIC;
    ctor_runs++;
}

static void obj_release(struct demo_obj *o)
{
    o->id = 0;                  /* back to the constructed state */
    kmem_cache_free(obj_cache, o);
}

static void phase_slab(void)
{
    unsigned int bad = 0;

    phase(1, "slab cache with a constructor");
    obj_cache = kmem_cache_create("demo_obj", sizeof(struct demo_obj), 8, 0, demo_obj_ctor);
    check(obj_cache != NULL, "kmem_cache_create");
    if (!obj_cache)
        return;
    nobjs = kalloc_ram_total() / 8192;
    nobjs = nobjs < 16 ? 16 : nobjs > MAX_OBJS ? MAX_OBJS : nobjs;
    for (unsigned int i = 0; i < nobjs; i++) {
        objs[i] = kmem_cache_alloc(obj_cache, GFP_KERNEL);
        check(objs[i] != NULL, "kmem_cache_alloc");
        if (!objs[i])
            continue;
        bad += objs[i]->magic != OBJ_MAGIC;
        objs[i]->id = i + 1;
        snprintf(objs[i]->name, sizeof objs[i]->name, "object %u", i + 1);
    }
    /* free every other one and allocate again: the slots are reused and
     * still constructed, so the constructor does not run again */
    unsigned int before = ctor_runs;
    for (unsigned int i = 0; i < nobjs; i += 2)
        if (objs[i])
            obj_release(objs[i]);
    for (unsigned int i = 0; i < nobjs; i += 2) {
        objs[i] = kmem_cache_alloc(obj_cache, GFP_KERNEL);
        if (objs[i]) {
            bad += objs[i]->magic != OBJ_MAGIC || objs[i]->id != 0;
            objs[i]->id = i + 1;
        }
    }
    check(bad == 0, "every cache object arrives constructed");
    printf("  cache demo_obj (%u bytes): %u objects live, constructor ran %u times "
           "(%u on reuse)\n", (unsigned int)sizeof(struct demo_obj), nobjs, ctor_runs,
           ctor_runs - before);
}

/* ---- 2. the kmalloc family --------------------------------------------- */

static void phase_kmalloc(void)
{
    static const size_t sizes[] = { 8, 24, 64, 96, 150, 192, 256, 700, 2048, 8192, 12000 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *p[N];

    phase(2, "kmalloc family");
    printf("  size -> ksize:");
    for (int i = 0; i < N; i++) {
        p[i] = kmalloc(sizes[i], GFP_KERNEL);
        check(p[i] != NULL, "kmalloc");
        if (!p[i])
            continue;
        memset(p[i], 0x5a, sizes[i]);
        printf(" %u->%u", (unsigned int)sizes[i], (unsigned int)ksize(p[i]));
        check(ksize(p[i]) >= sizes[i], "ksize covers the request");
    }
    printf("\n");
    for (int i = N - 1; i >= 0; i--)
        kfree(p[i]);

    char *s = kmalloc(96, GFP_KERNEL);
    if (s) {
        strcpy(s, "grown by krealloc");
        char *t = krealloc(s, 400, GFP_KERNEL);
        check(t && strcmp(t, "grown by krealloc") == 0, "krealloc keeps the contents");
        s = t ? t : s;
        printf("  krealloc 96 -> 400: \"%s\", ksize %u\n", s, (unsigned int)ksize(s));
    }
    kfree(s);

    unsigned char *z = kzalloc(200, GFP_KERNEL);
    int zero = z != NULL;
    for (int i = 0; z && i < 200; i++)
        zero &= z[i] == 0;
    check(zero, "kzalloc memory is zeroed");
    kfree(z);

    uint32_t *c = kcalloc(10, 24, GFP_KERNEL);
    zero = c != NULL;
    for (int i = 0; c && i < 60; i++)
        zero &= c[i] == 0;
    check(zero, "kcalloc memory is zeroed");
    kfree(c);
    printf("  kzalloc(200) and kcalloc(10, 24): zeroed\n");
}

/* ---- 3. the page allocator --------------------------------------------- */

static int in_dma_bank(uintptr_t addr)
{
    for (uint32_t i = 0; i < kalloc_bootinfo.nbanks && i < KH_BOOTINFO_MAX_BANKS; i++) {
        const struct kalloc_bank *b = &kalloc_bootinfo.bank[i];

        if (addr >= b->base && addr - b->base < b->size)
            return (b->flags & KH_BANK_DMA) != 0;
    }
    return 0;
}

static void phase_pages(void)
{
    phase(3, "page allocator and vmalloc");
    for (unsigned int order = 0; order <= 3; order++) {
        size_t size = (size_t)PAGE_SIZE << order;
        unsigned char *p = alloc_pages(GFP_KERNEL, order);

        check(p != NULL, "alloc_pages");
        if (!p)
            continue;
        check(((uintptr_t)p & (size - 1)) == 0, "a 2^order block is aligned to its size");
        p[0] = p[size - 1] = (unsigned char)order;     /* both ends are ours */
        printf("  order %u: %u KiB at 0x%08lx\n", order, (unsigned int)(size / 1024),
               (unsigned long)(uintptr_t)p);
        free_pages(p, order);
    }

    void *d = alloc_pages(GFP_KERNEL | GFP_DMA, 0);
    check(d && in_dma_bank((uintptr_t)d), "a GFP_DMA page comes from a DMA bank");
    printf("  GFP_DMA page at 0x%08lx (DMA bank: %s)\n", (unsigned long)(uintptr_t)d,
           d && in_dma_bank((uintptr_t)d) ? "yes" : "no");
    if (d)
        free_pages(d, 0);

    unsigned char *x = alloc_pages_exact(20000, GFP_KERNEL);
    check(x != NULL, "alloc_pages_exact(20000)");
    if (x) {
        x[0] = x[19999] = 1;
        printf("  alloc_pages_exact(20000): %u pages, not the 8 of order 3\n",
               (20000 + PAGE_SIZE - 1) / PAGE_SIZE);
        free_pages_exact(x, 20000);
    }

    /* vmalloc: a table bigger than any block we want to depend on, made of scattered
     * order-0 pages mapped contiguously. No demand paging: every page is taken before
     * vmalloc returns, so the free-page count drops by the whole size (plus page
     * tables) before the table is touched. */
    enum { VTABLE = 12 * PAGE_SIZE };
    unsigned long before = nr_free_pages();
    uint32_t *table = vmalloc(VTABLE);
    unsigned long after = nr_free_pages();
    check(table != NULL, "vmalloc(48 KiB)");
    if (table) {
        check(before - after >= VTABLE / PAGE_SIZE, "vmalloc commits every page at once");
        /* one word per 64 bytes is enough to show the pages read back contiguously */
        for (unsigned int i = 0; i < VTABLE / sizeof *table; i += 16)
            table[i] = i * 2654435761u;
        unsigned int bad = 0;
        for (unsigned int i = 0; i < VTABLE / sizeof *table; i += 16)
            bad += table[i] != i * 2654435761u;
        check(bad == 0, "a vmalloc table reads back across its pages");
        printf("  vmalloc(48 KiB) at 0x%08lx: %lu pages committed before the first touch\n",
               (unsigned long)(uintptr_t)table, before - after);
        vfree(table);
    }
}

/* ---- 4. unmodified C ----------------------------------------------------- */

static void phase_libc(void)
{
    static const char *const words[] = { "buddy", "slab", "zone", "watermark", "reserve", "dma" };
    char **names = NULL;
    size_t n = 0;

    phase(4, "the C library");
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char **grown = realloc(names, (n + 1) * sizeof *names);

        check(grown != NULL, "realloc");
        if (!grown)
            break;
        names = grown;
        names[n] = strdup(words[i]);
        check(names[n] != NULL, "strdup");
        n++;
    }
    int *squares = calloc(10, sizeof *squares);
    check(squares != NULL, "calloc");
    for (int i = 0; squares && i < 10; i++)
        squares[i] = i * i;

    char *line = malloc(80);
    check(line != NULL, "malloc");
    if (line && n && squares) {
        snprintf(line, 80, "%u words, last \"%s\", 9 squared is %d", (unsigned int)n,
                 names[n - 1], squares[9]);
        printf("  %s (malloc_usable_size %u)\n", line, (unsigned int)malloc_usable_size(line));
    }
    free(line);
    free(squares);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---- 5. DMA ---------------------------------------------------------------- */

static struct dma_pool *pool;
static unsigned char *coherent;
static dma_addr_t coherent_dma;
static void *volatile dma_pending;          /* pool block the IRQ must free */
static volatile dma_addr_t dma_pending_dma;
static volatile unsigned int dma_done, dma_errors, dma_irq_frees;

static void on_dma_done(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    if (dma_engine_status() == KALLOC_DMA_ERROR)
        dma_errors++;
    if (dma_pending) {          /* the device has the data: free in IRQ context */
        dma_pool_free(pool, dma_pending, dma_pending_dma);
        dma_pending = NULL;
        dma_irq_frees++;
    }
    dma_done++;
}

static unsigned char pattern(unsigned int round, unsigned int i)
{
    return (unsigned char)(round * 37 + i * 3 + 1);
}

static int dma_transfer(dma_addr_t src, dma_addr_t dst, uint32_t len)
{
    unsigned int target = dma_done + 1;

    dma_engine_start(src, dst, len);
    kalloc_wait_until(dma_done >= target);      /* the completion IRQ counts it */
    return dma_engine_status() == KALLOC_DMA_DONE;
}

static int dma_round(unsigned int round)
{
    dma_addr_t block_dma;
    unsigned char *block = dma_pool_alloc(pool, GFP_KERNEL, &block_dma);
    unsigned char *dst = coherent + round * DMA_BLOCK;

    if (!block)
        return 0;
    check(((block_dma ^ (block_dma + DMA_BLOCK - 1)) & ~4095u) == 0,
          "a pool block does not cross its 4096-byte boundary");
    for (unsigned int i = 0; i < DMA_BLOCK; i++)
        block[i] = pattern(round, i);
    dma_pending_dma = block_dma;
    dma_pending = block;
    if (!dma_transfer(block_dma, dma_engine_buffer_dma(), DMA_BLOCK))
        return 0;
    if (!dma_transfer(dma_engine_buffer_dma(), coherent_dma + round * DMA_BLOCK, DMA_BLOCK))
        return 0;
    for (unsigned int i = 0; i < DMA_BLOCK; i++)
        if (dst[i] != pattern(round, i))
            return 0;
    return 1;
}

static void phase_dma(void)
{
    unsigned int ok = 0;

    phase(5, "DMA: coherent buffer, pool, engine, completion interrupt");
    coherent = dma_alloc_coherent(COHERENT_SIZE, &coherent_dma, GFP_KERNEL);
    pool = dma_pool_create("demo-pool", DMA_BLOCK, DMA_BLOCK, 4096);
    check(coherent && pool, "dma_alloc_coherent and dma_pool_create");
    if (!coherent || !pool)
        return;
    check(in_dma_bank(coherent_dma), "a coherent buffer is DMA-reachable");
    printf("  coherent %u KiB at dma 0x%08lx; pool of %u-byte blocks, boundary 4096\n",
           COHERENT_SIZE / 1024, (unsigned long)coherent_dma, DMA_BLOCK);
    memset(coherent, 0, COHERENT_SIZE);
    if (kalloc_bootinfo.dma_irq == 0) {
        printf("  this board has no DMA engine: transfers skipped\n");
        return;
    }
    if (request_irq(kalloc_bootinfo.dma_irq, on_dma_done, NULL) != 0) {
        check(0, "request_irq for the DMA engine");
        return;
    }
    for (unsigned int round = 0; round < DMA_ROUNDS; round++)
        ok += dma_round(round);
    free_irq(kalloc_bootinfo.dma_irq);
    check(ok == DMA_ROUNDS, "every DMA round trip copies the pattern");
    check(dma_errors == 0, "the DMA engine reports no error");
    printf("  %u/%u round trips pool -> device -> coherent ok; %u pool blocks freed "
           "by the completion interrupt\n", ok, DMA_ROUNDS, dma_irq_frees);
}

/* ---- 6. memory pressure -------------------------------------------------- */

struct chunk {                  /* lives in the first bytes of each block */
    struct chunk *next;
    unsigned int order;
};

/* Takes blocks with GFP_KERNEL, largest first (few calls even on a big
 * board), down to single pages, until the allocator refuses: the zones are
 * then at their min watermark. Returns the chain; *pages gets the total. */
static struct chunk *fill_memory(unsigned long *pages)
{
    struct chunk *list = NULL, *c;

    *pages = 0;
    for (int order = FILL_MAX_ORDER; order >= 0; order--) {
        while ((c = alloc_pages(GFP_KERNEL | __GFP_NOWARN, order)) != NULL) {
            c->next = list;
            c->order = order;
            list = c;
            *pages += 1ul << order;
        }
    }
    return list;
}

static void phase_pressure(void)
{
    unsigned long pages;
    struct chunk *list, *next;

    phase(6, "memory pressure");
    ring_drain();
    list = fill_memory(&pages);
    printf("  GFP_KERNEL took %lu pages (%lu KiB) before it failed\n", pages, pages * 4);
    void *extra = alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0);
    check(extra == NULL, "GFP_KERNEL keeps failing at the min watermark");
    if (extra)
        free_pages(extra, 0);

    void *reserve = alloc_pages(GFP_ATOMIC, 0);
    check(reserve != NULL, "GFP_ATOMIC may use the reserve below min");
    printf("  alloc_pages(GFP_ATOMIC, 0) below the watermark: %s\n", reserve ? "ok" : "failed");

    unsigned int allocs = tick_allocs, fails = tick_failures;
    wait_ticks(4);
    printf("  meanwhile the timer handler made %u GFP_ATOMIC allocations (%u failed)\n",
           tick_allocs - allocs, tick_failures - fails);
    check(tick_allocs > allocs, "atomic allocations from the timer succeed under pressure");

    if (reserve)
        free_pages(reserve, 0);
    for (; list; list = next) {
        next = list->next;
        free_pages(list, list->order);
    }
    ring_drain();
    printf("  everything given back\n");
}

/* ---- 7. statistics and teardown ------------------------------------------ */

static void phase_teardown(void)
{
    phase(7, "statistics and teardown");
    kalloc_stats_dump(KH_STATS_ALL);

    ticking = 0;
    free_irq(KALLOC_IRQ_TIMER);
    if (kalloc_bootinfo.test_irq) {
        free_irq(kalloc_bootinfo.test_irq);
        printf("  injected test interrupts handled: %u\n", test_irqs);
        check(test_irq_bad == 0, "the test line's handler saw its own data");
    }
    printf("  timer: %u ticks, %u GFP_ATOMIC records freed by main, %u skipped (ring full)\n",
           ticks, tick_allocs, tick_full);
    check(tick_allocs > 0, "the timer handler allocated");
    ring_drain();

    for (unsigned int i = 0; i < nobjs; i++)
        if (objs[i])
            obj_release(objs[i]);
    if (obj_cache) {
        printf("  kmem_cache_shrink released %d pages\n", kmem_cache_shrink(obj_cache));
        kmem_cache_destroy(obj_cache);
    }
    if (coherent)
        dma_free_coherent(COHERENT_SIZE, coherent, coherent_dma);
    if (pool)
        dma_pool_destroy(pool);
}

int main(void)
{
    printf("kalloc demo: %lu KiB of RAM in %lu bank(s)\n",
           (unsigned long)kalloc_ram_total() / 1024, (unsigned long)kalloc_bootinfo.nbanks);

    ticking = 1;
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(TICK);
    if (kalloc_bootinfo.test_irq)
        request_irq(kalloc_bootinfo.test_irq, on_test_irq, NULL);

    phase_slab();
    ring_drain();
    phase_kmalloc();
    ring_drain();
    phase_pages();
    ring_drain();
    phase_libc();
    ring_drain();
    phase_dma();
    ring_drain();
    phase_pressure();
    phase_teardown();

    printf("\ndemo %s: %u failed checks\n", failures ? "FAILED" : "done", failures);
    return failures ? 1 : 0;
}
