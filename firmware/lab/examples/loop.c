/*
 * loop.c — a broken allocator for `kalloc lab`'s tests: its free list is
 * circular after the first free, so the next mm_malloc that searches it never
 * returns. The lab stops the operation at its instruction budget (timeout)
 * and shows where the CPU was.
 */
#include <stddef.h>
#include <stdint.h>

#include "lab.h"

struct node { struct node *next; size_t size; };
static struct node *free_list;

int mm_init(void) { free_list = NULL; return 0; }

void *mm_malloc(size_t size)
{
    size = (size + 15) & ~(size_t)7;
    for (struct node *n = free_list; n != NULL; n = n->next)
        if (n->size == size + 1)            /* never true: the search walks the cycle forever */
            return n;
    char *p = mem_sbrk((int)size);
    if (p == (void *)-1)
        return NULL;
    *(size_t *)p = size;
    return p + 8;
}

void mm_free(void *ptr)
{
    struct node *n = (struct node *)((char *)ptr - 8);
    n->next = n;                            /* lab example bug: points at itself */
    free_list = n;
}

void *mm_realloc(void *ptr, size_t size)
{
    (void)ptr;
    return mm_malloc(size);
}
