"""Exact-fit slab classes for the segfit heap: one slot size per request size, no per-object header.

A class is a slot size: the request rounded up to its alignment (8 bytes below 16,
16 from 16 on), so a slot is exactly what a 16-aligned C object needs and a 448-byte
request never takes a 512-byte slot. A slab is a buddy block of 1, 2 or 4 pages cut
into slots from its first byte; the free slots form a list (kept here as a min-heap
of slot indices: the lowest free slot is taken first, so slabs fill from the front).
An emptied slab goes back to the buddy allocator at once — that is how binary's
freed 448-byte slots become pages for its 512-byte objects.

Metadata, honestly: an object costs nothing but its slot (a free slot holds the
free-list link, in the slot itself). A slab's descriptor — slot size, slots in use,
free-list head, the links of its class's partial list — is what SLUB keeps in the
page's `struct page`, which the machine already reserves for every page
(Buddy's "memmap" reservation), so it is not heap memory; kalloc's own slab heaps
are modelled the same way.

Span: a class's first slabs are one page; once it holds 4 slabs, new slabs take the
span of 1, 2 or 4 pages that wastes the least of the slab (ties: the smaller).

Invariants (check() proves them):
 1. Every slab is an allocated buddy block of exactly `npages` pages, and
    used + len(free) == nslots.
 2. A slab with no slot in use is not kept (freed at the free that emptied it).
 3. partial[slot] lists, in address order, exactly the slabs of that class with a free slot.
"""

from __future__ import annotations

import bisect
import heapq
from typing import TYPE_CHECKING

from kalloc.errors import InvariantError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.config import Caller

SLAB_MAX = 1024  # largest slot size served by slabs
SPANS = (1, 2, 4)  # slab sizes in pages
WIDE_AFTER = 4  # slabs a class holds before it may take wider slabs


def slot_for(size: int) -> int:
    """The slot a request of `size` bytes takes: 8, then multiples of 16 (its alignment)."""
    if size <= 8:
        return 8
    return (size + 15) & ~15


class Slab:
    """One slab: a buddy block of `npages` pages cut into `nslots` slots of `slot` bytes."""

    __slots__ = ("free", "npages", "nslots", "pfn", "slot", "used")

    def __init__(self, pfn: int, npages: int, slot: int) -> None:
        self.pfn, self.npages, self.slot = pfn, npages, slot
        self.nslots = (npages << PAGE_SHIFT) // slot
        self.free = list(range(self.nslots))  # a sorted list is a valid min-heap
        self.used = 0

    @property
    def base(self) -> int:
        return self.pfn << PAGE_SHIFT


def span_for(slot: int, nslabs: int) -> int:
    """Pages for a new slab of class `slot` that already holds `nslabs` slabs."""
    if nslabs < WIDE_AFTER:
        return max(1, -(-slot // PAGE_SIZE))
    return min(SPANS, key=lambda n: (((n << PAGE_SHIFT) % slot) / (n << PAGE_SHIFT), n))


class SlabClasses:
    """Every exact-fit class of one heap (module docstring)."""

    def __init__(self, ka: Kalloc) -> None:
        self.ka = ka
        self.by_pfn: dict[int, Slab] = {}  # every page of every slab -> its slab
        self.partial: dict[int, list[int]] = {}  # slot -> sorted head pfns of slabs with a free slot
        self.nslabs: dict[int, int] = {}  # slot -> slabs held

    def slab_of(self, addr: int) -> Slab | None:
        return self.by_pfn.get(addr >> PAGE_SHIFT)

    def holds(self, slot: int) -> bool:
        return self.nslabs.get(slot, 0) > 0

    def alloc(self, slot: int, gfp: int, caller: Caller) -> int | None:
        """A free slot of class `slot` (a new slab when none is free), or None when memory is out."""
        part = self.partial.setdefault(slot, [])
        if not part:
            npages = span_for(slot, self.nslabs.get(slot, 0))
            pfn = self.ka.pages.alloc_block(gfp & ~0x100, get_order(npages << PAGE_SHIFT), caller, slot)
            if pfn is None:
                return None
            slab = Slab(pfn, npages, slot)
            for p in range(pfn, pfn + npages):
                self.by_pfn[p] = slab
            self.nslabs[slot] = self.nslabs.get(slot, 0) + 1
            bisect.insort(part, pfn)
        slab = self.by_pfn[part[0]]
        i = heapq.heappop(slab.free)
        slab.used += 1
        if not slab.free:
            del part[0]
        return slab.base + i * slot

    def free(self, addr: int) -> None:
        """Give the slot at `addr` back; an emptied slab goes back to the buddy allocator."""
        slab = self.by_pfn[addr >> PAGE_SHIFT]
        part = self.partial[slab.slot]
        if not slab.free:
            bisect.insort(part, slab.pfn)
        heapq.heappush(slab.free, (addr - slab.base) // slab.slot)
        slab.used -= 1
        if slab.used == 0:
            part.pop(bisect.bisect_left(part, slab.pfn))
            for p in range(slab.pfn, slab.pfn + slab.npages):
                del self.by_pfn[p]
            self.nslabs[slab.slot] -= 1
            self.ka.buddy.free(slab.pfn)

    def slabs(self) -> list[Slab]:
        return sorted({id(s): s for s in self.by_pfn.values()}.values(), key=lambda s: s.pfn)

    def check(self, live_in_slabs: int) -> None:
        """Invariants 1-3, and that the slabs hold exactly `live_in_slabs` objects."""
        used = 0
        for s in self.slabs():
            if self.ka.buddy.blocks.get(s.pfn) != s.npages or s.used + len(s.free) != s.nslots:
                raise InvariantError(f"segfit slab {s.base:#x} is not an allocated block of its pages")
            if s.used == 0:
                raise InvariantError(f"segfit slab {s.base:#x} is empty but kept")
            if (bisect.bisect_left(self.partial[s.slot], s.pfn) < len(self.partial[s.slot])
                    and self.partial[s.slot][bisect.bisect_left(self.partial[s.slot], s.pfn)] == s.pfn
                    ) != bool(s.free):  # fmt: skip
                raise InvariantError(f"segfit slab {s.base:#x} is (not) on its class's partial list")
            used += s.used
        if used != live_in_slabs:
            raise InvariantError(f"segfit slabs hold {used} objects, the heap counts {live_in_slabs}")
