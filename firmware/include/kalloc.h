/*
 * kalloc.h — the whole firmware-side API of the kalloc machine: hypercall
 * numbers, GFP flags, the memory map, the allocator entry points (pages,
 * slab caches, kmalloc, the DMA API), interrupts, the timer, the DMA engine
 * and the UART.
 *
 * The numbers here repeat three Python modules, which are the sources of
 * truth: emulator/abi.py (services, argument block, ecalls, bootinfo),
 * emulator/memlayout.py (address map) and kalloc/gfp.py (GFP bits).
 * tests/test_abi_header.py parses this file and checks every number against
 * them, so keep each constant a plain `#define NAME value` on one line.
 * docs/abi.md explains the ABI for a reader.
 *
 * Device *bases* are fixed by memlayout today, but firmware should take them
 * from `kalloc_bootinfo` (filled at boot by KH_BOOTINFO), so a board that
 * moves a device needs no rebuild. Only the doorbell base is fixed for good:
 * it is how bootinfo is fetched in the first place.
 */
#ifndef KALLOC_H
#define KALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* ABI version and transport (emulator/abi.py)                        */
/* ------------------------------------------------------------------ */

/* Bumped on any incompatible change; the SDK panics at boot on a mismatch. */
#define KALLOC_ABI_VERSION 1

/* The argument block the stub builds on its stack (all u32, little endian). */
#define KH_BLOCK_SIZE 48        /* 44 bytes of fields, keeps sp 16-byte aligned */
#define KH_BLOCK_OFF_RESULT 0   /* out: the service's return value */
#define KH_BLOCK_OFF_AUX 4      /* out: second result (DMA address, "run ctor") */
#define KH_BLOCK_OFF_RA 8       /* in: the wrapper's return address (call site) */
#define KH_BLOCK_OFF_FP 12      /* in: the wrapper's s0; [fp-4]=ra, [fp-8]=caller fp */
#define KH_BLOCK_OFF_CTX 16     /* in: KH_CTX_* bits */
#define KH_BLOCK_OFF_ARGS 20    /* in: a0..a5 */
#define KH_MAX_ARGS 6

#define KH_CTX_MIE 0x1          /* mstatus.MIE was set at the call */
#define KH_CTX_DEPTH_SHIFT 8    /* interrupt nesting depth, 0 = task context */
#define KH_CTX_DEPTH_MASK 0xff

/* Rare events use ecall: a7 = number, a0 = argument. */
#define KH_ECALL_EXIT 93        /* a0 = exit code */
#define KH_ECALL_PANIC 94       /* a0 = NUL-terminated message */

/* Service N is called by storing the block address to DOORBELL_BASE + 4*N. */
/* BEGIN SERVICES (tests/test_abi_header.py reads this region) */
#define KH_NOP 0
#define KH_BOOTINFO 1
#define KH_CONSOLE_WRITE 2
#define KH_STATS_DUMP 3
#define KH_NOT_LEAK 4
#define KH_MARK 5
#define KH_NR_FREE_PAGES 6
#define KH_TAG_PUSH 7
#define KH_TAG_POP 8
#define KH_ALLOC_PAGES 16
#define KH_FREE_PAGES 17
#define KH_ALLOC_PAGES_EXACT 18
#define KH_FREE_PAGES_EXACT 19
#define KH_CACHE_CREATE 24
#define KH_CACHE_ALLOC 25
#define KH_CACHE_FREE 26
#define KH_CACHE_SHRINK 27
#define KH_CACHE_DESTROY 28
#define KH_KMALLOC 32
#define KH_KFREE 33
#define KH_KSIZE 34
#define KH_KREALLOC 35
#define KH_KCALLOC 36
#define KH_MALLOC 40
#define KH_FREE 41
#define KH_CALLOC 42
#define KH_REALLOC 43
#define KH_ALIGNED_ALLOC 44
#define KH_MALLOC_USABLE_SIZE 45
#define KH_DMA_ALLOC_COHERENT 48
#define KH_DMA_FREE_COHERENT 49
#define KH_DMA_POOL_CREATE 50
#define KH_DMA_POOL_ALLOC 51
#define KH_DMA_POOL_FREE 52
#define KH_DMA_POOL_DESTROY 53
#define KH_VMALLOC 56
#define KH_VFREE 57
#define KH_VMAP 58
#define KH_VUNMAP 59
#define KH_ASAN_REPORT 64
#define KH_KASAN_SHADOW 65
/* END SERVICES */

