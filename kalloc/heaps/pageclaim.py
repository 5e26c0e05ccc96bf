"""Growing an allocated buddy block in place: claim the free pages right after it.

A heap that owns a physically contiguous run of pages (a region of boundary-tag
blocks, a page-exact large block) grows without moving when the pages that
follow its last block are free: `extend(buddy, pfn, extra)` takes exactly those
pages out of the buddy allocator's free lists and adds them to the allocated
block headed by `pfn` (what sbrk() does at the top of a heap, with physical
pages). The parts of the free blocks it cuts that lie outside the claimed range
go back on the free lists as the largest aligned blocks, as Buddy.trim() frees a
tail, so no buddy invariant is broken (kalloc/page.py, kalloc/buddy.py).

The claim respects the zone's min watermark (it never eats the reserve) and is
refused while pageblocks are grouped (kalloc.antifrag: the grouping chooses
which free block serves a request, and a claim would bypass it).

Invariants:
 1. extend() changes nothing unless every page of the range is free, in the
    block's section, and the zone keeps its min watermark; it returns False then.
 2. After a successful extend(), Buddy.blocks[pfn] grew by `extra`, used_pages by
    `extra`, the zone's nr_free fell by `extra`, and Buddy.check() holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.page import PG_BUDDY, PG_NONE

if TYPE_CHECKING:
    from kalloc.buddy import Buddy
    from kalloc.page import Section
    from kalloc.zone import Zone


def _free_block_at(buddy: Buddy, sec: Section, zone: Zone, pfn: int) -> tuple[int, int] | None:
    """(head, order) of the free block holding page `pfn`, or None when the page is not free."""
    for order in range(buddy.max_order + 1):
        head = pfn & ~((1 << order) - 1)
        if head < sec.start_pfn:
            return None
        if head in zone.free_area[order]:
            i = head - sec.start_pfn
            if sec.state[i] == PG_BUDDY and sec.order[i] == order:
                return head, order
    return None


def _list_range(buddy: Buddy, sec: Section, zone: Zone, pfn: int, end: int) -> None:
    """Put [pfn, end) on the free lists as the largest aligned blocks (no merging is possible)."""
    while pfn < end:
        order = min(buddy.max_order, (pfn & -pfn).bit_length() - 1 if pfn else buddy.max_order)
        while pfn + (1 << order) > end:
            order -= 1
        zone.free_area[order][pfn] = None
        sec.state[pfn - sec.start_pfn] = PG_BUDDY
        sec.order[pfn - sec.start_pfn] = order
        zone.nr_free += 1 << order
        pfn += 1 << order


def extend(buddy: Buddy, pfn: int, extra: int) -> bool:
    """Add the `extra` pages after the allocated block at `pfn` to it, if they are all free."""
    if extra <= 0 or buddy.grouping is not None:
        return extra == 0
    n = buddy.blocks[pfn]
    lo, hi = pfn + n, pfn + n + extra
    sec = buddy.section_of(pfn)
    if sec is None or not sec.contains(lo, extra):
        return False
    zone = buddy.zones[sec.zone_idx]
    if zone.nr_free - extra < zone.wmark_min:
        return False
    cut: list[tuple[int, int]] = []
    p = lo
    while p < hi:
        got = _free_block_at(buddy, sec, zone, p)
        if got is None:
            return False
        cut.append(got)
        p = got[0] + (1 << got[1])
    for head, order in cut:  # take the free blocks off their lists, give back what lies outside
        del zone.free_area[order][head]
        sec.state[head - sec.start_pfn] = PG_NONE
        zone.nr_free -= 1 << order
        end = head + (1 << order)
        if head < lo:
            _list_range(buddy, sec, zone, head, lo)
        if end > hi:
            _list_range(buddy, sec, zone, hi, end)
    buddy.blocks[pfn] = n + extra
    buddy.used_pages += extra
    buddy.used_high_water = max(buddy.used_high_water, buddy.used_pages)
    zone.min_free_seen = min(zone.min_free_seen, zone.nr_free)
    return True
