"""Zones and their watermarks: how much free memory each zone keeps back, and for whom.

A zone is a set of RAM banks of one kind: ZONE_DMA (banks every DMA master can
reach) or ZONE_NORMAL (the rest). Each zone owns the buddy free lists of its
banks (`free_area[order]`, see kalloc.buddy) and three watermarks in pages:

    free pages
      ^
      |  high   kswapd stops reclaiming here          min + min/2
      |  low    kswapd is woken below here            min + min/4
      |  min    ordinary allocations fail below here  share of min_free_kbytes
      |  ...    the reserve: __GFP_HIGH may use half of it, GFP_ATOMIC 5/8,
      |         __GFP_MEMALLOC all of it
      0

The arithmetic is Linux's (mm/page_alloc.c); each function below cites the one
it follows. `lowmem_reserve[j]` protects a lower zone from requests that could
have been served by the higher zone j: a NORMAL request may fall back to DMA
only while DMA keeps `min + lowmem_reserve[NORMAL]` pages free.

Invariants:
 1. nr_free == sum over orders of len(free_area[order]) << order.
 2. 0 <= wmark_min <= wmark_low <= wmark_high.
 3. managed == present - pages reserved in the zone (firmware, memmap, ...).
 4. lowmem_reserve[idx] == 0 for the zone's own index and every lower one.
"""

from __future__ import annotations

import math

from kalloc import gfp as G
from kalloc.page import PAGE_SHIFT, Section

ZONE_DMA = 0
ZONE_NORMAL = 1
NR_ZONES = 2
ZONE_NAMES: tuple[str, ...] = ("DMA", "Normal")  # as /proc/zoneinfo spells them

# Allocation flags derived from GFP (mm/internal.h, v6.3+).
ALLOC_NO_WATERMARKS = 0x04  # __GFP_MEMALLOC: ignore watermarks entirely
ALLOC_MIN_RESERVE = 0x08  # __GFP_HIGH: may use half of the min reserve
ALLOC_NON_BLOCK = 0x10  # cannot sleep (GFP_ATOMIC, GFP_NOWAIT): a further quarter if also MIN_RESERVE


class Zone:
    """One memory zone: its banks, buddy free lists, counters and watermarks."""

    __slots__ = (
        "free_area",
        "idx",
        "low_wmark_hits",
        "lowmem_reserve",
        "managed",
        "min_free_seen",
        "name",
        "nr_free",
        "present",
        "sections",
        "wmark_high",
        "wmark_low",
        "wmark_min",
    )

    def __init__(self, idx: int, max_order: int) -> None:
        self.idx = idx
        self.name = ZONE_NAMES[idx]
        self.sections: list[Section] = []
        # One insertion-ordered dict per order, used as a LIFO set of head pfns:
        # popitem() takes the most recently freed block (cache-warm in Linux),
        # `del` removes a buddy in O(1) when it merges.
        self.free_area: list[dict[int, None]] = [{} for _ in range(max_order + 1)]
        self.nr_free = 0
        self.present = 0
        self.managed = 0
        self.wmark_min = 0
        self.wmark_low = 0
        self.wmark_high = 0
        self.lowmem_reserve: list[int] = [0] * NR_ZONES
        self.min_free_seen = 0
        self.low_wmark_hits = 0  # allocations that left the zone below low (Linux would wake kswapd)

    @property
    def start_pfn(self) -> int:
        return self.sections[0].start_pfn if self.sections else 0

    @property
    def end_pfn(self) -> int:
        return self.sections[-1].end_pfn if self.sections else 0

    @property
    def spanned(self) -> int:
        return self.end_pfn - self.start_pfn

    @property
    def populated(self) -> bool:
        return self.present > 0

    def nr_free_blocks(self) -> list[int]:
        """Free block count per order: one /proc/buddyinfo row."""
        return [len(d) for d in self.free_area]

    def largest_free_order(self) -> int:
        """Order of the largest free block, -1 when the zone has none."""
        for order in range(len(self.free_area) - 1, -1, -1):
            if self.free_area[order]:
                return order
        return -1


