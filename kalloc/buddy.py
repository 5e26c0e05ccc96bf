"""The buddy page allocator: zones of page frames, split and merged in powers of two.

The textbook idea (Knowlton 1965, Linux mm/page_alloc.c): free memory is kept
in blocks of 2^order pages, each aligned to its own size. To allocate order k,
take a free block of the smallest order >= k and split it, putting the unused
upper halves back on the lower free lists. To free, look at the block's buddy
(pfn ^ (1 << order)); if it is free and of the same order, merge the two and
repeat one order up.

Data structures:
    zones[ZONE_DMA], zones[ZONE_NORMAL]   kalloc.zone.Zone (free_area, counters)
    sections                              one kalloc.page.Section per RAM bank
    blocks: dict[head pfn, npages]        every allocated block (any owner)
    reserved_pages: dict[label, pages]    reserved pages per label, and per zone

Boot (like memblock handing memory to the buddy): every bank becomes a
section of its zone; the reserved ranges (firmware image, stacks) are marked;
the memmap (Config.struct_page_size bytes per page) is carved top-down from
the highest free pages, as memblock allocates; everything else is freed into
the largest aligned blocks that fit each bank.

Invariants:
 1. Every page of every section is in exactly one of: a free block (listed
    once in its zone's free_area), an allocated block (in `blocks`), or a
    reserved range.
 2. A free block of order k starts at a pfn aligned to 2^k, lies inside one
    section, and its buddy is not a free block of order k (merging is eager).
 3. zone.nr_free equals what its free lists hold; used_pages equals the pages
    in `blocks`.
 4. Bytes add up: free + used + reserved (by label, "unusable" partial pages
    included) == the RAM of all banks.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from kalloc.errors import InvariantError
from kalloc.page import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PG_BUDDY,
    PG_HEAD,
    PG_NONE,
    PG_RESERVED,
    Section,
    pages_for,
)
from kalloc.physmem import PhysMem
from kalloc.zone import (
    NR_ZONES,
    ZONE_DMA,
    ZONE_NORMAL,
    Zone,
    watermark_ok,
)

if TYPE_CHECKING:
    from kalloc.antifrag import Grouping

LABEL_MEMMAP = "memmap"
LABEL_UNUSABLE = "unusable"  # bytes of partial pages at unaligned bank edges

_RESERVED_BYTE = bytes([PG_RESERVED])
_NONE_BYTE = bytes([PG_NONE])
_RESERVED_ONLY = bytes(1 if i == PG_RESERVED else 0 for i in range(256))  # translate(): reserved -> 1


class Buddy:
    """Zones, sections and the buddy free lists of a PhysMem."""

    def __init__(
        self,
        phys: PhysMem,
        max_order: int,
        struct_page_size: int,
        reserved: list[tuple[int, int, str]],
    ) -> None:
        self.max_order = max_order
        self.zones: list[Zone] = [Zone(i, max_order) for i in range(NR_ZONES)]
        self.sections: list[Section] = []
        self.blocks: dict[int, int] = {}
        self.reserved_pages: dict[str, int] = {}
        self.zone_reserved: list[dict[str, int]] = [{} for _ in range(NR_ZONES)]
        self.unusable_bytes = 0
        self.ram_bytes = 0
        self.memmap_bytes = 0
        self.used_pages = 0
        self.used_high_water = 0
        self.grouping: Grouping | None = None  # kalloc.antifrag (--antifrag): None, the plain buddy
        self._build_sections(phys)
        self._starts = [s.start_pfn for s in self.sections]
        for start, end, label in reserved:
            self._reserve_range(start, end, label)
        self._reserve_memmap(struct_page_size)
        for sec in self.sections:
            self._free_unreserved(sec)
        for z in self.zones:
            z.managed = z.present - sum(self.zone_reserved[z.idx].values())
            z.min_free_seen = z.nr_free

    # ---------------------------------------------------------------- boot

    def _build_sections(self, phys: PhysMem) -> None:
        for bank in phys.banks:
            self.ram_bytes += bank.size
            sec = Section(bank, ZONE_DMA if bank.dma else ZONE_NORMAL)
            self.unusable_bytes += bank.size - sec.npages * PAGE_SIZE
            if sec.npages == 0:
                continue
            self.sections.append(sec)
            zone = self.zones[sec.zone_idx]
            zone.sections.append(sec)
            zone.present += sec.npages
        self.sections.sort(key=lambda s: s.start_pfn)
        for z in self.zones:
            z.sections.sort(key=lambda s: s.start_pfn)

    def _mark_reserved(self, sec: Section, lo: int, hi: int, label: str) -> None:
        """Mark pfns [lo, hi) of `sec` reserved under `label` (pages already reserved keep theirs)."""
        i, j = lo - sec.start_pfn, hi - sec.start_pfn
        fresh = sec.state.count(_NONE_BYTE, i, j)
        sec.state[i:j] = _RESERVED_BYTE * (j - i)
        if fresh:
            self.reserved_pages[label] = self.reserved_pages.get(label, 0) + fresh
            zres = self.zone_reserved[sec.zone_idx]
            zres[label] = zres.get(label, 0) + fresh

    def _reserve_range(self, start: int, end: int, label: str) -> None:
        """Reserve every page overlapping physical [start, end)."""
        if end <= start:
            return
        lo, hi = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        for sec in self.sections:
            a, b = max(lo, sec.start_pfn), min(hi, sec.end_pfn)
            if a < b:
                self._mark_reserved(sec, a, b, label)

    def _reserve_memmap(self, struct_page_size: int) -> None:
        """Carve the memmap top-down from the highest unreserved pages (memblock's default)."""
        total_pages = sum(s.npages for s in self.sections)
        self.memmap_bytes = total_pages * struct_page_size
        need = pages_for(self.memmap_bytes)
        for sec in reversed(self.sections):
            hi = sec.npages
            while need and hi > 0:
                top = sec.state.rfind(_NONE_BYTE, 0, hi)
                if top < 0:
                    break
                bottom = sec.state.rfind(_RESERVED_BYTE, 0, top) + 1
                take = min(need, top + 1 - bottom)
                lo = top + 1 - take
                self._mark_reserved(sec, sec.start_pfn + lo, sec.start_pfn + top + 1, LABEL_MEMMAP)
                need -= take
                hi = lo
        if need:
            raise ValueError(f"RAM too small: the memmap needs {need} more pages than are free")

    def _free_unreserved(self, sec: Section) -> None:
        """Hand every unreserved run of `sec` to the buddy in the largest aligned blocks."""
        zone = self.zones[sec.zone_idx]
        pos = 0
        while True:
            i = sec.state.find(_NONE_BYTE, pos)
            if i < 0:
                return
            j = sec.state.find(_RESERVED_BYTE, i)
            if j < 0:
                j = sec.npages
            self._free_range(sec, zone, sec.start_pfn + i, j - i)
            pos = j

    # ---------------------------------------------------------------- lookup

    def section_of(self, pfn: int) -> Section | None:
        """The section holding `pfn`, or None (not RAM)."""
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i >= 0 and pfn < self.sections[i].end_pfn:
            return self.sections[i]
        return None

    def zone_of(self, pfn: int) -> Zone | None:
        sec = self.section_of(pfn)
        return self.zones[sec.zone_idx] if sec else None

    @property
    def populated_zones(self) -> list[Zone]:
        return [z for z in self.zones if z.populated]

    # ---------------------------------------------------------------- alloc

    def alloc_zonelist(self, zones: list[Zone], order: int, highest: int, alloc_flags: int) -> int | None:
        """First block of `order` from the zones in fallback order whose watermark allows it.

        Linux's get_page_from_freelist() against the min watermark (the slow
        path's mark: there is no kswapd thread to wait for).
        """
        for zone in zones:
            if watermark_ok(zone, order, zone.wmark_min, highest, alloc_flags):
                pfn = self.alloc(zone, order)
                if pfn is not None:
                    if zone.nr_free < zone.wmark_low:
                        zone.low_wmark_hits += 1
                    return pfn
        return None

    def alloc(self, zone: Zone, order: int) -> int | None:
        """Take a block of 2^order pages from `zone` (no watermark check), or None."""
        fa = zone.free_area
        if self.grouping is not None:  # pageblocks grouped by mobility or tag (kalloc.antifrag)
            got = self.grouping.choose(zone, order)
            if got is None:
                return None
            o, pfn = got
            del fa[o][pfn]
            self.grouping.taken(pfn)
        else:
            for o in range(order, self.max_order + 1):
                d = fa[o]
                if d:
                    pfn = d.popitem()[0]
                    break
            else:
                return None
        sec = self.section_of(pfn)
        assert sec is not None, "a free block lies outside every section"
        state, orders, base = sec.state, sec.order, sec.start_pfn
        while o > order:  # expand(): the upper halves go back on the lower lists
            o -= 1
            upper = pfn + (1 << o)
            fa[o][upper] = None
            state[upper - base] = PG_BUDDY
            orders[upper - base] = o
        state[pfn - base] = PG_HEAD
        orders[pfn - base] = order
        n = 1 << order
        zone.nr_free -= n
        if zone.nr_free < zone.min_free_seen:
            zone.min_free_seen = zone.nr_free
        self.blocks[pfn] = n
        self.used_pages += n
        if self.used_pages > self.used_high_water:
            self.used_high_water = self.used_pages
        return pfn

    def trim(self, pfn: int, npages: int) -> None:
        """Keep the first `npages` of the allocated block at `pfn`, free the tail.

        Linux's make_alloc_exact() frees the tail page by page and lets them
        merge; freeing it as aligned blocks reaches the same free_area.
        """
        total = self.blocks[pfn]
        if npages >= total:
            return
        sec = self.section_of(pfn)
        assert sec is not None
        self.blocks[pfn] = npages
        self.used_pages -= total - npages
        self._free_range(sec, self.zones[sec.zone_idx], pfn + npages, total - npages)

    def free(self, pfn: int) -> int:
        """Free the allocated block headed by `pfn`; returns its page count."""
        npages = self.blocks.pop(pfn)
        sec = self.section_of(pfn)
        assert sec is not None
        sec.state[pfn - sec.start_pfn] = PG_NONE
        self.used_pages -= npages
        self._free_range(sec, self.zones[sec.zone_idx], pfn, npages)
        return npages

    def _free_range(self, sec: Section, zone: Zone, pfn: int, npages: int) -> None:
        """Free [pfn, pfn+npages) as the largest aligned blocks, merging each."""
        end = pfn + npages
        max_order = self.max_order
        while pfn < end:
            order = min(max_order, (pfn & -pfn).bit_length() - 1 if pfn else max_order)
            while pfn + (1 << order) > end:
                order -= 1
            self._free_one(sec, zone, pfn, order)
            pfn += 1 << order

    def _free_one(self, sec: Section, zone: Zone, pfn: int, order: int) -> None:
        """__free_one_page(): merge with free buddies, then list the result."""
        fa = zone.free_area
        state, orders, base = sec.state, sec.order, sec.start_pfn
        zone.nr_free += 1 << order
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if buddy < base or buddy + (1 << order) > sec.end_pfn:
                break  # a block never spans two banks
            d = fa[order]
            if buddy not in d:
                break
            del d[buddy]
            state[buddy - base] = PG_NONE
            pfn &= ~(1 << order)
            order += 1
        fa[order][pfn] = None
        state[pfn - base] = PG_BUDDY
        orders[pfn - base] = order

    # ---------------------------------------------------------------- accounting

    @property
    def free_pages(self) -> int:
        return sum(z.nr_free for z in self.zones)

    @property
    def managed_pages(self) -> int:
        """Pages the allocator may ever hand out (RAM less what boot reserved): the bound of any request."""
        return sum(z.managed for z in self.zones)

    def reserved_bytes(self) -> dict[str, int]:
        """Reserved bytes by label, in label order of first use; "unusable" last."""
        out = {label: pages * PAGE_SIZE for label, pages in self.reserved_pages.items()}
        if self.unusable_bytes:
            out[LABEL_UNUSABLE] = self.unusable_bytes
        return out

    # ---------------------------------------------------------------- check

    def check(self) -> None:
        """Walk every page: invariants 1-4 of this module. Raises InvariantError."""
        for zone in self.zones:
            self._check_zone_lists(zone)
        used = 0
        for sec in self.sections:
            used += self._check_section_cover(sec)
        for pfn in self.blocks:
            s = self.section_of(pfn)
            if s is None or s.state[pfn - s.start_pfn] != PG_HEAD:
                raise InvariantError(f"allocated block {pfn:#x} is not marked as a block head in the memmap")
        if used != self.used_pages:
            raise InvariantError(f"used_pages {self.used_pages} differs from the allocated blocks' {used}")
        total = (self.free_pages + self.used_pages) * PAGE_SIZE + sum(self.reserved_bytes().values())
        if total != self.ram_bytes:
            raise InvariantError(f"free + used + reserved bytes = {total}, but RAM is {self.ram_bytes}")

    def _check_zone_lists(self, zone: Zone) -> None:
        counted = 0
        for order, d in enumerate(zone.free_area):
            for pfn in d:
                sec = self.section_of(pfn)
                if sec is None or not sec.contains(pfn, 1 << order) or sec.zone_idx != zone.idx:
                    raise InvariantError(
                        f"free block {pfn:#x} order {order} is not inside one {zone.name} bank"
                    )
                if pfn & ((1 << order) - 1):
                    raise InvariantError(f"free block {pfn:#x} is not aligned to its order {order}")
                i = pfn - sec.start_pfn
                if sec.state[i] != PG_BUDDY or sec.order[i] != order:
                    raise InvariantError(
                        f"free block {pfn:#x} order {order} is not marked free in the memmap"
                    )
                buddy = pfn ^ (1 << order)
                if order < self.max_order and buddy in d and sec.contains(min(pfn, buddy), 2 << order):
                    raise InvariantError(
                        f"free buddies {pfn:#x} and {buddy:#x} of order {order} were not merged"
                    )
                counted += 1 << order
        if counted != zone.nr_free:
            raise InvariantError(f"zone {zone.name} nr_free {zone.nr_free} differs from its lists' {counted}")

    def _check_section_cover(self, sec: Section) -> int:
        """Every page covered exactly once; returns the allocated pages found."""
        cover = sec.state.translate(_RESERVED_ONLY)
        used = 0
        for i, st in enumerate(sec.state):
            if st == PG_BUDDY:
                n = 1 << sec.order[i]
            elif st == PG_HEAD:
                n = self.blocks.get(sec.start_pfn + i, 0)
                if not n:
                    raise InvariantError(f"page {sec.start_pfn + i:#x} is marked allocated but owns no block")
                used += n
            else:
                continue
            if i + n > sec.npages or cover.find(b"\x01", i, i + n) >= 0:
                raise InvariantError(
                    f"block at pfn {sec.start_pfn + i:#x} overlaps another block or a bank end"
                )
            cover[i : i + n] = b"\x01" * n
        first = cover.find(b"\x00")
        if first >= 0:
            raise InvariantError(f"page {sec.start_pfn + first:#x} is neither free, allocated nor reserved")
        return used
