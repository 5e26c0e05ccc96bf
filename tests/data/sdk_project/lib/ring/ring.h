/* A ring buffer of ints on the heap: the project's own static library (libring.a). */
#ifndef RING_H
#define RING_H

struct ring;

struct ring *ring_new(unsigned capacity);
int ring_push(struct ring *r, int v);
int ring_sum(const struct ring *r);
void ring_free(struct ring *r);

#endif