def default_min_free_kbytes(lowmem_kbytes: int) -> int:
    """The reserve size Linux would pick, scaled for small boards.

    Linux's init_per_zone_wmark_min() (mm/page_alloc.c) sets
    min_free_kbytes = int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144].
    The 128 KiB floor is half of a 256 KiB board, so kalloc also caps the
    reserve at 1/8 of RAM. The cap only bites below 1 MiB, where Linux's
    formula and floor give 1/8 or more (sqrt(16 * 1024) = 128 KiB at 1 MiB):
    256 KiB -> 32 KiB, 512 KiB -> 64 KiB, 1 MiB -> 128 KiB, 16 MiB -> 512 KiB,
    1 GiB -> 4 MiB: Linux's own values from 1 MiB up. Below the cap the
    reserve is still a few pages, enough for an interrupt handler's atomic
    allocations when everything else is taken.
    """
    value = max(128, min(math.isqrt(lowmem_kbytes * 16), 262144))
    return min(value, lowmem_kbytes // 8)


def setup_watermarks(zones: list[Zone], min_free_kbytes: int) -> None:
    """Per-zone min/low/high from min_free_kbytes.

    Linux's __setup_per_zone_wmarks() (mm/page_alloc.c): each zone's min is its
    share of pages_min proportional to its managed pages; low and high are the
    classic min + min/4 and min + min/2 (Linux 2.6 .. 4.5; since 4.6 the gap is
    max(min/4, managed * watermark_scale_factor / 10000), and with the default
    factor of 10 the min/4 term wins on boards this size).
    """
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed for z in zones)
    for z in zones:
        zmin = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
        z.wmark_min = zmin
        z.wmark_low = zmin + (zmin >> 2)
        z.wmark_high = zmin + (zmin >> 1)


def setup_lowmem_reserve(zones: list[Zone], dma_ratio: int) -> None:
    """lowmem_reserve[j] of each lower zone, as setup_per_zone_lowmem_reserve().

    zone[i].lowmem_reserve[j] = managed pages of zones i+1..j / ratio[i], with
    Linux's sysctl_lowmem_reserve_ratio = 256 for ZONE_DMA: a NORMAL request
    must leave 1/256 of NORMAL's size free in DMA on top of DMA's watermark.
    """
    for z in zones:
        z.lowmem_reserve = [0] * NR_ZONES
    for i, lower in enumerate(zones):
        above = 0
        for j in range(i + 1, len(zones)):
            above += zones[j].managed
            lower.lowmem_reserve[zones[j].idx] = above // dma_ratio


def alloc_flags_for(gfp: int) -> int:
    """ALLOC_* flags of a request, as gfp_to_alloc_flags() (mm/page_alloc.c, v6.3+).

    __GFP_HIGH gives ALLOC_MIN_RESERVE; a request that cannot sleep (no
    __GFP_DIRECT_RECLAIM) gets ALLOC_NON_BLOCK; __GFP_MEMALLOC gives
    ALLOC_NO_WATERMARKS (gfp_pfmemalloc_allowed()).
    """
    flags = 0
    if gfp & G.HIGH:
        flags |= ALLOC_MIN_RESERVE
    if not gfp & G.DIRECT_RECLAIM:
        flags |= ALLOC_NON_BLOCK
    if gfp & G.MEMALLOC:
        flags |= ALLOC_NO_WATERMARKS
    return flags


def watermark_ok(zone: Zone, order: int, mark: int, highest_zoneidx: int, alloc_flags: int) -> bool:
    """May `zone` hand out a block of `order` and stay above `mark`?

    Linux's __zone_watermark_ok() (mm/page_alloc.c, v6.3+):
        free_pages -= (1 << order) - 1
        if ALLOC_MIN_RESERVE: min -= min / 2;  if also ALLOC_NON_BLOCK: min -= min / 4
        fail if free_pages <= min + lowmem_reserve[highest_zoneidx]
        then succeed if some free list of order >= `order` is non-empty.
    So GFP_ATOMIC keeps 3/8 of min back, __GFP_HIGH alone 1/2, GFP_KERNEL and
    GFP_NOWAIT all of it.
    """
    if alloc_flags & ALLOC_NO_WATERMARKS:
        return any(zone.free_area[o] for o in range(order, len(zone.free_area)))
    if not enough_free(zone, order, mark, highest_zoneidx, alloc_flags):
        return False
    if order == 0:
        return True
    return any(zone.free_area[o] for o in range(order, len(zone.free_area)))


def enough_free(zone: Zone, order: int, mark: int, highest_zoneidx: int, alloc_flags: int) -> bool:
    """watermark_ok()'s count test alone: are there enough free pages, whatever their shape?

    When it holds and watermark_ok() does not, the request failed on fragmentation:
    the pages are free but no block of `order` is.
    """
    free_pages = zone.nr_free - ((1 << order) - 1)
    wmin = mark
    if alloc_flags & ALLOC_MIN_RESERVE:
        wmin -= wmin // 2
        if alloc_flags & ALLOC_NON_BLOCK:
            wmin -= wmin // 4
    return free_pages > wmin + zone.lowmem_reserve[highest_zoneidx]