/* kalloc_stats_dump() selectors */
#define KH_STATS_BUDDYINFO 0x1
#define KH_STATS_SLABINFO 0x2
#define KH_STATS_ZONEINFO 0x4
#define KH_STATS_ALL 0x7

/* ------------------------------------------------------------------ */
/* Boot information (KH_BOOTINFO), fields in abi.py BOOTINFO_FIELDS order */
/* ------------------------------------------------------------------ */

#define KH_BOOTINFO_MAGIC 0x424c414b   /* "KALB" little endian */
#define KH_BOOTINFO_MAX_BANKS 4
#define KH_BOOTINFO_SIZE 96
#define KH_BANK_DMA 0x1                /* bank flag: every DMA master reaches it */

struct kalloc_bank {
    uint32_t base;
    uint32_t size;
    uint32_t flags;            /* KH_BANK_* */
};

struct kalloc_bootinfo {
    uint32_t magic;            /* KH_BOOTINFO_MAGIC */
    uint32_t abi_version;      /* KALLOC_ABI_VERSION of the machine */
    uint32_t ram_base;
    uint32_t ram_end;          /* one past the highest RAM byte */
    uint32_t uart_base;
    uint32_t clint_base;
    uint32_t intc_base;
    uint32_t dma_base;
    uint32_t dma_irq;          /* INTC line of the DMA engine's completion */
    uint32_t timer_irq;        /* line of the timer (0 = the CLINT, mcause 7) */
    uint32_t test_irq;         /* a line tests can raise from the host */
    uint32_t nbanks;
    struct kalloc_bank bank[KH_BOOTINFO_MAX_BANKS];
};

/* Filled once by the SDK before main(); read-only for the firmware. */
extern struct kalloc_bootinfo kalloc_bootinfo;

/* KASAN shadow (KH_KASAN_SHADOW): for each RAM bank, the shadow byte of
 * address a is ((int8_t *)shadow)[(a - base) >> 3] (docs/abi.md). */
#define KH_ASAN_WRITE 0x1              /* KH_ASAN_REPORT flags: a store */
#define KH_ASAN_RANGE 0x2              /* found by a range-checked string function */
#define KH_KASAN_BANK_SIZE 12

struct kalloc_kasan_bank {
    uint32_t base;             /* first byte of the bank */
    uint32_t size;             /* bytes in the bank */
    uint32_t shadow;           /* address of the bank's shadow: size / 8 bytes */
};

/* Sum of the RAM bank sizes: what phases of a workload scale by. */
uint32_t kalloc_ram_total(void);

/* ------------------------------------------------------------------ */
/* Memory map (emulator/memlayout.py) and device registers             */
/* ------------------------------------------------------------------ */

#define KALLOC_PAGE_SHIFT 12
#define KALLOC_PAGE_SIZE 0x1000
#define KALLOC_RAM_BASE 0x80000000
#define KALLOC_FIRMWARE_LOAD 0x80000000
#define KALLOC_CLINT_BASE 0x02000000
#define KALLOC_CLINT_SIZE 0x10000
#define KALLOC_INTC_BASE 0x0c000000
#define KALLOC_INTC_SIZE 0x1000
#define KALLOC_UART_BASE 0x10000000
#define KALLOC_UART_SIZE 0x1000
#define KALLOC_DMA_BASE 0x10001000
#define KALLOC_DMA_SIZE 0x1000
#define KALLOC_DOORBELL_BASE 0x11000000
#define KALLOC_DOORBELL_SIZE 0x1000
#define KALLOC_VMALLOC_START 0xc0000000
#define KALLOC_VMALLOC_END 0xf0000000

#ifndef PAGE_SIZE
#define PAGE_SIZE KALLOC_PAGE_SIZE
#endif
#ifndef PAGE_SHIFT
#define PAGE_SHIFT KALLOC_PAGE_SHIFT
#endif

/* UART: byte stores to TX print; always ready on this machine. */
#define KALLOC_UART_TX 0x0
#define KALLOC_UART_STATUS 0x4

/* CLINT: 64-bit registers; time = executed instructions. */
#define KALLOC_CLINT_MTIMECMP 0x4000
#define KALLOC_CLINT_MTIME 0xbff8

