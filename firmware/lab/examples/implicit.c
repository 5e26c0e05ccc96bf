/*
 * implicit.c — the textbook baseline of `kalloc lab` (CS:APP 9.9.12): an
 * implicit free list, first fit, boundary tags, immediate coalescing.
 *
 * Every block is a 4-byte header and a 4-byte footer around its payload,
 * both holding size | allocated; blocks are multiples of 8 bytes and
 * payloads 8-byte aligned. A prologue (an allocated 8-byte block) and an
 * epilogue (an allocated 0-size header) bracket the list, so coalescing
 * never tests for the heap's ends. Correct, simple and slow: mm_malloc walks
 * every block. docs/teaching.md, "Lab: write your own allocator".
 *
 * Interrupt-safe: mm_malloc and mm_free run their heap updates under
 * local_irq_save, so `kalloc lab --irq` (a timer handler that allocates and
 * frees while the trace runs) finds the heap consistent at every tick.
 *
 * The buggy examples (overlap.c, misaligned.c, realloc_lost.c, overrun.c,
 * prev_header.c, irq_race.c, realloc_overread.c) include this file with one
 * LAB_BUG_* macro defined: each bug is a small change marked "lab example
 * bug" below, and the lab must catch each one.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <kalloc.h> /* local_irq_save / local_irq_restore */

#include "lab.h"

#ifdef LAB_BUG_IRQ_RACE
#define IRQ_SAVE(flags) ((flags) = 0)              /* lab example bug: interrupts stay on */
#define IRQ_RESTORE(flags) ((void)(flags))
#else
#define IRQ_SAVE(flags) local_irq_save(flags)
#define IRQ_RESTORE(flags) local_irq_restore(flags)
#endif

#define WSIZE 4
#define DSIZE 8
#define CHUNK 4096

#define PACK(size, alloc) ((size) | (alloc))
#define GET(p) (*(uint32_t *)(p))
#define PUT(p, v) (*(uint32_t *)(p) = (uint32_t)(v))
#define SIZE(p) (GET(p) & ~0x7u)
#define ALLOC(p) (GET(p) & 0x1u)
#define HDRP(bp) ((char *)(bp) - WSIZE)
#define FTRP(bp) ((char *)(bp) + SIZE(HDRP(bp)) - DSIZE)
#define NEXT(bp) ((char *)(bp) + SIZE(HDRP(bp)))
#define PREV(bp) ((char *)(bp) - SIZE((char *)(bp) - DSIZE))

static char *heap_list;

static void *coalesce(char *bp)
{
    uint32_t prev_alloc = ALLOC(FTRP(PREV(bp)));
    uint32_t next_alloc = ALLOC(HDRP(NEXT(bp)));
    uint32_t size = SIZE(HDRP(bp));

    if (!next_alloc) {
        size += SIZE(HDRP(NEXT(bp)));
        PUT(HDRP(bp), PACK(size, 0));
        PUT(FTRP(bp), PACK(size, 0));
    }
    if (!prev_alloc) {
        size += SIZE(HDRP(PREV(bp)));
        PUT(FTRP(bp), PACK(size, 0));
        PUT(HDRP(PREV(bp)), PACK(size, 0));
        bp = PREV(bp);
    }
    return bp;
}

static void *extend_heap(uint32_t bytes)
{
    uint32_t size = (bytes + DSIZE - 1) & ~(uint32_t)(DSIZE - 1);
    char *bp = mem_sbrk((int)size);
    if (bp == (void *)-1)
        return NULL;
    PUT(HDRP(bp), PACK(size, 0));          /* the old epilogue becomes the header */
    PUT(FTRP(bp), PACK(size, 0));
    PUT(HDRP(NEXT(bp)), PACK(0, 1));       /* new epilogue */
    return coalesce(bp);
}

int mm_init(void)
{
#ifdef LAB_BUG_MISALIGNED
    heap_list = mem_sbrk(3 * WSIZE);               /* lab example bug: no padding word */
#else
    heap_list = mem_sbrk(4 * WSIZE);
    if (heap_list == (void *)-1)
        return -1;
    PUT(heap_list, 0);                             /* padding */
    heap_list += WSIZE;
#endif
    PUT(heap_list, PACK(DSIZE, 1));                /* prologue header */
    PUT(heap_list + WSIZE, PACK(DSIZE, 1));        /* prologue footer */
    PUT(heap_list + 2 * WSIZE, PACK(0, 1));        /* epilogue */
    heap_list += WSIZE;
    return extend_heap(CHUNK) ? 0 : -1;
}

