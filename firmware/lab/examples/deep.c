/*
 * deep.c — a broken allocator for `kalloc lab`'s tests: mm_malloc recurses
 * once per byte requested (a recursion meant to walk a list, with no base
 * case that fits): a large request overflows the stack, and the machine's
 * stack guard stops it (stack-overflow).
 */
#include <stddef.h>
#include <stdint.h>

#include "lab.h"

static volatile size_t depth;

__attribute__((noipa)) static size_t walk(size_t n)
{
    volatile char frame[64];
    frame[0] = (char)n;
    depth++;
    return n == 0 ? frame[0] : walk(n - 1) + 1;
}

int mm_init(void) { return 0; }

void *mm_malloc(size_t size)
{
    size_t s = (walk(size) + 7) & ~(size_t)7;
    char *p = mem_sbrk((int)s);
    return p == (void *)-1 ? NULL : p;
}

void mm_free(void *ptr) { (void)ptr; }

void *mm_realloc(void *ptr, size_t size)
{
    (void)ptr;
    return mm_malloc(size);
}
