/*
 * kasan.h — the SDK's view of the KASAN shadow, private to the SDK.
 *
 * The machine keeps one shadow byte per 8 bytes of every RAM bank current on
 * every allocation and free (kalloc/shadow.py); KH_KASAN_SHADOW tells the
 * firmware where each bank's shadow lives. Until it has answered, and always
 * when the run is not under --sanitize=kasan, nbanks is 0 and nothing is
 * checked. A shadow byte v of an 8-byte granule: 0 all accessible, 1..7 the
 * first v bytes, negative none (Linux's generic KASAN encoding).
 *
 * The checks are in the SDK, built without instrumentation; the firmware
 * built with KASAN=1 calls __asan_load4_noabort() & co. (sdk/kasan/asan.c),
 * and the SDK's string functions (memcpy, strcpy, ...) check themselves,
 * because GCC leaves those as calls into the (uninstrumented) library.
 */
#ifndef KALLOC_SDK_KASAN_H
#define KALLOC_SDK_KASAN_H

#include <stddef.h>
#include <stdint.h>

#include "kalloc.h"

/* The __asan_* entry points and the report live with the hypercall wrappers:
 * the host skips their frames when it looks for the faulting function. */
#define KASAN_API __attribute__((noinline, section(".text.kalloc_api")))

extern struct kalloc_kasan_bank __kalloc_kasan_banks[KH_BOOTINFO_MAX_BANKS];
extern uint32_t __kalloc_kasan_nbanks;

int __kalloc_kasan_bad_range(const int8_t *shadow, uint32_t last);
void __kalloc_kasan_report(uint32_t addr, uint32_t size, uint32_t flags, uint32_t pc);
void __kalloc_kasan_check_range(uint32_t addr, uint32_t size, uint32_t flags, uint32_t pc);

/* Nonzero when [a, a + n) touches a byte the shadow forbids (n >= 1). */
static inline __attribute__((always_inline)) int kasan_bad(uint32_t a, uint32_t n)
{
    const struct kalloc_kasan_bank *b = __kalloc_kasan_banks;

    for (uint32_t i = __kalloc_kasan_nbanks; i; i--, b++) {
        uint32_t off = a - b->base;
        if (off < b->size) {
            const int8_t *s = (const int8_t *)(uintptr_t)b->shadow + (off >> 3);
            uint32_t last;
            if (n > b->size - off)          /* stop at the end of the bank */
                n = b->size - off;
            last = (off & 7) + n - 1;       /* byte offset of the last byte from s's granule */
            if (last < 8) {
                int8_t v = *s;
                return v != 0 && (int8_t)last >= v;
            }
            return __kalloc_kasan_bad_range(s, last);
        }
    }
    return 0;
}

/* For the SDK's string functions: check [p, p + n) on behalf of their caller. */
#define KASAN_CHECK(p, n, write)                                                      \
    do {                                                                              \
        if (__kalloc_kasan_nbanks && (n))                                             \
            __kalloc_kasan_check_range((uint32_t)(uintptr_t)(p), (uint32_t)(n),       \
                                       ((write) ? KH_ASAN_WRITE : 0) | KH_ASAN_RANGE, \
                                       (uint32_t)(uintptr_t)__builtin_return_address(0)); \
    } while (0)

#endif /* KALLOC_SDK_KASAN_H */