static uint32_t adjusted(size_t size)
{
    if (size <= DSIZE)
        return 2 * DSIZE;
#ifdef LAB_BUG_OVERRUN
    return (uint32_t)((size + DSIZE - 1) & ~(size_t)(DSIZE - 1));  /* lab example bug: no room for the tags */
#endif
    return (uint32_t)((size + DSIZE + DSIZE - 1) & ~(size_t)(DSIZE - 1));
}

static void *find_fit(uint32_t asize)
{
    for (char *bp = heap_list; SIZE(HDRP(bp)) > 0; bp = NEXT(bp))
        if (!ALLOC(HDRP(bp)) && asize <= SIZE(HDRP(bp)))
            return bp;
    return NULL;
}

static void place(char *bp, uint32_t asize)
{
    uint32_t csize = SIZE(HDRP(bp));
    if (csize - asize >= 2 * DSIZE) {
        PUT(HDRP(bp), PACK(asize, 1));
        PUT(FTRP(bp), PACK(asize, 1));
        bp = NEXT(bp);
        PUT(HDRP(bp), PACK(csize - asize, 0));
        PUT(FTRP(bp), PACK(csize - asize, 0));
    } else {
#ifdef LAB_BUG_PREV_HEADER
        PUT(HDRP(bp) - DSIZE, PACK(csize, 1));     /* lab example bug: the header a double word low */
#endif
#ifdef LAB_BUG_OVERLAP
        PUT(HDRP(bp), PACK(csize, 0));             /* lab example bug: never marked allocated */
        PUT(FTRP(bp), PACK(csize, 0));
#else
        PUT(HDRP(bp), PACK(csize, 1));
        PUT(FTRP(bp), PACK(csize, 1));
#endif
    }
}

void *mm_malloc(size_t size)
{
    unsigned long flags;
    if (size == 0 || size > 0x7fffffffu - 2 * DSIZE)
        return NULL;
    uint32_t asize = adjusted(size);
    IRQ_SAVE(flags);
    char *bp = find_fit(asize);
    if (bp == NULL)
        bp = extend_heap(asize > CHUNK ? asize : CHUNK);
    if (bp != NULL)
        place(bp, asize);
    IRQ_RESTORE(flags);
    return bp;
}

void mm_free(void *ptr)
{
    unsigned long flags;
    if (ptr == NULL)
        return;
    IRQ_SAVE(flags);
    uint32_t size = SIZE(HDRP(ptr));
    PUT(HDRP(ptr), PACK(size, 0));
    PUT(FTRP(ptr), PACK(size, 0));
    coalesce(ptr);
    IRQ_RESTORE(flags);
}

void *mm_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return mm_malloc(size);
    if (size == 0) {
        mm_free(ptr);
        return NULL;
    }
    size_t old = SIZE(HDRP(ptr)) - DSIZE;
#ifdef LAB_BUG_REALLOC_LOST
    mm_free(ptr);                                  /* lab example bug: freed before the copy */
    void *fresh = mm_malloc(size);
    if (fresh == NULL)
        return NULL;
    memmove(fresh, ptr, old < size ? old : size);
#else
    char *fresh = mm_malloc(size);
    if (fresh == NULL)
        return NULL;
#ifdef LAB_BUG_REALLOC_OVERREAD
    for (size_t i = 0; i < size; i++)              /* lab example bug: copies the new size */
        ((volatile char *)fresh)[i] = ((volatile char *)ptr)[i];
#else
    memcpy(fresh, ptr, old < size ? old : size);
#endif
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

/* Nonzero when every block's header matches its footer, no two free blocks
 * are adjacent and the list ends at the break. */
int mm_check(void)
{
    char *bp = heap_list;
    int prev_free = 0;
    for (; SIZE(HDRP(bp)) > 0; bp = NEXT(bp)) {
        if (GET(HDRP(bp)) != GET(FTRP(bp)) || ((uintptr_t)bp & (DSIZE - 1)))
            return 0;
        if (!ALLOC(HDRP(bp)) && prev_free)
            return 0;
        prev_free = !ALLOC(HDRP(bp));
    }
    return bp == (char *)mem_heap_hi() + 1;
}
