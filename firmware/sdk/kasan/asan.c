/*
 * asan.c — the functions GCC's -fsanitize=kernel-address calls, for firmware
 * built with KASAN=1 (linked only then, so an ELF has __asan_load4_noabort
 * exactly when its own code is instrumented: that is how the machine picks
 * compiled checks over its memory hook).
 *
 * Every load and store of the instrumented code calls one of these first
 * (--param asan-instrumentation-with-call-threshold=0: outline calls only).
 * A good access costs the check below and no hypercall; a bad one makes one
 * KH_ASAN_REPORT and returns, so the firmware goes on as Linux's KASAN does
 * (the _noabort flavour). This file itself is not instrumented.
 *
 * At start-up, a constructor that runs before any other asks the machine
 * where the shadow is (KH_KASAN_SHADOW); a machine not running under
 * --sanitize=kasan answers 0 banks and nothing is ever checked.
 */
#include "../hcall.h"
#include "../kasan.h"

__attribute__((constructor(101))) static void kasan_init(void)
{
    struct kh_ret r = KH_CALL2(KH_KASAN_SHADOW, __kalloc_kasan_banks, sizeof __kalloc_kasan_banks);

    __kalloc_kasan_nbanks = r.result <= KH_BOOTINFO_MAX_BANKS ? r.result : 0;
}

#define RET ((uint32_t)(uintptr_t)__builtin_return_address(0) & ~__KALLOC_CODE_BIT())  /* Thumb bit off */

#define ASAN_SIZED(n)                                                           \
    KASAN_API void __asan_load##n##_noabort(unsigned long a)                    \
    {                                                                           \
        if (kasan_bad(a, n))                                                    \
            __kalloc_kasan_report(a, n, 0, RET);                                \
    }                                                                           \
    KASAN_API void __asan_store##n##_noabort(unsigned long a)                   \
    {                                                                           \
        if (kasan_bad(a, n))                                                    \
            __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);                    \
    }                                                                           \
    KASAN_API void __asan_load##n(unsigned long a)                              \
    {                                                                           \
        if (kasan_bad(a, n))                                                    \
            __kalloc_kasan_report(a, n, 0, RET);                                \
    }                                                                           \
    KASAN_API void __asan_store##n(unsigned long a)                             \
    {                                                                           \
        if (kasan_bad(a, n))                                                    \
            __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);                    \
    }                                                                           \
    KASAN_API void __asan_report_load##n##_noabort(unsigned long a)             \
    {                                                                           \
        __kalloc_kasan_report(a, n, 0, RET);                                    \
    }                                                                           \
    KASAN_API void __asan_report_store##n##_noabort(unsigned long a)            \
    {                                                                           \
        __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);                        \
    }

ASAN_SIZED(1)
ASAN_SIZED(2)
ASAN_SIZED(4)
ASAN_SIZED(8)
ASAN_SIZED(16)

KASAN_API void __asan_loadN_noabort(unsigned long a, size_t n)
{
    if (n && kasan_bad(a, n))
        __kalloc_kasan_report(a, n, 0, RET);
}

KASAN_API void __asan_storeN_noabort(unsigned long a, size_t n)
{
    if (n && kasan_bad(a, n))
        __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);
}

KASAN_API void __asan_loadN(unsigned long a, size_t n)
{
    if (n && kasan_bad(a, n))
        __kalloc_kasan_report(a, n, 0, RET);
}

KASAN_API void __asan_storeN(unsigned long a, size_t n)
{
    if (n && kasan_bad(a, n))
        __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);
}

KASAN_API void __asan_report_load_n_noabort(unsigned long a, size_t n)
{
    __kalloc_kasan_report(a, n, 0, RET);
}

KASAN_API void __asan_report_store_n_noabort(unsigned long a, size_t n)
{
    __kalloc_kasan_report(a, n, KH_ASAN_WRITE, RET);
}

/* Stack and globals are not instrumented (--param asan-stack=0, asan-globals=0);
 * these exist so code built with other settings still links. */
void __asan_handle_no_return(void) {}
void __asan_register_globals(void *globals, size_t n) { (void)globals; (void)n; }
void __asan_unregister_globals(void *globals, size_t n) { (void)globals; (void)n; }
void __asan_before_dynamic_init(const char *module) { (void)module; }
void __asan_after_dynamic_init(void) {}
