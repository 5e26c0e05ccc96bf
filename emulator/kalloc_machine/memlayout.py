"""The machine's fixed address map: the one source of truth for where things live.

Every board shares this map, so one firmware ELF runs on any board:

    0x0000_0000 ┌──────────────────────┐
                │ unmapped             │  a NULL (or small-offset) dereference faults
    0x0200_0000 ├──────────────────────┤
                │ CLINT: mtime/mtimecmp│  timer, in executed instructions
    0x0C00_0000 ├──────────────────────┤
                │ INTC: interrupt ctrl │  pending / enable / claim for lines 1..31
    0x1000_0000 ├──────────────────────┤
                │ UART                 │  TX data register, status
    0x1000_1000 ├──────────────────────┤
                │ DMA engine           │  src, dst, len, ctrl, status + device buffer
    0x1100_0000 ├──────────────────────┤
                │ hypercall doorbells  │  `sw blockaddr, 4*N(DOORBELL)` calls service N
    0x8000_0000 ├──────────────────────┤
                │ RAM (banks)          │  firmware loads at RAM_BASE; the rest is the
                │                      │  allocator's (zones DMA / NORMAL)
    0xC000_0000 ├──────────────────────┤
                │ vmalloc / arena      │  virtual windows (no demand paging)
                └──────────────────────┘

Invariants:
 1. RAM_BASE and FIRMWARE_LOAD are the same on every board.
 2. Device windows never overlap RAM; boards may place RAM banks anywhere in
    [RAM_BASE, VMALLOC_START).
"""

from __future__ import annotations

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # 4096: the page size the ABI and the allocator assume

RAM_BASE = 0x8000_0000
FIRMWARE_LOAD = RAM_BASE

CLINT_BASE = 0x0200_0000
CLINT_SIZE = 0x1_0000
INTC_BASE = 0x0C00_0000
INTC_SIZE = 0x1000
UART_BASE = 0x1000_0000
UART_SIZE = 0x1000
DMA_BASE = 0x1000_1000
DMA_SIZE = 0x1000
DOORBELL_BASE = 0x1100_0000
DOORBELL_SIZE = 0x1000  # 1024 services, one 32-bit doorbell each

VMALLOC_START = 0xC000_0000
VMALLOC_END = 0xF000_0000

# The idle sled (sled.py): an execute-only page run of `nop`s that ends in
# a jump back to its start, above every other window. When the run must stop early at
# a known point (ecall exit/panic, a fault reported by the interrupt hook) or the CPU
# reaches `wfi`, the machine points the PC here and lets the slice's instruction count
# run out; where the PC stops then tells exactly how many instructions ran before.
IDLE_SLED_BASE = 0xF800_0000
IDLE_SLED_SIZE = 0x1_0000


def gaps(covered: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """The spans of [0, top) that no half-open (lo, hi) of `covered` holds, as inclusive (lo, hi):
    the ranges of a hook that must leave `covered` alone (Unicorn's hook ranges are inclusive)."""
    out, at = [], 0
    for lo, hi in sorted(covered):
        if lo > at:
            out.append((at, lo - 1))
        at = max(at, hi)
    if at < top:
        out.append((at, top - 1))
    return out
