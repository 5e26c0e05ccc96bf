/* churn.c — the allocation-heavy workload of `kalloc bench` (issue 14).
 *
 * 512 slots, first all filled; then `churn_iters` iterations of: pick a slot
 * (xorshift32, fixed seed), free its block, malloc a new one of 1..2000 bytes
 * and write its first and last byte; at the end every slot is freed. Only
 * malloc and free are called, so the same object is linked three ways
 * (firmware/Makefile, "bench"): with the SDK (kalloc serves malloc through a
 * hypercall), with bench/tlsf.c (an O(1) TLSF allocator inside the firmware)
 * and with picolibc's own nano-malloc (bench/picolibc_heap.c gives it sbrk).
 * The bench pokes `churn_iters` into RAM and times two counts (tools/benchchurn.py).
 *
 * Exit status: 0 done, 1 a malloc returned NULL.
 */
#include <stdint.h>
#include <stdlib.h>

#ifndef SLOTS /* the Makefile's Cortex-M build sets a smaller workload (a power of two) */
#define SLOTS 512
#endif
#ifndef MAX_SIZE
#define MAX_SIZE 2000
#endif

volatile uint32_t churn_iters = 1000;

static unsigned char *slot[SLOTS];
static uint32_t rng_state;

static uint32_t rng(void)
{
    uint32_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

/* A new block of 1..MAX_SIZE bytes in slot j, its first and last byte written. */
static int refill(uint32_t j, uint32_t tag)
{
    uint32_t size = 1 + rng() % MAX_SIZE;
    unsigned char *p = malloc(size);

    if (!p)
        return 1;
    p[0] = (unsigned char)tag;
    p[size - 1] = (unsigned char)tag;
    slot[j] = p;
    return 0;
}

int main(void)
{
    uint32_t n = churn_iters;

    rng_state = 2463534242u;
    for (uint32_t j = 0; j < SLOTS; j++)
        if (refill(j, j))
            return 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = rng() & (SLOTS - 1);

        free(slot[j]);
        if (refill(j, i))
            return 1;
    }
    for (uint32_t j = 0; j < SLOTS; j++)
        free(slot[j]);
    return 0;
}
