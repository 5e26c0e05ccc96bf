/*
 * teach_c_api.c — the C allocation API's traps, one after the other
 * (docs/teaching.md, "The C allocation API and its traps";
 * tests/cli/test_teaching_sessions.py checks what kalloc reports).
 *
 * 1. calloc(n, size) whose n * size overflows: NULL (and an oom warning);
 *    malloc(n * size) with the same n: the product wraps to 16 bytes, and
 *    filling two elements overruns the block (out-of-bounds).
 * 2. p = realloc(p, too_much): NULL, and the only pointer to the block is
 *    gone (a leak).
 * 3. realloc moves a block: a pointer kept into the old one is dangling
 *    (use-after-free).
 * 4. realloc(p, 0), the 2019 WhatsApp double free: with glibc's choice (free
 *    p, return NULL) code that reads NULL as "failed, p is still mine" frees
 *    p again. glibc_realloc() below behaves as glibc does; kalloc's own
 *    realloc(p, 0) returns a zero-size object instead, which must be freed.
 * 5. free(NULL): nothing happens.
 * 6. aligned_alloc: the alignment must be a power of two (else NULL, no
 *    report); the size need not be a multiple of it (C17, DR 460).
 *
 * Every bug is kept alive by noipa helpers and volatile values: GCC would
 * otherwise fold the overflow or delete the stores.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

struct sample {
    uint32_t t, v, a, b;  /* 16 bytes */
};

static volatile size_t n_samples = 0x10000001;  /* n * 16 wraps to 16 */
static volatile size_t too_much = 8u << 20;     /* more than the largest block */
static volatile size_t odd_align = 24;          /* not a power of two */

__attribute__((noipa)) static void fill(struct sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i] = (struct sample){ i, i, i, i };
}

__attribute__((noipa)) static void touch(char *p)
{
    p[0] = 'x';
}

/* glibc's realloc(p, 0): frees p and returns NULL. */
__attribute__((noipa)) static void *glibc_realloc(void *p, size_t size)
{
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

/* The pattern of the 2019 WhatsApp bug: NULL read as "failed, p is still mine". */
__attribute__((noipa)) static void shrink_to_zero(char *p, void *(*re)(void *, size_t))
{
    char *q = re(p, 0);

    if (!q) {
        printf("  realloc(p, 0) returned NULL: the caller frees p\n");
        free(p);
        return;
    }
    printf("  realloc(p, 0) returned a pointer: the caller frees it\n");
    free(q);
}

int main(void)
{
    /* 1. calloc checks n * size; malloc(n * size) cannot. */
    struct sample *s = calloc(n_samples, sizeof(struct sample));
    printf("1. calloc(0x%x, 16) = %p\n", (unsigned)n_samples, (void *)s);
    s = malloc(n_samples * sizeof(struct sample));
    printf("   malloc(0x%x * 16) = %p (%u bytes)\n", (unsigned)n_samples, (void *)s,
           (unsigned)(n_samples * sizeof(struct sample)));
    fill(s, 2);
    free(s);

    /* 2. p = realloc(p, n) loses p when realloc fails. */
    char *buf = malloc(64);
    buf = realloc(buf, too_much);
    printf("2. buf = realloc(buf, 8 MiB) = %p\n", (void *)buf);

    /* 3. a pointer into the block before realloc moved it. */
    char *name = malloc(32);
    char *old = name;
    name = realloc(name, 200);
    printf("3. realloc(name, 200) moved the block: %s\n", name != old ? "yes" : "no");
    touch(old);
    free(name);

    /* 4. realloc(p, 0): glibc's answer, then kalloc's. */
    printf("4. with glibc's realloc:\n");
    shrink_to_zero(malloc(24), glibc_realloc);
    printf("   with kalloc's realloc:\n");
    shrink_to_zero(malloc(24), realloc);

    /* 5. free(NULL) */
    free(NULL);
    printf("5. free(NULL): nothing to do\n");

    /* 6. aligned_alloc */
    void *bad = aligned_alloc(odd_align, 64);
    void *good = aligned_alloc(64, 100);
    printf("6. aligned_alloc(24, 64) = %p; aligned_alloc(64, 100) %% 64 = %u\n", bad,
           (unsigned)((uintptr_t)good % 64));
    free(good);
    return 0;
}
