"""Tunables of one allocator instance, and who is calling it.

`Config` holds every policy number a user may change (max order, reserve size,
sanitizer mode, red zone width, ...); everything else is derived from it at
boot. `Caller` describes the caller of one operation: its context (task,
interrupt, interrupts disabled) and its stack-depot handle.

Invariants:
 1. A `Config` is immutable and validated when built: a bad value raises
    ValueError at construction, never later in the middle of an allocation.
 2. `Caller` is an immutable value; `TASK` is the default caller (task context,
    no recorded stack).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

SANITIZE_MODES: tuple[str, ...] = ("poison", "off", "kasan")
ZERO_SIZE_POLICIES: tuple[str, ...] = ("unique", "null")


class Context(enum.Enum):
    """Where a call comes from. Linux's in_interrupt() / irqs_disabled() in one value."""

    TASK = 0  # may sleep
    IRQ = 1  # inside an interrupt handler
    IRQS_OFF = 2  # task code running with interrupts disabled


class Caller(NamedTuple):
    """The caller of one allocator operation.

    A NamedTuple, not a frozen dataclass: one is built per hypercall, and a frozen
    dataclass's __init__ costs ~1 µs more (object.__setattr__ per field).

    Args:
        context: task, interrupt handler, or interrupts disabled.
        site: stack-depot handle of the call stack (0 = none recorded).
        depth: interrupt nesting depth (0 in task context).
    """

    context: Context = Context.TASK
    site: int = 0
    depth: int = 0


TASK = Caller()


@dataclass(frozen=True, slots=True)
class Config:
    """Policy settings of a `Kalloc`.

    Args:
        max_order: largest buddy block is PAGE_SIZE << max_order (10: 4 MiB, as
            Linux's MAX_ORDER since 6.4, the old MAX_ORDER-1).
        min_free_kbytes: size of the reserve below the min watermarks; None derives
            it from RAM like Linux's init_per_zone_wmark_min(), scaled for small
            boards (see kalloc.zone.default_min_free_kbytes).
        sanitize: "poison" (red zones and poison checked at free and at exit),
            "off", or "kasan" (poison plus a quarantine of freed objects, and
            realloc always moves).
        redzone: bytes of red zone left and right of every slab object (a multiple
            of 8; 0 disables red zones but keeps poisoning).
        struct_page_size: bytes of metadata per page (Linux's struct page is 32
            bytes on 32-bit kernels, 64 on 64-bit); the memmap costs real RAM.
        heap_max: largest request the C library face accepts (malloc, calloc,
            realloc, aligned_alloc); larger ones return NULL with an oom report.
            The buddy's largest block (PAGE_SIZE << max_order) is a second limit.
        seed: seed for any randomised policy (none is random today; kept so runs
            stay reproducible when one is added).
        zero_size_policy: "unique" (malloc(0) and realloc(p, 0) return a unique,
            freeable, zero-size object) or "null" (malloc(0) returns NULL;
            realloc(p, 0) returns NULL and leaves p allocated). Neither can turn
            a zero-size realloc into a double free (docs/allocator.md).
        quarantine_bytes: kasan quarantine budget; None = min(256 KiB, RAM/32).
        lowmem_reserve_ratio: Linux's sysctl_lowmem_reserve_ratio for ZONE_DMA.
    """

    max_order: int = 10
    min_free_kbytes: int | None = None
    sanitize: str = "poison"
    redzone: int = 16
    struct_page_size: int = 32
    heap_max: int = 1 << 30
    seed: int = 0
    zero_size_policy: str = "unique"
    quarantine_bytes: int | None = None
    lowmem_reserve_ratio: int = 256

    def __post_init__(self) -> None:
        if not 0 <= self.max_order <= 20:
            raise ValueError(f"max_order must be in 0..20, not {self.max_order}")
        if self.min_free_kbytes is not None and self.min_free_kbytes < 0:
            raise ValueError("min_free_kbytes must not be negative")
        if self.sanitize not in SANITIZE_MODES:
            raise ValueError(f"sanitize must be one of {SANITIZE_MODES}, not {self.sanitize!r}")
        if self.redzone < 0 or self.redzone % 8 or self.redzone > 4096:
            raise ValueError("redzone must be a multiple of 8 in 0..4096")
        if self.struct_page_size < 0:
            raise ValueError("struct_page_size must not be negative")
        if self.heap_max < 1:
            raise ValueError("heap_max must be positive")
        if self.zero_size_policy not in ZERO_SIZE_POLICIES:
            raise ValueError(f"zero_size_policy must be one of {ZERO_SIZE_POLICIES}")
        if self.quarantine_bytes is not None and self.quarantine_bytes < 0:
            raise ValueError("quarantine_bytes must not be negative")
        if self.lowmem_reserve_ratio < 1:
            raise ValueError("lowmem_reserve_ratio must be at least 1")

    @property
    def debug(self) -> bool:
        """True when red zones and poisoning are on (poison and kasan modes)."""
        return self.sanitize != "off"