/* INTC: lines 1..31. Claim returns the pending line (0 = none) and a
 * write of the same number completes it. */
#define KALLOC_INTC_PENDING 0x0
#define KALLOC_INTC_ENABLE 0x4
#define KALLOC_INTC_CLAIM 0x8

/* DMA engine: one transfer at a time; interrupt on dma_irq when it ends. */
#define KALLOC_DMA_SRC 0x0
#define KALLOC_DMA_DST 0x4
#define KALLOC_DMA_LEN 0x8
#define KALLOC_DMA_CTRL 0xc
#define KALLOC_DMA_STATUS 0x10
#define KALLOC_DMA_BUF 0x800        /* device buffer window, DMA address = CPU address */
#define KALLOC_DMA_BUF_SIZE 0x800
#define KALLOC_DMA_CTRL_START 0x1
#define KALLOC_DMA_IDLE 0
#define KALLOC_DMA_BUSY 1
#define KALLOC_DMA_DONE 2
#define KALLOC_DMA_ERROR 3

/* ------------------------------------------------------------------ */
/* GFP flags (kalloc/gfp.py; Linux's bit values)                        */
/* ------------------------------------------------------------------ */

typedef unsigned gfp_t;

#define __GFP_DMA 0x1u
#define __GFP_HIGH 0x20u              /* may dip into part of the reserve */
#define __GFP_IO 0x40u
#define __GFP_FS 0x80u
#define __GFP_ZERO 0x100u
#define __GFP_DIRECT_RECLAIM 0x400u   /* may sleep: never in IRQ or irqs-off */
#define __GFP_KSWAPD_RECLAIM 0x800u
#define __GFP_NOWARN 0x2000u          /* fail quietly: no oom report */
#define __GFP_NOFAIL 0x8000u          /* failure is a reported error */
#define __GFP_NORETRY 0x10000u
#define __GFP_MEMALLOC 0x20000u       /* all of the reserve (not for firmware) */
#define __GFP_RECLAIM 0xc00u          /* __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM */

#define GFP_ATOMIC 0x820u             /* __GFP_HIGH | __GFP_KSWAPD_RECLAIM */
#define GFP_KERNEL 0xcc0u             /* __GFP_RECLAIM | __GFP_IO | __GFP_FS */
#define GFP_NOWAIT 0x800u             /* __GFP_KSWAPD_RECLAIM */
#define GFP_DMA 0x1u                  /* __GFP_DMA */

#ifndef __cplusplus
_Static_assert(__GFP_RECLAIM == (__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM), "__GFP_RECLAIM");
_Static_assert(GFP_ATOMIC == (__GFP_HIGH | __GFP_KSWAPD_RECLAIM), "GFP_ATOMIC");
_Static_assert(GFP_KERNEL == (__GFP_RECLAIM | __GFP_IO | __GFP_FS), "GFP_KERNEL");
_Static_assert(sizeof(struct kalloc_bootinfo) == KH_BOOTINFO_SIZE, "bootinfo size");
#endif

/* ------------------------------------------------------------------ */
/* Page allocator                                                      */
/* ------------------------------------------------------------------ */

/* 2^order contiguous pages, aligned to their size; NULL on failure.
 * Pair with free_pages(addr, same order). Context: any, with a GFP that
 * does not block (GFP_ATOMIC/GFP_NOWAIT) in interrupts or irqs-off. */
void *alloc_pages(gfp_t gfp, unsigned int order);
void free_pages(void *addr, unsigned int order);

/* ceil(size / PAGE_SIZE) pages; pair with free_pages_exact(addr, size). */
void *alloc_pages_exact(size_t size, gfp_t gfp);
void free_pages_exact(void *addr, size_t size);

/* ------------------------------------------------------------------ */
/* Slab caches                                                         */
/* ------------------------------------------------------------------ */

struct kmem_cache;                      /* opaque handle */

/* The SDK keeps `ctor` (at most KALLOC_MAX_CTORS caches with one) and runs
 * it on objects the allocator reports as fresh. Returns NULL on failure. */
#define KALLOC_MAX_CTORS 16
struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align,
                                     unsigned long flags, void (*ctor)(void *));
