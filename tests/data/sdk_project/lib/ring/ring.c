#include "ring.h"

#include <stdlib.h>

struct ring {
    unsigned capacity, head, count;
    int *items;
};

struct ring *ring_new(unsigned capacity)
{
    struct ring *r = malloc(sizeof(*r));
    if (!r)
        return NULL;
    r->items = calloc(capacity, sizeof(int));
    if (!r->items) {
        free(r);
        return NULL;
    }
    r->capacity = capacity;
    r->head = r->count = 0;
    return r;
}

int ring_push(struct ring *r, int v)
{
    r->items[r->head] = v;
    r->head = (r->head + 1) % r->capacity;
    if (r->count < r->capacity)
        r->count++;
    return 0;
}

int ring_sum(const struct ring *r)
{
    int s = 0;
    for (unsigned i = 0; i < r->count; i++)
        s += r->items[i];
    return s;
}

void ring_free(struct ring *r)
{
    free(r->items);
    free(r);
}
