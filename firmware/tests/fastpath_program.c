/*
 * fastpath_program.c — runs an allocation program the test pokes into `program`
 * (tests/machine/test_fastpath_proof.py drives it with Hypothesis, once with the
 * fast path and once without, and compares the reports).
 *
 * One word per operation: op | slot << 8 | size << 16 (op 0 ends). Frees leave
 * the slot's pointer in place, so a later free of it is a double free; an
 * allocation into a full slot loses the old pointer (a leak). Each operation
 * has its own call site, so the reports name distinct sites.
 */
#include <stdint.h>
#include <stdlib.h>

#include <kalloc.h>

#define SLOTS 16
#define MAX_OPS 256

/* In .data, not .bss: crt0 would clear what the test poked. */
__attribute__((section(".data"), used)) volatile uint32_t program[MAX_OPS] = { 0 };

static void *slot[SLOTS];

__attribute__((noinline)) static void *op_malloc(uint32_t n) { return malloc(n); }
__attribute__((noinline)) static void *op_kmalloc(uint32_t n) { return kmalloc(n, GFP_KERNEL); }
__attribute__((noinline)) static void *op_atomic(uint32_t n) { return kmalloc(n, GFP_ATOMIC); }
__attribute__((noinline)) static void *op_kzalloc(uint32_t n) { return kzalloc(n, GFP_KERNEL); }
__attribute__((noinline)) static void op_free(void *p) { free(p); }
__attribute__((noinline)) static void op_kfree(void *p) { kfree(p); }

int main(void)
{
    for (uint32_t i = 0; i < MAX_OPS && program[i]; i++) {
        uint32_t w = program[i], op = w & 0xff, j = (w >> 8) % SLOTS, n = w >> 16;
        unsigned char *p;

        switch (op) {
        case 1: slot[j] = op_malloc(n); break;
        case 2: op_free(slot[j]); break;
        case 3: slot[j] = op_kmalloc(n); break;
        case 4: op_kfree(slot[j]); break;
        case 5: slot[j] = op_kzalloc(n); break;
        case 6: slot[j] = realloc(slot[j], n); break;
        case 7: op_free((char *)slot[j] + 8); break;  /* an interior pointer */
        case 8: slot[j] = 0; break;                   /* the pointer lost */
        case 9: slot[j] = op_atomic(n); break;
        case 10:                                      /* a use of the object */
            p = slot[j];
            if (p && n)
                p[0] = (unsigned char)i;
            break;
        default: break;
        }
    }
    return 0;
}
