"""GFP ("get free pages") flags: what an allocation may do to succeed.

Bit values are Linux's (include/linux/gfp_types.h, v6.x) so a reader can
compare; firmware/include/kalloc.h repeats them and tests/test_abi_header.py
checks the two agree.

Invariants:
 1. KNOWN_MASK is the union of every bit defined here; any other bit in a
    request is rejected with BadArgumentError before anything is allocated.
 2. A request "may block" exactly when it carries __GFP_DIRECT_RECLAIM; such a
    request from interrupt context or with interrupts off is invalid-context.
"""

from __future__ import annotations

__GFP_DMA = 0x01
__GFP_HIGH = 0x20  # may use part of the reserve below the min watermark
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_DIRECT_RECLAIM = 0x400  # may sleep: the caller can wait for reclaim
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_NOWARN = 0x2000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000  # may use all of the reserve (not for firmware use)

__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
GFP_DMA = __GFP_DMA

KNOWN_MASK = (
    __GFP_DMA
    | __GFP_HIGH
    | __GFP_IO
    | __GFP_FS
    | __GFP_ZERO
    | __GFP_DIRECT_RECLAIM
    | __GFP_KSWAPD_RECLAIM
    | __GFP_NOWARN
    | __GFP_NOFAIL
    | __GFP_NORETRY
    | __GFP_MEMALLOC
)

NAMES: dict[int, str] = {
    __GFP_DMA: "__GFP_DMA",
    __GFP_HIGH: "__GFP_HIGH",
    __GFP_IO: "__GFP_IO",
    __GFP_FS: "__GFP_FS",
    __GFP_ZERO: "__GFP_ZERO",
    __GFP_DIRECT_RECLAIM: "__GFP_DIRECT_RECLAIM",
    __GFP_KSWAPD_RECLAIM: "__GFP_KSWAPD_RECLAIM",
    __GFP_NOWARN: "__GFP_NOWARN",
    __GFP_NOFAIL: "__GFP_NOFAIL",
    __GFP_NORETRY: "__GFP_NORETRY",
    __GFP_MEMALLOC: "__GFP_MEMALLOC",
}


def may_block(gfp: int) -> bool:
    """True when the request may sleep (direct reclaim)."""
    return bool(gfp & __GFP_DIRECT_RECLAIM)


def describe(gfp: int) -> str:
    """Linux-style text: GFP_KERNEL|__GFP_ZERO, or the raw bits for unknown ones."""
    for name, value in (("GFP_KERNEL", GFP_KERNEL), ("GFP_ATOMIC", GFP_ATOMIC), ("GFP_NOWAIT", GFP_NOWAIT)):
        if gfp & value == value and value:
            rest = gfp & ~value
            parts = [name] + [NAMES.get(1 << i, f"{1 << i:#x}") for i in range(32) if rest >> i & 1]
            return "|".join(parts)
    parts = [NAMES.get(1 << i, f"{1 << i:#x}") for i in range(32) if gfp >> i & 1]
    return "|".join(parts) or "0"

# Aliases without leading underscores: inside a class body Python mangles
# `gfp.__GFP_ZERO` into `gfp._Class__GFP_ZERO`, so code uses these.
DMA = __GFP_DMA
HIGH = __GFP_HIGH
ZERO = __GFP_ZERO
DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
NOWARN = __GFP_NOWARN
NOFAIL = __GFP_NOFAIL
MEMALLOC = __GFP_MEMALLOC
