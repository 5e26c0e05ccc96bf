/*
 * nofail.c — a __GFP_NOFAIL request that memory cannot satisfy: kalloc reports
 * an oom *error* (failure was not allowed) and ends the run.
 *
 * A request bigger than any buddy block would be refused as impossible (an
 * oom warning, as Linux's WARN for a NOFAIL order it cannot serve). So first
 * the program takes every page it can, quietly: GFP_KERNEL|__GFP_NOWARN down
 * to the min watermark, then GFP_ATOMIC|__GFP_NOWARN through the reserve that
 * __GFP_HIGH may use. Then it asks for 4 pages with __GFP_NOFAIL.
 */
#include <stdio.h>

#include "kalloc.h"

#define MAX_ORDER_TRIED 10

struct chunk {
    struct chunk *next;
    unsigned int order;
};

static struct chunk *take_all(struct chunk *list, gfp_t gfp, unsigned long *pages)
{
    struct chunk *c;

    for (int order = MAX_ORDER_TRIED; order >= 0; order--)
        while ((c = alloc_pages(gfp | __GFP_NOWARN, order)) != NULL) {
            c->next = list;
            c->order = order;
            list = c;
            *pages += 1ul << order;
        }
    return list;
}

int main(void)
{
    unsigned long pages = 0;
    struct chunk *list = take_all(NULL, GFP_KERNEL, &pages);

    list = take_all(list, GFP_ATOMIC, &pages);
    printf("took %lu pages; now 4 more with __GFP_NOFAIL\n", pages);

    void *p = alloc_pages(GFP_KERNEL | __GFP_NOFAIL, 2);

    printf("nofail returned %s\n", p ? "memory" : "NULL");
    if (p)
        free_pages(p, 2);
    while (list) {
        struct chunk *next = list->next;

        free_pages(list, list->order);
        list = next;
    }
    return 0;
}
