"""Who owns each physical page: the data behind the memory-map picture (`kalloc replay --plot`).

`page_map(ka, heap, vm)` walks every section once (O(pages)) and gives each page
one owner label (OWNERS, in legend order):

    free          in a buddy free list
    reserved      firmware image, memmap, stacks (boot-time reservations)
    page table    kalloc's vmalloc/arena page tables
    slab cache    a page of a slab (kmalloc caches, user caches, the slab heap's caches)
    large kmalloc a page-level kmalloc object (above 8 KiB)
    pages         alloc_pages / alloc_pages_exact blocks
    DMA           dma_alloc_coherent buffers and DMA pool pages
    vmalloc       pages mapped by vmalloc / vmap
    arena         pages committed by the arena heap
    heap          regions of the firstfit heap and page-level malloc objects

Invariants:
 1. Every page of every section gets exactly one label.
 2. The map is a pure function of allocator state (no side effects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.dma import PoolPage
from kalloc.page import PAGE_SHIFT, PG_RESERVED
from kalloc.slab import Slab
from kalloc.stats import KIND_DMA_COHERENT, KIND_KMALLOC, KIND_MALLOC

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.heaps.base import Heap
    from kalloc.vmalloc import Vmalloc

OWNERS: tuple[str, ...] = ("free", "reserved", "page table", "slab cache", "large kmalloc", "pages", "DMA",
                           "vmalloc", "arena", "heap")  # fmt: skip
COLOURS: tuple[str, ...] = ("#f2f2f2", "#404040", "#8c564b", "#1f77b4", "#17becf", "#bcbd22", "#d62728",
                            "#9467bd", "#ff7f0e", "#2ca02c")  # fmt: skip
_IDX = {name: i for i, name in enumerate(OWNERS)}
_ALIASES = {"slab": "slab cache"}  # a heap's own slab pages (Heap.owned_pfns labels)


def page_map(
    ka: Kalloc, heap: Heap | None = None, vm: Vmalloc | None = None
) -> list[tuple[str, int, bytearray]]:
    """[(bank name, start pfn, one OWNERS index per page)] for every section, in address order."""
    buddy = ka.buddy
    other = {}
    if vm is not None:
        for pfn in vm.table_pfns():
            other[pfn] = _IDX["page table"]
        for area in vm.areas.values():
            for pfn in area.pfns:
                other[pfn] = _IDX["vmalloc"]
    if heap is not None:
        for pfn, label in heap.owned_pfns().items():  # an unknown label: plain pages, never a KeyError
            other[pfn] = _IDX.get(_ALIASES.get(label, label), _IDX["pages"])
    live = ka.live
    out = []
    for sec in buddy.sections:
        base = sec.start_pfn
        codes = bytearray([_IDX["pages"]]) * sec.npages
        for i, st in enumerate(sec.state):
            if st == PG_RESERVED:
                codes[i] = _IDX["reserved"]
        zone = buddy.zones[sec.zone_idx]
        for order, heads in enumerate(zone.free_area):
            n = 1 << order
            for pfn in heads:
                if sec.contains(pfn):
                    codes[pfn - base : pfn - base + n] = bytes([_IDX["free"]]) * n
        for pfn, npages in buddy.blocks.items():
            if not sec.contains(pfn):
                continue
            code = other.get(pfn)
            if code is None:
                owner = ka.page_owner.get(pfn)
                if isinstance(owner, Slab):
                    code = _IDX["slab cache"]
                elif isinstance(owner, PoolPage):
                    code = _IDX["DMA"]
                else:
                    rec = live.get(pfn << PAGE_SHIFT)
                    kind = rec[1] if rec else -1
                    code = {KIND_KMALLOC: _IDX["large kmalloc"], KIND_MALLOC: _IDX["heap"],
                            KIND_DMA_COHERENT: _IDX["DMA"]}.get(kind, _IDX["pages"])  # fmt: skip
            for p in range(pfn, pfn + npages):
                codes[p - base] = other.get(p, code)
        out.append((sec.bank.name, base, codes))
    return out


def count_owners(pmap: list[tuple[str, int, bytearray]]) -> dict[str, int]:
    """Pages per owner label (only labels that occur), in legend order."""
    counts = [0] * len(OWNERS)
    for _name, _base, codes in pmap:
        for i in range(len(OWNERS)):
            counts[i] += codes.count(i)
    return {OWNERS[i]: c for i, c in enumerate(counts) if c}
