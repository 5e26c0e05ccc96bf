/*
 * segregated.c — the second reference allocator of `kalloc lab`: segregated
 * explicit free lists (one LIFO list per power-of-two size class), boundary
 * tags, immediate coalescing, and a realloc that grows in place into a free
 * neighbour or at the end of the heap.
 *
 * Blocks are multiples of 8 bytes with a 4-byte header and a 4-byte footer
 * (size | allocated); a free block keeps its list links in its payload (next
 * at bp, prev at bp + 4), so the smallest block is 16 bytes. Compared with
 * implicit.c a search visits only free blocks of about the right size, and
 * most reallocs do not copy. docs/teaching.md, "Lab: write your own allocator".
 *
 * Interrupt-safe: every heap update runs under local_irq_save (`kalloc lab
 * --irq` calls mm_malloc and mm_free from a timer handler).
 *
 * stale_head.c includes this file with LAB_BUG_STALE_HEAD: unlinking the first
 * block of a list leaves the list's head pointing at it (marked "lab example
 * bug" below), so an allocated block is handed out again; seg_irq_race.c with
 * LAB_BUG_IRQ_RACE: no local_irq_save, so `kalloc lab --irq` catches the race;
 * seg_realloc_lost.c with LAB_BUG_REALLOC_LOST: mm_realloc frees the old block
 * before it copies, and mm_free's list links overwrite the payload's first bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <kalloc.h> /* local_irq_save / local_irq_restore */

#include "lab.h"

#ifdef LAB_BUG_IRQ_RACE
#define local_irq_save(flags) ((flags) = 0)        /* lab example bug: interrupts stay on */
#define local_irq_restore(flags) ((void)(flags))
#endif

#define WSIZE 4
#define DSIZE 8
#define MINBLOCK 16
#define CHUNK 4096
#define NLISTS 14

#define PACK(size, alloc) ((size) | (alloc))
#define GET(p) (*(uint32_t *)(p))
#define PUT(p, v) (*(uint32_t *)(p) = (uint32_t)(v))
#define SIZE(p) (GET(p) & ~0x7u)
#define ALLOC(p) (GET(p) & 0x1u)
#define HDRP(bp) ((char *)(bp) - WSIZE)
#define FTRP(bp) ((char *)(bp) + SIZE(HDRP(bp)) - DSIZE)
#define NEXT(bp) ((char *)(bp) + SIZE(HDRP(bp)))
#define PREV(bp) ((char *)(bp) - SIZE((char *)(bp) - DSIZE))
#define LINK_NEXT(bp) (*(char **)(bp))
#define LINK_PREV(bp) (*(char **)((char *)(bp) + WSIZE))

static char *heap_list;
static char *lists[NLISTS];

static int class_of(uint32_t size)
{
    int c = 0;
    for (uint32_t s = MINBLOCK; c < NLISTS - 1 && s < size; s <<= 1)
        c++;
    return c;
}

static void set(char *bp, uint32_t size, uint32_t alloc)
{
    PUT(HDRP(bp), PACK(size, alloc));
    PUT(FTRP(bp), PACK(size, alloc));
}

static void insert(char *bp)
{
    int c = class_of(SIZE(HDRP(bp)));
    LINK_PREV(bp) = NULL;
    LINK_NEXT(bp) = lists[c];
    if (lists[c] != NULL)
        LINK_PREV(lists[c]) = bp;
    lists[c] = bp;
}

static void unlink_block(char *bp)
{
    int c = class_of(SIZE(HDRP(bp)));
    if (LINK_PREV(bp) != NULL)
        LINK_NEXT(LINK_PREV(bp)) = LINK_NEXT(bp);
#ifndef LAB_BUG_STALE_HEAD
    else
        lists[c] = LINK_NEXT(bp);
#else
    (void)c;                               /* lab example bug: the list head stays */
#endif
    if (LINK_NEXT(bp) != NULL)
        LINK_PREV(LINK_NEXT(bp)) = LINK_PREV(bp);
}

/* bp is free and in no list: merge it with its free neighbours, list the result. */
static char *coalesce(char *bp)
{
    uint32_t size = SIZE(HDRP(bp));
    char *next = NEXT(bp);
    if (!ALLOC(HDRP(next))) {
        unlink_block(next);
        size += SIZE(HDRP(next));
    }
    if (!ALLOC(bp - DSIZE)) {
        char *prev = PREV(bp);
        unlink_block(prev);
        size += SIZE(HDRP(prev));
        bp = prev;
    }
    set(bp, size, 0);
    insert(bp);
    return bp;
}

static char *extend_heap(uint32_t bytes)
{
    uint32_t size = (bytes + DSIZE - 1) & ~(uint32_t)(DSIZE - 1);
    char *bp = mem_sbrk((int)size);
    if (bp == (void *)-1)
        return NULL;
    set(bp, size, 0);                      /* the old epilogue becomes the header */
    PUT(HDRP(NEXT(bp)), PACK(0, 1));       /* new epilogue */
    return coalesce(bp);
}

int mm_init(void)
{
    for (int c = 0; c < NLISTS; c++)
        lists[c] = NULL;
    heap_list = mem_sbrk(4 * WSIZE);
    if (heap_list == (void *)-1)
        return -1;
    PUT(heap_list, 0);                             /* padding */
    PUT(heap_list + WSIZE, PACK(DSIZE, 1));        /* prologue header */
    PUT(heap_list + 2 * WSIZE, PACK(DSIZE, 1));    /* prologue footer */
    PUT(heap_list + 3 * WSIZE, PACK(0, 1));        /* epilogue */
    heap_list += 2 * WSIZE;
    return extend_heap(CHUNK) ? 0 : -1;
}