void *kmem_cache_alloc(struct kmem_cache *cache, gfp_t gfp);
void kmem_cache_free(struct kmem_cache *cache, void *obj);
/* Frees empty slabs; returns the number of pages released. */
int kmem_cache_shrink(struct kmem_cache *cache);
/* The cache must be empty. */
void kmem_cache_destroy(struct kmem_cache *cache);

/* ------------------------------------------------------------------ */
/* kmalloc family                                                      */
/* ------------------------------------------------------------------ */

void *kmalloc(size_t size, gfp_t gfp);
void *kzalloc(size_t size, gfp_t gfp);                /* kmalloc | __GFP_ZERO */
void *kcalloc(size_t n, size_t size, gfp_t gfp);      /* zeroed, overflow-checked */
void *krealloc(const void *ptr, size_t size, gfp_t gfp);  /* old kept on failure */
void kfree(const void *ptr);                          /* kfree(NULL) is a no-op */
size_t ksize(const void *ptr);

/* ------------------------------------------------------------------ */
/* DMA API                                                             */
/* ------------------------------------------------------------------ */

typedef uint32_t dma_addr_t;           /* the address a DMA master uses */

/* A buffer in DMA-reachable memory, aligned to its page order and never
 * crossing a 64 KiB boundary when <= 64 KiB. *handle gets the DMA address. */
void *dma_alloc_coherent(size_t size, dma_addr_t *handle, gfp_t gfp);
void dma_free_coherent(size_t size, void *cpu, dma_addr_t handle);

struct dma_pool;                        /* opaque handle */

/* Fixed-size blocks that never cross `boundary` (0 = no constraint). */
struct dma_pool *dma_pool_create(const char *name, size_t size, size_t align, size_t boundary);
void *dma_pool_alloc(struct dma_pool *pool, gfp_t gfp, dma_addr_t *handle);
void dma_pool_free(struct dma_pool *pool, void *vaddr, dma_addr_t handle);
void dma_pool_destroy(struct dma_pool *pool);

/* ------------------------------------------------------------------ */
/* Virtual memory without demand paging (vmalloc window, 0xc0000000)   */
/* ------------------------------------------------------------------ */

/* ceil(size / PAGE_SIZE) physically scattered pages, every one of them
 * allocated and mapped contiguously *before* vmalloc returns (no demand
 * paging), with an unmapped guard page after the area: a touch of the
 * guard, of a freed area or of any unmapped page of the window ends the
 * run with a page-fault report. NULL on failure. Pair with vfree(); never
 * kfree()/free() it. The memory is virtual: hand DMA engines buffers from
 * dma_alloc_coherent(), never a vmalloc address. Context: task
 * (GFP_KERNEL); __vmalloc(size, GFP_ATOMIC) from atomic context. */
void *vmalloc(size_t size);
void *vzalloc(size_t size);                          /* zeroed */
void *__vmalloc(size_t size, gfp_t gfp);
void vfree(const void *addr);                        /* vfree(NULL) is a no-op */
/* Maps `count` pages the caller owns (page addresses, e.g. from
 * alloc_pages) contiguously; pair with vunmap(), which leaves them owned. */
void *vmap(void *const *pages, unsigned int count);
void vunmap(const void *addr);
/* Free pages in every zone right now (Linux's nr_free_pages()). */
unsigned long nr_free_pages(void);

/* ------------------------------------------------------------------ */
/* Debugging, tracing and the end of the run                           */
/* ------------------------------------------------------------------ */

void kmemleak_not_leak(const void *ptr);      /* not reported as a leak at exit */
void kalloc_stats_dump(unsigned int what);    /* KH_STATS_* bits, printed on the UART */
void kalloc_mark(unsigned int id);            /* a phase marker in the trace */
/* Allocation tags: until the matching pop, this context's allocations (any API)
 * carry tag `name` (at most 63 bytes) in the report's per-tag table and budgets
 * (--budgets). Tags nest; the task and each interrupt depth have their own stack,
 * so a handler's allocations carry the handler's tag. Both return the number of
 * tags now pushed in this context. */
int kalloc_tag_push(const char *name);
int kalloc_tag_pop(void);
__attribute__((noreturn)) void kalloc_exit(int code);          /* ecall 93 */
__attribute__((noreturn)) void kalloc_panic(const char *msg);  /* ecall 94 */

