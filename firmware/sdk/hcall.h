/*
 * hcall.h — the hypercall stub, private to the SDK.
 *
 * A call builds one argument block on the calling wrapper's stack and stores
 * its address to doorbell N; the machine's MMIO callback runs service N
 * during that store and writes result/aux back into the block. No register
 * is read by the host, and an interrupt handler that calls the allocator in
 * the middle of a stub simply uses its own block on its own part of the stack.
 *
 * Wrappers (kmalloc(), malloc(), ...) are KH_API functions: never inlined, so
 * the block's ra/fp name the wrapper's caller, and placed in the section
 * .text.kalloc_api, which the linker script brackets with __kalloc_api_start /
 * __kalloc_api_end so the host can skip wrapper frames when it looks for the
 * allocation site. Each wrapper calls the stub directly (never another
 * wrapper), so block.ra is already the site in the normal case.
 */
#ifndef KALLOC_SDK_HCALL_H
#define KALLOC_SDK_HCALL_H

#include <stddef.h>
#include <stdint.h>

#include "kalloc.h"

#define KH_API __attribute__((noinline, section(".text.kalloc_api")))

/* The block, field by field (emulator/abi.py). */
struct kh_block {
    uint32_t result;            /* out: the service's return value */
    uint32_t aux;               /* out: second result */
    uint32_t ra;                /* in: the wrapper's return address */
    uint32_t fp;                /* in: the wrapper's frame pointer */
    uint32_t ctx;               /* in: mstatus.MIE | depth << 8 */
    uint32_t arg[KH_MAX_ARGS];  /* in: the service's arguments */
    uint32_t pad;               /* rounds the block to 48 bytes */
};

_Static_assert(sizeof(struct kh_block) == KH_BLOCK_SIZE, "block size");
_Static_assert(offsetof(struct kh_block, result) == KH_BLOCK_OFF_RESULT, "result offset");
_Static_assert(offsetof(struct kh_block, aux) == KH_BLOCK_OFF_AUX, "aux offset");
_Static_assert(offsetof(struct kh_block, ra) == KH_BLOCK_OFF_RA, "ra offset");
_Static_assert(offsetof(struct kh_block, fp) == KH_BLOCK_OFF_FP, "fp offset");
_Static_assert(offsetof(struct kh_block, ctx) == KH_BLOCK_OFF_CTX, "ctx offset");
_Static_assert(offsetof(struct kh_block, arg) == KH_BLOCK_OFF_ARGS, "args offset");

struct kh_ret {
    uint32_t result;
    uint32_t aux;
};

/* The calling context as the allocator must judge it: task or interrupt,
 * interrupts on or off. */
static inline __attribute__((always_inline)) uint32_t kh_ctx(void)
{
    uint32_t mstatus;
    __KALLOC_READ_MIE(mstatus);  /* RV32: csrr mstatus; Cortex-M: kalloc.h's end */
    /* (the RV32 build's line numbers stay where they were) */
    return ((kalloc_irq_depth & KH_CTX_DEPTH_MASK) << KH_CTX_DEPTH_SHIFT)
         | ((mstatus & KALLOC_MSTATUS_MIE) ? KH_CTX_MIE : 0);
}

/*
 * One round trip. `n` and `nargs` are constants after inlining, so the
 * doorbell is a single `sw` at a fixed offset and unused argument slots are
 * never written (they are don't-care). result/aux start at 0 so a call the
 * bridge rejects reads as "failed", never as stack garbage.
 */
static inline __attribute__((always_inline)) struct kh_ret
kh_call(uint32_t n, void *ra, void *fp, int nargs,
        uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t a4)
{
    struct kh_block b;

    b.result = 0;
    b.aux = 0;
    b.ra = (uint32_t)(uintptr_t)ra;
    b.fp = (uint32_t)(uintptr_t)fp;
    b.ctx = kh_ctx();
    if (nargs > 0) b.arg[0] = a0;
    if (nargs > 1) b.arg[1] = a1;
    if (nargs > 2) b.arg[2] = a2;
    if (nargs > 3) b.arg[3] = a3;
    if (nargs > 4) b.arg[4] = a4;
    /* The block must be in memory before the store that hands it over, and
     * result/aux must be re-read after it: the host writes them. */
    __asm__ volatile("" : : : "memory");
    *(volatile uint32_t *)(uintptr_t)(KALLOC_DOORBELL_BASE + 4u * n) = (uint32_t)(uintptr_t)&b;
    __asm__ volatile("" : : : "memory");
    return (struct kh_ret){ b.result, b.aux };
}

/* ra/fp are taken in the wrapper that expands the macro. */
#define KH_A(x) ((uint32_t)(uintptr_t)(x))
#define KH_SITE __KALLOC_SITE()  /* RV32: ra, fp; Cortex-M: ra without the Thumb bit, 0 */
#define KH_CALL0(n) kh_call((n), KH_SITE, 0, 0, 0, 0, 0, 0)
#define KH_CALL1(n, a) kh_call((n), KH_SITE, 1, KH_A(a), 0, 0, 0, 0)
#define KH_CALL2(n, a, b) kh_call((n), KH_SITE, 2, KH_A(a), KH_A(b), 0, 0, 0)
#define KH_CALL3(n, a, b, c) kh_call((n), KH_SITE, 3, KH_A(a), KH_A(b), KH_A(c), 0, 0)
#define KH_CALL4(n, a, b, c, d) kh_call((n), KH_SITE, 4, KH_A(a), KH_A(b), KH_A(c), KH_A(d), 0)
#define KH_CALL5(n, a, b, c, d, e) \
    kh_call((n), KH_SITE, 5, KH_A(a), KH_A(b), KH_A(c), KH_A(d), KH_A(e))

#endif /* KALLOC_SDK_HCALL_H */
