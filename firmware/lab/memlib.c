/*
 * memlib.c — the heap of `kalloc lab`: mem_sbrk over a region of pages from
 * kalloc's page allocator (lab.h).
 *
 * lab_heap_reserve() takes the whole region (lab_heap_max bytes, rounded up
 * to pages) with alloc_pages_exact before mm_init runs (the lab calls it
 * first, then lab_init, so its detectors see mm_init); the break starts at
 * its first byte and only grows. The lab (kalloc_machine/tools/lab.py) reads
 * lab_heap_lo and lab_heap_brk after every operation and checks them itself:
 * they are the student's to corrupt, and the lab does not trust them.
 */
#include <stdint.h>

#include <kalloc.h>

#include "lab.h"

uint32_t lab_heap_max = 4u << 20;  /* written by the lab before lab_init */
char *lab_heap_lo;                 /* first byte of the region */
char *lab_heap_brk;                /* the break: one past the last heap byte */

int lab_heap_reserve(void)
{
    uint32_t size = (lab_heap_max + PAGE_SIZE - 1) & ~(uint32_t)(PAGE_SIZE - 1);
    if (size == 0)
        return -1;
    lab_heap_max = size;
    lab_heap_lo = alloc_pages_exact(size, GFP_KERNEL | __GFP_NOWARN);
    lab_heap_brk = lab_heap_lo;
    return lab_heap_lo ? 0 : -1;
}

void *mem_sbrk(int incr)
{
    char *old = lab_heap_brk;
    if (incr < 0 || (uint32_t)incr > lab_heap_max - (uint32_t)(lab_heap_brk - lab_heap_lo))
        return (void *)-1;
    lab_heap_brk += incr;
    return old;
}

void *mem_heap_lo(void) { return lab_heap_lo; }
void *mem_heap_hi(void) { return lab_heap_brk - 1; }
size_t mem_heapsize(void) { return (size_t)(lab_heap_brk - lab_heap_lo); }
size_t mem_pagesize(void) { return PAGE_SIZE; }
