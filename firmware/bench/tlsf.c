/* tlsf.c — a small TLSF allocator (Masmano et al., "TLSF: a new dynamic memory
 * allocator for real-time systems", ECRTS 2004; the layout of Conte's tlsf 3.x),
 * compiled into the bench firmware as its malloc/free: the O(1) reference the
 * issue compares kalloc with. Not part of the SDK.
 *
 * Two-level segregated fit: free blocks sit on 16 second-level lists per
 * power of two (first level), with one bitmap word per level, so finding a
 * block and inserting one are a few bit operations, whatever the heap holds.
 * Every block starts with an 8-byte header: the physically previous block
 * (NULL for the first) and the payload size, bit 0 set when free; a free
 * block's payload holds its list links. A free merges with free neighbours at
 * once, so two free blocks are never adjacent; a zero-size used block ends the
 * pool. Payloads are 8-byte aligned, at least 8 bytes.
 *
 * The pool: POOL_BYTES from the kernel's page allocator, taken at the first
 * malloc (one hypercall; kalloc sees one allocation of the whole pool).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <kalloc.h>

#ifndef POOL_BYTES /* the Makefile's Cortex-M build sets a smaller pool */
#define POOL_BYTES (2u << 20)
#endif
#define ALIGN 8u
#define SL_LOG2 4u
#define SL_COUNT (1u << SL_LOG2)
#define FL_SHIFT (SL_LOG2 + 3u)          /* sizes below 128 bytes: first level 0, 8-byte steps */
#define SMALL (1u << FL_SHIFT)
#define FL_COUNT 16u                     /* up to 2^(FL_SHIFT + FL_COUNT - 1): 4 MiB */
#define FREE_BIT 1u

typedef struct block {
    struct block *prev_phys;
    uint32_t size;                       /* payload bytes | FREE_BIT */
    struct block *next_free;             /* payload of a free block */
    struct block *prev_free;
} block_t;

#define HEADER ((uint32_t)offsetof(block_t, next_free))   /* 8 on RV32 */
#define MIN_PAYLOAD ((uint32_t)(2 * sizeof(block_t *)))  /* the list links */

static uint32_t fl_bitmap;
static uint32_t sl_bitmap[FL_COUNT];
static block_t *heads[FL_COUNT][SL_COUNT];
static int ready;

static inline uint32_t bsize(const block_t *b) { return b->size & ~FREE_BIT; }
static inline block_t *next_phys(block_t *b) { return (block_t *)((char *)b + HEADER + bsize(b)); }
static inline unsigned fls32(uint32_t x) { return 31u - (unsigned)__builtin_clz(x); }
static inline unsigned ffs32(uint32_t x) { return (unsigned)__builtin_ctz(x); }

static inline void mapping(uint32_t size, unsigned *fl, unsigned *sl)
{
    if (size < SMALL) {
        *fl = 0;
        *sl = size / (SMALL / SL_COUNT);
    } else {
        unsigned f = fls32(size);
        *sl = (size >> (f - SL_LOG2)) ^ SL_COUNT;
        *fl = f - (FL_SHIFT - 1);
    }
}

static void insert(block_t *b)
{
    unsigned fl, sl;
    block_t *head;

    mapping(bsize(b), &fl, &sl);
    head = heads[fl][sl];
    b->next_free = head;
    b->prev_free = NULL;
    if (head)
        head->prev_free = b;
    heads[fl][sl] = b;
    fl_bitmap |= 1u << fl;
    sl_bitmap[fl] |= 1u << sl;
}

static void unlink_at(block_t *b, unsigned fl, unsigned sl)
{
    block_t *next = b->next_free, *prev = b->prev_free;

    if (next)
        next->prev_free = prev;
    if (prev) {
        prev->next_free = next;
    } else {
        heads[fl][sl] = next;
        if (!next) {
            sl_bitmap[fl] &= ~(1u << sl);
            if (!sl_bitmap[fl])
                fl_bitmap &= ~(1u << fl);
        }
    }
}

static void unlink(block_t *b)
{
    unsigned fl, sl;

    mapping(bsize(b), &fl, &sl);
    unlink_at(b, fl, sl);
}

static int init(void)
{
    char *pool = alloc_pages_exact(POOL_BYTES, GFP_KERNEL);
    block_t *first, *end;

    if (!pool)
        return 0;
    first = (block_t *)pool;
    first->prev_phys = NULL;
    first->size = (POOL_BYTES - 2 * HEADER) | FREE_BIT;
    end = next_phys(first);
    end->prev_phys = first;
    end->size = 0;
    insert(first);
    ready = 1;
    return 1;
}

void *malloc(size_t request)
{
    uint32_t size, want, map;
    unsigned fl, sl;
    block_t *b;

    if (!ready && !init())
        return NULL;
    if (request > POOL_BYTES)
        return NULL;
    size = (request + ALIGN - 1) & ~(ALIGN - 1);
    if (size < MIN_PAYLOAD)
        size = MIN_PAYLOAD;
    /* search from the next list boundary up: every block on the list found fits */
    want = size < SMALL ? size : size + (1u << (fls32(size) - SL_LOG2)) - 1;
    mapping(want, &fl, &sl);
    map = sl_bitmap[fl] & (~0u << sl);
    if (!map) {
        uint32_t fmap = fl_bitmap & (~0u << (fl + 1));

        if (!fmap)
            return NULL;
        fl = ffs32(fmap);
        map = sl_bitmap[fl];
    }
    sl = ffs32(map);
    b = heads[fl][sl];
    unlink_at(b, fl, sl);
    if (bsize(b) >= size + HEADER + MIN_PAYLOAD) {     /* split: the rest goes back */
        block_t *rest = (block_t *)((char *)b + HEADER + size);

        rest->prev_phys = b;
        rest->size = (bsize(b) - size - HEADER) | FREE_BIT;
        next_phys(rest)->prev_phys = rest;
        b->size = size;
        insert(rest);
    } else {
        b->size = bsize(b);
    }
    return (char *)b + HEADER;
}

void free(void *ptr)
{
    block_t *b, *prev, *next;

    if (!ptr)
        return;
    b = (block_t *)((char *)ptr - HEADER);
    prev = b->prev_phys;
    if (prev && (prev->size & FREE_BIT)) {               /* merge with the block before */
        unlink(prev);
        prev->size = bsize(prev) + HEADER + b->size;
        b = prev;
    }
    next = next_phys(b);
    if (next->size & FREE_BIT) {                         /* and with the block after */
        unlink(next);
        b->size = bsize(b) + HEADER + bsize(next);
    }
    b->size = bsize(b) | FREE_BIT;
    next_phys(b)->prev_phys = b;
    insert(b);
}
