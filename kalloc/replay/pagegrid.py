"""The page grid: what the memory pictures show, one cell per physical page (issue 18).

`snapshot(ka, heap, vm, objects)` takes, in one pass over allocator state:

    pmap       the owner of every page (kalloc.replay.pagemap.page_map: OWNERS codes)
    fullness   {pfn: objects in use / slots} for every page of a slab (a slab's pages share it)
    areas      each vmalloc area's pages, in virtual order (the picture links them: an area is
               contiguous in the vmalloc window, its pages are scattered in RAM)
    tags       {pfn: tag} when live objects with tags are given: the tag holding most of the
               page's live bytes (ties: the first tag in name order); pages no object touches
               have none (they keep their owner colour)

`window(grid, width)` is the zoom: per bank, the rows (of `width` pages) from the first to the
last row that holds an allocated page, so a 64 KiB heap on a 16 MiB board fills the picture
instead of being a few pixels of it.

Invariants:
 1. A snapshot is a pure function of allocator state and the objects given (no side effects).
 2. Every page of every section is in `pmap` once; `fullness` and `tags` only name pages of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.replay.pagemap import OWNERS, page_map
from kalloc.slab import Slab

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.heaps.base import Heap
    from kalloc.vmalloc import Vmalloc

PageMap = list[tuple[str, int, bytearray]]
_IDLE = (OWNERS.index("free"), OWNERS.index("reserved"))


@dataclass(slots=True)
class Grid:
    pmap: PageMap
    fullness: dict[int, float] = field(default_factory=dict)
    areas: list[list[int]] = field(default_factory=list)
    tags: dict[int, str] = field(default_factory=dict)

    def owner(self, pfn: int) -> str:
        """The owner label of page `pfn` ("" when it is in no section)."""
        for _name, base, codes in self.pmap:
            if base <= pfn < base + len(codes):
                return OWNERS[codes[pfn - base]]
        return ""


def snapshot(ka: Kalloc, heap: Heap | None = None, vm: Vmalloc | None = None,
             objects: Iterable[tuple[int, int, str]] = ()) -> Grid:  # fmt: skip
    """The grid now (module docstring). objects: live (address, size, tag); virtual ones are translated."""
    fullness = {}
    for pfn, owner in ka.page_owner.items():
        if isinstance(owner, Slab) and owner.nobjs:
            fullness[pfn] = owner.inuse / owner.nobjs
    areas = [list(a.pfns) for _addr, a in sorted(vm.areas.items()) if a.pfns] if vm is not None else []
    return Grid(page_map(ka, heap, vm), fullness, areas, page_tags(objects, vm))


def page_tags(objects: Iterable[tuple[int, int, str]], vm: Vmalloc | None = None) -> dict[int, str]:
    """{pfn: the tag with the most live bytes on it} for objects (address, size, tag)."""
    per: dict[int, dict[str, int]] = {}
    pte = vm.pte if vm is not None else {}
    for addr, size, tag in objects:
        end = addr + max(size, 1)
        a = addr
        while a < end:
            nxt = min(end, (a | (PAGE_SIZE - 1)) + 1)
            vpn = a >> PAGE_SHIFT
            pfn = pte.get(vpn, vpn) if pte else vpn  # a virtual page (vmalloc, arena) -> its frame
            d = per.setdefault(pfn, {})
            d[tag] = d.get(tag, 0) + nxt - a
            a = nxt
    return {pfn: max(sorted(d), key=lambda t: d[t]) for pfn, d in per.items()}


def window(grid: Grid, width: int) -> list[tuple[str, int, int]]:
    """Per bank (name, first pfn shown, pages shown): whole rows of `width` around the allocated pages."""
    out = []
    for name, base, codes in grid.pmap:
        used = [i for i, c in enumerate(codes) if c not in _IDLE]
        if not used:
            out.append((name, base, min(len(codes), width)))
            continue
        lo = used[0] // width * width
        hi = min(len(codes), (used[-1] // width + 1) * width)
        out.append((name, base + lo, hi - lo))
    return out
