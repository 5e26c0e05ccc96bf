"""The hypercall ABI: the one table both sides are built from.

`firmware/include/kalloc.h` repeats these numbers for the C compiler; a test
(tests/machine/test_abi_header.py) parses the header and checks it against this module,
so the two cannot drift. docs/abi.md explains every entry.

Transport (docs/abi.md): the SDK stub builds an argument
block on its own stack and stores the block's address to doorbell N:

    sw  <blockaddr>, 4*N(DOORBELL_BASE)

The MMIO write callback reads the block from guest RAM (host memory, no
Unicorn call), runs service N, writes `result` (and `aux`) into the block and
returns; the stub then loads them. The block, field by field (all u32, little
endian):

    off  field   dir  meaning
    0    result  out  the service's return value (a pointer, a count, 0/-errno)
    4    aux     out  a second result (DMA address, "object needs its ctor")
    8    ra      in   the stub's return address: the call site in the caller
    12   fp      in   the stub's frame pointer (s0); [fp-4]=ra, [fp-8]=caller's fp
    16   ctx     in   bit 0: mstatus.MIE; bits 8..15: interrupt nesting depth
    20   a0..a5  in   the service's arguments (unused ones are don't-care)

Invariants:
 1. Service numbers are stable within an ABI_VERSION; a number is never reused.
 2. Every service takes at most 6 arguments and produces at most 2 results.
 3. Nothing in a block is trusted: the bridge validates the block address, every
    pointer argument and every flag before the allocator sees them.
 4. Every service belongs to one family of FAMILIES; one handler object answers a
    family (its `svc_<name>` methods).
"""

from __future__ import annotations

from dataclasses import dataclass

ABI_VERSION = 1

BLOCK_SIZE = 48  # 44 bytes of fields, rounded up to keep sp 16-byte aligned
OFF_RESULT = 0
OFF_AUX = 4
OFF_RA = 8
OFF_FP = 12
OFF_CTX = 16
OFF_ARGS = 20
MAX_ARGS = 6

CTX_MIE = 1 << 0  # interrupts were enabled at the call
CTX_DEPTH_SHIFT = 8  # interrupt nesting depth, 0 = task context
CTX_DEPTH_MASK = 0xFF

# Rare events travel by `ecall` (a7 = number, a0.. = arguments).
ECALL_EXIT = 93  # a0 = exit code (Linux's exit syscall number)
ECALL_PANIC = 94  # a0 = pointer to a NUL-terminated message

BOOTINFO_MAGIC = 0x424C_414B  # "KALB" little endian
BOOTINFO_MAX_BANKS = 4
BANK_DMA = 1 << 0  # bank flag: reachable by every DMA master


@dataclass(frozen=True, slots=True)
class Service:
    """One hypercall: its doorbell number, C name, argument names and service family.

    `family` names the group of services one handler object answers (FAMILIES); the
    bridge is filled family by family from this table (kalloc_machine.bridge.doorbell).
    """

    number: int
    name: str
    args: tuple[str, ...]
    doc: str
    family: str


def _family(family: str, *rows: tuple[int, str, tuple[str, ...], str]) -> tuple[Service, ...]:
    return tuple(Service(number, name, args, doc, family) for number, name, args, doc in rows)


# family -> the module whose handler object answers it (under kalloc_machine.bridge)
FAMILIES: dict[str, str] = {
    "misc": "services/misc.py",
    "pages": "services/pages.py",
    "slab": "services/slab.py",
    "kmalloc": "services/slab.py",
    "libc": "services/libc.py",
    "dma": "services/dma.py",
    "vmalloc": "services/vmalloc.py",
    "kasan": "kasan.py",
    "tags": "services/tags.py",
}

