/*
 * teach_errors.c — the common heap errors, one function each, for running
 * three ways (docs/teaching.md, "Common errors, seen three ways";
 * tests/cli/test_teaching_sessions.py):
 *
 *   kalloc run teach_errors.elf                        poison mode
 *   kalloc run kasan_teach_errors.elf --sanitize kasan compiled KASAN (KASAN=1 build)
 *   kalloc run teach_errors.elf --sanitize kasan       KASAN hook mode
 *
 * The bugs: an off-by-one loop that writes one byte past a 100-byte block,
 * a read one byte past it, a read and a write after free, a memset one word
 * too long (the SDK's memset is not instrumented), and a store from
 * assembly (no compiler instruments it). Before them, work() allocates,
 * fills and sums buffers: the cost of each mode on ordinary code.
 * noipa and volatile keep every bug in the binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"

#define N 100

static volatile unsigned int sink;

__attribute__((noipa)) static unsigned int work(void)
{
    unsigned int sum = 0;

    for (int round = 0; round < 64; round++) {
        unsigned char *p = malloc(256);

        if (!p)
            return 0;
        for (int i = 0; i < 256; i++)
            p[i] = (unsigned char)(i + round);
        for (int i = 0; i < 256; i++)
            sum += p[i];
        free(p);
    }
    return sum;
}

__attribute__((noipa)) static void off_by_one(char *p, size_t n)
{
    for (size_t i = 0; i <= n; i++)  /* the bug: <= */
        p[i] = 'a';
}

__attribute__((noipa)) static char read_past(const char *p, size_t n)
{
    return p[n];
}

__attribute__((noipa)) static char read_after_free(const char *p)
{
    return p[8];
}

__attribute__((noipa)) static void write_after_free(char *p)
{
    p[8] = 'w';
}

__attribute__((noipa)) static void clear(char *p, size_t n)
{
    memset(p, 0, n + 4);  /* the bug: + 4 */
}

__attribute__((noipa)) static void asm_store(char *p, size_t n)
{
    __asm__ volatile("sb zero, 0(%0)" : : "r"(p + n) : "memory");
}

int main(void)
{
    sink = work();

    char *a = malloc(N);
    off_by_one(a, N);
    free(a);

    char *b = malloc(N);
    sink = read_past(b, N);
    free(b);

    char *c = malloc(N);
    free(c);
    sink = read_after_free(c);

    char *d = malloc(N);
    free(d);
    write_after_free(d);

    char *e = malloc(N);
    clear(e, N);
    free(e);

    char *f = malloc(N);
    asm_store(f, N);
    free(f);

    printf("teach_errors: done\n");
    return 0;
}
