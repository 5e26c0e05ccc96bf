/*
 * kasan_rt.c — the always-linked half of KASAN support: the shadow table the
 * machine fills, the range check the string functions use, and the report
 * hypercall. Inert (nbanks == 0) unless a KASAN=1 build asked the machine for
 * the shadow (sdk/kasan/asan.c) and the run is under --sanitize=kasan.
 */
#include "hcall.h"
#include "kasan.h"

struct kalloc_kasan_bank __kalloc_kasan_banks[KH_BOOTINFO_MAX_BANKS];
uint32_t __kalloc_kasan_nbanks;

/* Granules 0..last>>3 from s: all but the last must be wholly accessible. */
int __kalloc_kasan_bad_range(const int8_t *s, uint32_t last)
{
    uint32_t g = last >> 3;
    int8_t v;

    for (uint32_t i = 0; i < g; i++)
        if (s[i])
            return 1;
    v = s[g];
    return v != 0 && (int8_t)(last & 7) >= v;
}

/* One hypercall per bad access; the host decides what to say (and says it
 * once per site and object). pc is the return address into the code that
 * made the access. */
KASAN_API void __kalloc_kasan_report(uint32_t addr, uint32_t size, uint32_t flags, uint32_t pc)
{
    KH_CALL4(KH_ASAN_REPORT, addr, size, flags, pc);
}

/* Not among the wrappers: it is shrink-wrapped (no frame on the good path). */
__attribute__((noinline)) void __kalloc_kasan_check_range(uint32_t addr, uint32_t size, uint32_t flags, uint32_t pc)
{
    if (kasan_bad(addr, size))
        __kalloc_kasan_report(addr, size, flags, pc);
}