SERVICES: tuple[Service, ...] = (
    *_family(
        "misc",
        (0, "NOP", (), "does nothing; the hypercall floor"),
        (1, "BOOTINFO", ("buf", "len"), "fills struct kalloc_bootinfo; result = bytes written"),
        (2, "CONSOLE_WRITE", ("buf", "len"), "writes len bytes to the UART; result = len"),
        (3, "STATS_DUMP", ("what",), "prints allocator statistics on the UART (KH_STATS_* bits)"),
        (4, "NOT_LEAK", ("ptr",), "kmemleak_not_leak: exclude a live object from the leak report"),
        (5, "MARK", ("id",), "records a marker in the trace (phase boundaries)"),
        (6, "NR_FREE_PAGES", (), "result = free pages in every zone now (Linux's nr_free_pages())"),
    ),
    *_family(  # allocation tags and budgets (issue 18; report/tags.py)
        "tags",
        (7, "TAG_PUSH", ("name",),
         "this context's allocations carry tag `name` (NUL-terminated, at most 63 bytes) until the pop; "
         "result = tags now pushed in this context"),
        (8, "TAG_POP", (), "ends the innermost tag of this context; result = tags left"),
    ),
    *_family(
        "pages",
        (16, "ALLOC_PAGES", ("gfp", "order"), "2^order pages; result = physical address or 0"),
        (17, "FREE_PAGES", ("addr", "order"), "frees what ALLOC_PAGES returned"),
        (18, "ALLOC_PAGES_EXACT", ("size", "gfp"), "ceil(size/4096) pages; result = address or 0"),
        (19, "FREE_PAGES_EXACT", ("addr", "size"), "frees what ALLOC_PAGES_EXACT returned"),
    ),
    *_family(
        "slab",
        (24, "CACHE_CREATE", ("name", "size", "align", "flags", "ctor"),
         "result = cache handle or 0; ctor != 0: the firmware constructs objects (aux of CACHE_ALLOC)"),
        (25, "CACHE_ALLOC", ("cache", "gfp"), "result = object; aux = 1 if the ctor must run"),
        (26, "CACHE_FREE", ("cache", "obj"), "frees an object of this cache"),
        (27, "CACHE_SHRINK", ("cache",), "frees empty slabs; result = pages released"),
        (28, "CACHE_DESTROY", ("cache",), "destroys an empty cache"),
    ),
    *_family(
        "kmalloc",
        (32, "KMALLOC", ("size", "gfp"), "result = object or 0"),
        (33, "KFREE", ("ptr",), "frees a kmalloc object; NULL is a no-op"),
        (34, "KSIZE", ("ptr",), "usable size of a kmalloc object"),
        (35, "KREALLOC", ("ptr", "size", "gfp"), "result = object or 0 (old kept on failure)"),
        (36, "KCALLOC", ("n", "size", "gfp"), "zeroed n*size, overflow-checked"),
    ),
    *_family(  # the C library face
        "libc",
        (40, "MALLOC", ("size",), "result = pointer or 0"),
        (41, "FREE", ("ptr",), "free(NULL) is a no-op"),
        (42, "CALLOC", ("n", "size"), "zeroed, overflow-checked"),
        (43, "REALLOC", ("ptr", "size"), "see docs/allocator.md for the zero-size policy"),
        (44, "ALIGNED_ALLOC", ("align", "size"), "C17 aligned_alloc; bad alignment gives 0"),
        (45, "MALLOC_USABLE_SIZE", ("ptr",), "usable size; 0 for NULL"),
    ),
    *_family(
        "dma",
        (48, "DMA_ALLOC_COHERENT", ("size", "gfp"), "result = cpu address; aux = dma address"),
        (49, "DMA_FREE_COHERENT", ("size", "cpu", "dma"), "frees a coherent buffer"),
        (50, "DMA_POOL_CREATE", ("name", "size", "align", "boundary"), "result = pool handle or 0"),
        (51, "DMA_POOL_ALLOC", ("pool", "gfp"), "result = cpu address; aux = dma address"),
        (52, "DMA_POOL_FREE", ("pool", "cpu", "dma"), "frees a pool block"),
        (53, "DMA_POOL_DESTROY", ("pool",), "destroys an empty pool"),
    ),
    *_family(  # virtual memory without demand paging (issue 6; bridge/vmbridge.py, mmu.py)
        "vmalloc",
        (56, "VMALLOC", ("size", "gfp"),
         "ceil(size/4096) pages mapped contiguously now, guard page after; result = virtual address or 0"),
        (57, "VFREE", ("addr",), "unmaps (TLB flushed) and frees a vmalloc area; 0 is a no-op"),
        (58, "VMAP", ("pages", "count"),
         "maps count pages (u32 physical page addresses at `pages`) contiguously; result = address or 0"),
        (59, "VUNMAP", ("addr",), "unmaps a vmap area; the pages stay the caller's"),
    ),
    *_family(  # KASAN (compiled mode: firmware built with -fsanitize=kernel-address, docs/abi.md)
        "kasan",
        (64, "ASAN_REPORT", ("addr", "size", "flags", "pc"),
         "a bad access found by the SDK's __asan_* checks; flags bit 0 write, bit 1 via mem*/str*"),
        (65, "KASAN_SHADOW", ("buf", "len"),
         "fills struct kalloc_kasan_bank[] (base, size, shadow); result = banks (0: no shadow)"),
    ),
)  # fmt: skip

SERVICE_BY_NUMBER: dict[int, Service] = {s.number: s for s in SERVICES}
SERVICE_BY_NAME: dict[str, Service] = {s.name: s for s in SERVICES}

# STATS_DUMP bits
STATS_BUDDYINFO = 1 << 0
STATS_SLABINFO = 1 << 1
STATS_ZONEINFO = 1 << 2
STATS_ALL = STATS_BUDDYINFO | STATS_SLABINFO | STATS_ZONEINFO

# struct kalloc_bootinfo, u32 fields in this order
BOOTINFO_FIELDS: tuple[str, ...] = (
    "magic",
    "abi_version",
    "ram_base",
    "ram_end",
    "uart_base",
    "clint_base",
    "intc_base",
    "dma_base",
    "dma_irq",
    "timer_irq",
    "test_irq",
    "nbanks",
) + tuple(f"bank{i}_{f}" for i in range(BOOTINFO_MAX_BANKS) for f in ("base", "size", "flags"))
BOOTINFO_SIZE = 4 * len(BOOTINFO_FIELDS)

# KASAN shadow (services ASAN_REPORT, KASAN_SHADOW)
ASAN_WRITE = 1 << 0  # ASAN_REPORT flags: the access was a store
ASAN_RANGE = 1 << 1  # ASAN_REPORT flags: found by a range-checked mem*/str* function
KASAN_BANK_SIZE = 12  # struct kalloc_kasan_bank: u32 base, size, shadow