static uint32_t adjusted(size_t size)
{
    uint32_t asize = (uint32_t)((size + DSIZE + DSIZE - 1) & ~(size_t)(DSIZE - 1));
    return asize < MINBLOCK ? MINBLOCK : asize;
}

static char *find_fit(uint32_t asize)
{
    for (int c = class_of(asize); c < NLISTS; c++)
        for (char *bp = lists[c]; bp != NULL; bp = LINK_NEXT(bp))
            if (SIZE(HDRP(bp)) >= asize)
                return bp;
    return NULL;
}

/* bp is allocated with room for asize: give the rest back when it makes a block. */
static void trim(char *bp, uint32_t asize)
{
    uint32_t csize = SIZE(HDRP(bp));
    if (csize - asize < MINBLOCK)
        return;
    set(bp, asize, 1);
    char *rest = NEXT(bp);
    set(rest, csize - asize, 0);
    coalesce(rest);
}

void *mm_malloc(size_t size)
{
    unsigned long flags;
    if (size == 0 || size > 0x7fffffffu - 2 * DSIZE)
        return NULL;
    uint32_t asize = adjusted(size);
    local_irq_save(flags);
    char *bp = find_fit(asize);
    if (bp == NULL)
        bp = extend_heap(asize > CHUNK ? asize : CHUNK);
    if (bp != NULL) {
        unlink_block(bp);
        set(bp, SIZE(HDRP(bp)), 1);
        trim(bp, asize);
    }
    local_irq_restore(flags);
    return bp;
}

void mm_free(void *ptr)
{
    unsigned long flags;
    if (ptr == NULL)
        return;
    local_irq_save(flags);
    set(ptr, SIZE(HDRP(ptr)), 0);
    coalesce(ptr);
    local_irq_restore(flags);
}

/* Grow bp in place to asize: into a free next block, or past the break. 1 when done. */
static int grow(char *bp, uint32_t asize)
{
    uint32_t csize = SIZE(HDRP(bp));
    char *next = NEXT(bp);
    uint32_t nsize = SIZE(HDRP(next));
    if (!ALLOC(HDRP(next)) && csize + nsize >= asize) {
        unlink_block(next);
        set(bp, csize + nsize, 1);
        trim(bp, asize);
        return 1;
    }
    if (nsize == 0 || (!ALLOC(HDRP(next)) && SIZE(HDRP(NEXT(next))) == 0)) {
        uint32_t have = csize + (nsize == 0 ? 0 : nsize);
        uint32_t more = asize - have;
        more = more < CHUNK ? CHUNK : more;
        if (mem_sbrk((int)more) == (void *)-1)
            return 0;
        if (nsize != 0)
            unlink_block(next);
        set(bp, have + more, 1);
        PUT(HDRP(NEXT(bp)), PACK(0, 1));   /* new epilogue */
        trim(bp, asize);
        return 1;
    }
    return 0;
}

void *mm_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return mm_malloc(size);
    if (size == 0) {
        mm_free(ptr);
        return NULL;
    }
    if (size > 0x7fffffffu - 2 * DSIZE)
        return NULL;
    uint32_t asize = adjusted(size);
    unsigned long flags;
    local_irq_save(flags);
    int in_place = asize <= SIZE(HDRP(ptr));
    if (in_place)
        trim(ptr, asize);
    else
        in_place = grow(ptr, asize);
    local_irq_restore(flags);
    if (in_place)
        return ptr;
#ifdef LAB_BUG_REALLOC_LOST
    uint32_t old = SIZE(HDRP(ptr)) - DSIZE;
    mm_free(ptr);                          /* lab example bug: freed first; its list links now fill the payload */
    void *fresh = mm_malloc(size);
    if (fresh == NULL)
        return NULL;
    memmove(fresh, ptr, old);
#else
    void *fresh = mm_malloc(size);
    if (fresh == NULL)
        return NULL;
    memcpy(fresh, ptr, SIZE(HDRP(ptr)) - DSIZE);
    mm_free(ptr);
#endif
    return fresh;
}

void *mm_calloc(size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = mm_malloc(nmemb * size);
    if (p != NULL)
        memset(p, 0, nmemb * size);
    return p;
}

/* Nonzero when the tags agree, no two free blocks touch, every free block is
 * in the list of its class and every listed block is free. */
int mm_check(void)
{
    uint32_t free_blocks = 0, listed = 0;
    int prev_free = 0;
    char *bp = heap_list;
    for (; SIZE(HDRP(bp)) > 0; bp = NEXT(bp)) {
        if (GET(HDRP(bp)) != GET(FTRP(bp)) || ((uintptr_t)bp & (DSIZE - 1)))
            return 0;
        int is_free = !ALLOC(HDRP(bp));
        if (is_free && prev_free)
            return 0;
        free_blocks += (uint32_t)is_free;
        prev_free = is_free;
    }
    if (bp != (char *)mem_heap_hi() + 1)
        return 0;
    for (int c = 0; c < NLISTS; c++)
        for (char *f = lists[c]; f != NULL; f = LINK_NEXT(f)) {
            if (ALLOC(HDRP(f)) || class_of(SIZE(HDRP(f))) != c || ++listed > free_blocks)
                return 0;
        }
    return listed == free_blocks;
}