/* ------------------------------------------------------------------ */
/* Time, interrupts                                                    */
/* ------------------------------------------------------------------ */

/* Instructions executed so far (CLINT mtime). Known at slice boundaries
 * only, so it advances in steps. Never use rdcycle/rdtime on this machine. */
uint64_t kalloc_now(void);

#define KALLOC_IRQ_TIMER 0      /* request_irq line 0: the CLINT timer */
#define KALLOC_NR_IRQS 32       /* INTC lines 1..31 */

typedef void (*irq_handler_t)(unsigned int irq, void *arg);

/* Registers `handler` for `irq` and enables the line in the INTC (line 0:
 * the timer, armed with kalloc_timer_set). Handlers run with interrupts off
 * and must not block: allocate with GFP_ATOMIC. Returns 0, or -EINVAL for a
 * bad line, -EBUSY when the line already has a handler. */
int request_irq(unsigned int irq, irq_handler_t handler, void *arg);
void free_irq(unsigned int irq);
void enable_irq(unsigned int irq);
void disable_irq(unsigned int irq);

/* One-shot timer: fires once when mtime reaches now + delta. The SDK disarms
 * it before calling the handler, which may re-arm it. */
void kalloc_timer_set(uint32_t delta);
void kalloc_timer_cancel(void);

/* Interrupt nesting depth, kept by the trap vector (0 = task context). */
extern volatile uint32_t kalloc_irq_depth;

static inline int in_interrupt(void) { return kalloc_irq_depth != 0; }

/* mstatus.MIE (bit 3) is the one switch. CSR instructions need zicsr, which
 * -march=rv32imac lacks (adding it breaks picolibc's multilib match). */
#define KALLOC_MSTATUS_MIE 0x8
#if !defined(__arm__) /* RV32 (Cortex-M: at the end of this file) */
static inline unsigned long __kalloc_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrrci %0, mstatus, 8\n.option pop" : "=r"(flags) : : "memory");
    return flags;
}

static inline void local_irq_restore(unsigned long flags)
{
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrs mstatus, %0\n.option pop" : : "r"(flags & KALLOC_MSTATUS_MIE) : "memory");
}

static inline void local_irq_disable(void)
{
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrci mstatus, 8\n.option pop" : : : "memory");
}

static inline void local_irq_enable(void)
{
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrsi mstatus, 8\n.option pop" : : : "memory");
}

static inline int irqs_disabled(void)
{
    unsigned long mstatus;
    __asm__ volatile(".option push\n.option arch, +zicsr\n"
                     "csrr %0, mstatus\n.option pop" : "=r"(mstatus));
    return !(mstatus & KALLOC_MSTATUS_MIE);
}
#endif
/* Linux's spelling: local_irq_save(flags) assigns flags. */
#define local_irq_save(flags) do { (flags) = __kalloc_irq_save(); } while (0)

/* Sleeps until an interrupt is pending, even one masked by mstatus.MIE; the
 * machine fast-forwards time to the next event instead of running a loop. */
static inline void kalloc_wfi(void) { __asm__ volatile("wfi" : : : "memory"); }

/* Sleeps until `cond` (set by an interrupt handler) is true: the race-free
 * idle loop. cond is tested with interrupts off, so a wake-up cannot slip in
 * between the test and the wfi; the pending interrupt is taken as soon as
 * they are on again. A wait that nothing can end stops the run with a report
 * ("wfi with nothing to wake it") rather than spinning to the budget. */
#define kalloc_wait_until(cond)                                                   \
    do {                                                                          \
        unsigned long wait_flags_;                                                \
        local_irq_save(wait_flags_);                                              \
        while (!(cond)) {                                                         \
            kalloc_wfi();                                                         \
            local_irq_enable();                                                   \
            local_irq_disable();                                                  \
        }                                                                         \
        local_irq_restore(wait_flags_);                                           \
    } while (0)

/* ------------------------------------------------------------------ */
/* DMA engine and UART                                                 */
/* ------------------------------------------------------------------ */

/* Copies len bytes from src to dst (DMA addresses); completion raises
 * kalloc_bootinfo.dma_irq. Both ends must be DMA-reachable. */
