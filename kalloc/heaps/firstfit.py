"""The "firstfit" heap: FreeRTOS heap_4 / K&R malloc over pages from the buddy allocator.

A contrasting general-purpose policy: one address-ordered free list of
boundary-tagged blocks (kalloc.heaps.fit) across regions of physically
contiguous pages. When no free block fits, the heap asks the buddy allocator
for a new region (K&R's morecore): at least GROW_PAGES pages, or exactly as
many as the request needs, trimmed to whole pages like alloc_pages_exact. A
region that starts where another ends is merged into it, so neighbouring
blocks coalesce across the seam. A region that becomes entirely free goes back
to the buddy allocator at once — the only way this heap ever shrinks: a
region with one live object stays committed (the fragmentation the arena and
the slab heap are compared against).

Invariants (check() proves them):
 1. A region is exactly the pages of its buddy blocks, each an allocated block.
 2. A region with no live object does not outlive the free that emptied it.
"""

from __future__ import annotations

from kalloc.config import Caller
from kalloc.heaps.fit import FitRegion, grow_need
from kalloc.heaps.fitheap import FitHeap
from kalloc.page import PAGE_SHIFT, pages_for

GROW_PAGES = 1  # one page: measured best (docs/performance.md); adjacent regions merge anyway


class FirstFitHeap(FitHeap):
    """malloc as address-ordered first fit with coalescing (module docstring)."""

    name = "firstfit"
    region_type: type[FitRegion] = FitRegion  # the tlsf heap's regions search their own way

    def __init__(self, ka) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ka)
        self._blocks: dict[int, list[tuple[int, int]]] = {}  # region start -> [(pfn, npages)]

    def _grow(self, size: int, align: int, gfp: int, caller: Caller) -> bool:
        npages = max(GROW_PAGES, pages_for(grow_need(size, align)))
        pfn = self.exact_pages(npages, gfp, size, caller)
        if pfn is None:
            return False
        start, end = pfn << PAGE_SHIFT, (pfn + npages) << PAGE_SHIFT
        for r in self.regions:
            if r.end == start:  # physically adjacent: one region, blocks coalesce across the seam
                r.grow(end)
                self._blocks[r.start].append((pfn, npages))
                return True
        region = self.region_type(start, end)
        self.add_region(region)
        self._blocks[start] = [(pfn, npages)]
        return True

    def _after_free(self, region: FitRegion) -> None:
        if not region.is_empty():
            return
        self.drop_region(region)
        for pfn, _npages in self._blocks.pop(region.start):
            self.ka.buddy.free(pfn)

    def owned_pfns(self) -> dict[int, str]:
        return {
            p: "heap" for blocks in self._blocks.values() for pfn, n in blocks for p in range(pfn, pfn + n)
        }

    def check(self) -> None:
        super().check()
        from kalloc.errors import InvariantError

        for r in self.regions:
            pages = sum(n for _p, n in self._blocks[r.start])
            if pages << PAGE_SHIFT != r.end - r.start:
                raise InvariantError(f"firstfit region {r.start:#x} is not exactly its blocks' pages")
            for pfn, n in self._blocks[r.start]:
                if self.ka.buddy.blocks.get(pfn) != n:
                    raise InvariantError(f"firstfit block {pfn << PAGE_SHIFT:#x} is not an allocated block")
