/*
 * driver.c — the lab driver firmware of `kalloc lab` (docs/teaching.md).
 *
 * main returns at once: the lab (kalloc_machine/tools/lab.py) boots the
 * firmware, stops at main, and then calls lab_init once and one lab_* entry
 * per trace operation through the test harness (Target.call), as `kalloc
 * replay --firmware` drives its shim. Each entry is a plain call into the
 * student's code; everything the lab checks it checks from Python, in guest
 * memory, after the call returns (alignment, bounds, overlap, contents).
 *
 * mm_calloc and mm_check are optional: weak references, 0 when the student's
 * file does not define them (lab_has() tells the lab which exist).
 *
 * The interrupt round (`kalloc lab --irq`, lab_irq_start): a one-shot timer,
 * re-armed from a seeded xorshift32 after each tick, whose handler allocates
 * and frees from the student's allocator (mm_malloc / mm_free in interrupt
 * context) while the trace runs. Each tick picks one of LAB_IRQ_SLOTS slots:
 * a held block is checked (its fill byte) and freed, an empty slot gets a new
 * block of 1..64 bytes filled with a byte of its allocation number. The slots
 * (address, size, allocation number, the interrupted pc) are the lab's to read
 * after every operation: it checks the handler's blocks with the trace's
 * (alignment, bounds, overlap, contents). The deadlines count instructions
 * (mtime), so the same seed gives the same interrupts, at the same pcs.
 * This file is built without KASAN: its reads of the handler's blocks and of
 * the slots are not the student's accesses.
 */
#include <stddef.h>
#include <stdint.h>

#include <kalloc.h>

#include "lab.h"

#define ENTRY __attribute__((noinline, used))

extern void *mm_calloc(size_t nmemb, size_t size) __attribute__((weak));
extern int mm_check(void) __attribute__((weak));

int lab_heap_reserve(void);

extern char *lab_heap_lo;

/* The heap region first (-2 when the page allocator refuses it; the lab may have
 * reserved it already, calling lab_heap_reserve itself), then mm_init. */
ENTRY int lab_init(void)
{
    if (lab_heap_lo == NULL && lab_heap_reserve() != 0)
        return -2;
    return mm_init();
}

/* Nonzero while a trace operation is inside the student's code (the handler counts ticks taken then). */
volatile uint32_t lab_busy;

ENTRY void *lab_malloc(size_t size)
{
    lab_busy = 1;
    void *p = mm_malloc(size);
    lab_busy = 0;
    return p;
}

ENTRY void lab_free(void *ptr)
{
    lab_busy = 1;
    mm_free(ptr);
    lab_busy = 0;
}

ENTRY void *lab_realloc(void *ptr, size_t size)
{
    lab_busy = 1;
    void *p = mm_realloc(ptr, size);
    lab_busy = 0;
    return p;
}

ENTRY void *lab_calloc(size_t nmemb, size_t size)
{
    lab_busy = 1;
    void *p = mm_calloc(nmemb, size);
    lab_busy = 0;
    return p;
}

/* The student's checker sees a still heap: no tick while it walks. */
ENTRY int lab_check(void)
{
    unsigned long flags;
    local_irq_save(flags);
    int ok = mm_check();
    local_irq_restore(flags);
    return ok;
}

/* --- the interrupt round ------------------------------------------------ */

#define LAB_IRQ_SLOTS 8
#define LAB_IRQ_MAX_SIZE 64

struct lab_irq_slot {
    uint32_t addr;   /* the block's payload, 0 when the slot is empty */
    uint32_t size;   /* bytes asked of mm_malloc */
    uint32_t seq;    /* its allocation number (1, 2, ...); the fill byte is lab_irq_fill(seq) */
    uint32_t pc;     /* the pc the tick that allocated it interrupted */
};

struct lab_irq_slot lab_irq_slots[LAB_IRQ_SLOTS];
uint32_t lab_irq_state = 1;       /* xorshift32, seeded by lab_irq_start */
uint32_t lab_irq_period = 3000;   /* mean instructions between ticks (written by the lab) */
uint32_t lab_irq_ticks;           /* ticks taken */
uint32_t lab_irq_in_call;         /* ... of which while a trace operation was in the student's code */
uint32_t lab_irq_seq;             /* handler allocations so far */
uint32_t lab_irq_frees;           /* handler frees so far */
uint32_t lab_irq_nulls;           /* mm_malloc returned NULL in the handler */
uint32_t lab_irq_bad;             /* first wrong byte found in a handler block before its free, 0 if none */
uint32_t lab_irq_bad_seq;         /* ... and that block's allocation number */

static uint32_t lab_irq_rand(void)
{
    uint32_t x = lab_irq_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return lab_irq_state = x;
}

static uint8_t lab_irq_fill(uint32_t seq) { return (uint8_t)(0x5Au ^ (seq * 37u)); }

static uint32_t lab_irq_pc(void)
{
#if defined(__riscv)
    uint32_t pc;
    __asm__ volatile(".option push\n.option arch, +zicsr\ncsrr %0, mepc\n.option pop" : "=r"(pc));
    return pc;
#else
    return 0;
#endif
}

static void lab_irq_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    uint32_t r = lab_irq_rand();
    struct lab_irq_slot *s = &lab_irq_slots[r % LAB_IRQ_SLOTS];

    lab_irq_ticks++;
    lab_irq_in_call += lab_busy;
    if (s->addr) {
        const volatile uint8_t *p = (const volatile uint8_t *)(uintptr_t)s->addr;
        uint8_t fill = lab_irq_fill(s->seq);
        for (uint32_t i = 0; i < s->size; i++)
            if (p[i] != fill && !lab_irq_bad) {
                lab_irq_bad = s->addr + i;
                lab_irq_bad_seq = s->seq;
            }
        mm_free((void *)(uintptr_t)s->addr);
        s->addr = 0;
        lab_irq_frees++;
    } else {
        uint32_t size = 1 + (r >> 8) % LAB_IRQ_MAX_SIZE;
        volatile uint8_t *p = mm_malloc(size);
        if (p == NULL) {
            lab_irq_nulls++;
        } else {
            uint32_t seq = ++lab_irq_seq;
            for (uint32_t i = 0; i < size; i++)
                p[i] = lab_irq_fill(seq);
            *s = (struct lab_irq_slot){ (uint32_t)(uintptr_t)p, size, seq, lab_irq_pc() };
        }
    }
    kalloc_timer_set(lab_irq_period / 2 + (r >> 16) % lab_irq_period);
}

/* The first tick after a seeded delay; 0, or request_irq's error. */
ENTRY int lab_irq_start(uint32_t seed)
{
    lab_irq_state = seed ? seed : 1;
    int err = request_irq(KALLOC_IRQ_TIMER, lab_irq_tick, NULL);
    if (err == 0)
        kalloc_timer_set(lab_irq_period / 2 + lab_irq_rand() % lab_irq_period);
    return err;
}

ENTRY void lab_irq_stop(void) { kalloc_timer_cancel(); }

/* Bit 0: mm_calloc defined; bit 1: mm_check defined. */
ENTRY unsigned lab_has(void)
{
    return (mm_calloc ? 1u : 0u) | (mm_check ? 2u : 0u);
}

/* Referenced from main, so --gc-sections keeps every entry. */
void *const lab_entries[] = {
    (void *)lab_init, (void *)lab_malloc, (void *)lab_free, (void *)lab_realloc,
    (void *)lab_calloc, (void *)lab_check, (void *)lab_has, (void *)lab_irq_start,
    (void *)lab_irq_stop,
};

int main(void)
{
    return *(void *const volatile *)&lab_entries[0] == NULL;
}