void dma_engine_start(dma_addr_t src, dma_addr_t dst, uint32_t len);
uint32_t dma_engine_status(void);            /* KALLOC_DMA_IDLE..ERROR */
void *dma_engine_buffer(void);               /* the device buffer, CPU view */
dma_addr_t dma_engine_buffer_dma(void);      /* the device buffer, DMA view */

void uart_putc(char c);                      /* one byte store to TX */
void uart_write(const void *buf, size_t len);  /* one KH_CONSOLE_WRITE */

#ifdef __cplusplus
}
#endif

/* --- Per-architecture parts (the Cortex-M machine: board stm32f4) -------------
 * Kept at the end of the header so that the RV32 build's line numbers, and so
 * its ELFs, do not move. The __KALLOC_* macros are the SDK's (sdk/hcall.h,
 * boot.c, irq.c), not an API. */
#if defined(__arm__)
/* Cortex-M (ARMv7-M): PRIMASK (bit 0 set = interrupts off) is the one switch;
 * flags hold the old PRIMASK. A handler is pre-empted only by an exception of a
 * higher priority (NVIC_IPR, SHPR3; all 0 at reset: no nesting unless set). */
static inline unsigned long __kalloc_irq_save(void)
{
    unsigned long flags;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(flags) : : "memory");
    return flags;
}

static inline void local_irq_restore(unsigned long flags)
{
    __asm__ volatile("msr primask, %0" : : "r"(flags & 1) : "memory");
}

static inline void local_irq_disable(void) { __asm__ volatile("cpsid i" : : : "memory"); }

static inline void local_irq_enable(void) { __asm__ volatile("cpsie i" : : : "memory"); }

static inline int irqs_disabled(void)
{
    unsigned long primask;
    __asm__ volatile("mrs %0, primask" : "=r"(primask));
    return primask & 1;
}

/* KALLOC_MSTATUS_MIE when the CPU takes interrupts now: PRIMASK clear and
 * thread mode (IPSR 0). */
#define __KALLOC_READ_MIE(v)                                                      \
    do {                                                                          \
        unsigned long ipsr_;                                                      \
        __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr_));                           \
        (v) = (!irqs_disabled() && !(ipsr_ & 0x1ff)) ? KALLOC_MSTATUS_MIE : 0;   \
    } while (0)
/* Thumb: the return address without its Thumb bit; no frame chain the host can
 * walk from r7 (it points below the locals), so fp = 0: the site is ra. */
#define __KALLOC_SITE() (void *)((uintptr_t)__builtin_return_address(0) & ~(uintptr_t)1), (void *)0
/* The exit/panic call: `svc #0`, r12 = number (r7 is the frame pointer), r0 = argument. */
#define __KALLOC_ECALL() "svc #0"
#define __KALLOC_ECALL_ARG() "r0"
#define __KALLOC_ECALL_NR() "r12"
/* The exception numbers arm/trap.S passes (IPSR): SysTick, IRQ 0 (the INTC's line). */
#define __KALLOC_CAUSE_TIMER() 15u
#define __KALLOC_CAUSE_EXTERNAL() 16u
/* IRQ 0 (the interrupt controller's line) on in the NVIC's ISER0 (arm/systick.c: SysTick). */
#define __KALLOC_ENABLE_SOURCES(bits) ((void)(bits), *(volatile uint32_t *)0xE000E100u = 1u)
/* A code address's Thumb bit (return addresses carry it). */
#define __KALLOC_CODE_BIT() 1u
#else
#define __KALLOC_CODE_BIT() 0u
#define __KALLOC_READ_MIE(v)                                                      \
    __asm__ volatile(".option push\n.option arch, +zicsr\n"                       \
                     "csrr %0, mstatus\n.option pop" : "=r"(v))
#define __KALLOC_SITE() __builtin_return_address(0), __builtin_frame_address(0)
#define __KALLOC_ECALL() "ecall"
#define __KALLOC_ECALL_ARG() "a0"
#define __KALLOC_ECALL_NR() "a7"
#define __KALLOC_CAUSE_TIMER() (0x80000000u | 7u)
#define __KALLOC_CAUSE_EXTERNAL() (0x80000000u | 11u)
#define __KALLOC_ENABLE_SOURCES(bits)                                              \
    __asm__ volatile(".option push\n.option arch, +zicsr\n"                       \
                     "csrs mie, %0\n.option pop" : : "r"(bits) : "memory")
#endif

#endif /* KALLOC_H */
