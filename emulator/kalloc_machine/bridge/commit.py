"""Commit accounting: where every committed page of a run went, its high-water marks, and
how close the run came to failing.

Without demand paging every page handed out is committed memory the moment it is
allocated (docs/allocator.md), so "what is committed" is "what the buddy allocator has handed
out", by kind:

    reserved      firmware image, struct page array, KASAN shadow (boot-time, constant)
    page_tables   kalloc's vmalloc/arena page tables
    slab          pages of slab caches (kmalloc classes, user caches, slab-heap caches)
    large_kmalloc page-level kmalloc and malloc objects (above the largest class)
    pages         alloc_pages / alloc_pages_exact blocks (vmap maps some of these)
    dma           dma_alloc_coherent buffers and DMA pool pages
    vmalloc       pages mapped by vmalloc
    arena         pages committed by the arena heap (--heap arena)
    heap          everything else the C library face holds (firstfit regions)

`CommitMeter` keeps the page-level objects current through the allocator's listeners
(one dict operation per page-level alloc or free; slab objects' allocs and frees are not
sent to it: `page_level_only`, kalloc.live) and
samples the kinds after every hypercall that changed the number of used pages, so the
high-water marks are exact at hypercall granularity (nothing else allocates).

"How close to failing": per zone, the lowest free-page count seen against the min
watermark (headroom = lowest - min; at or below 0 only atomic/__GFP_HIGH callers could
still allocate there), and the allocation failures reported.

Invariants:
 1. The kinds add up to the buddy allocator's used pages (heap is the remainder, never < 0).
 2. Sampling reads allocator state only; it never changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc.kinds import KIND_DMA_COHERENT, KIND_KMALLOC, KIND_MALLOC, KIND_PAGES, KIND_PAGES_EXACT
from kalloc.live import page_level_only
from kalloc.page import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc.errors import KallocError
    from kalloc.vmalloc import Vmalloc
    from kalloc_machine.bridge.doorbell import Bridge

KINDS: tuple[str, ...] = ("reserved", "page_tables", "slab", "large_kmalloc", "pages", "dma", "vmalloc",
                          "arena", "heap")  # fmt: skip
_LABEL = {KIND_KMALLOC: "large_kmalloc", KIND_MALLOC: "large_kmalloc", KIND_PAGES: "pages",
          KIND_PAGES_EXACT: "pages", KIND_DMA_COHERENT: "dma"}  # fmt: skip


class CommitMeter:
    """Committed pages per kind over one run (module docstring)."""

    def __init__(self, ka: Kalloc, vm: Vmalloc) -> None:
        self.ka = ka
        self.vm = vm
        self._buddy = ka.buddy
        self._reserved = sum(self._buddy.reserved_bytes().values()) // PAGE_SIZE
        self._objects: dict[int, tuple[str, int]] = {}  # page-level object addr -> (kind, pages)
        self._level = dict.fromkeys(("large_kmalloc", "pages", "dma"), 0)
        self.high_water = dict.fromkeys(KINDS, 0)
        self.peak_used = -1
        self.at_peak: dict[str, int] = {}
        self.ka.listeners.append(self._on_event)
        self.sample()

    # -- tracking ------------------------------------------------------------------------------

    @page_level_only  # returns at once for a slab object: the slab paths need not call it
    def _on_event(self, event: str, addr: int, size: int, usable: int) -> None:
        if addr & (PAGE_SIZE - 1):
            return  # never a page-level object
        old = self._objects.pop(addr, None)
        if old is not None:
            self._level[old[0]] -= old[1]
        if event == "free":
            return
        pfn = addr >> PAGE_SHIFT
        ka = self.ka
        if pfn in ka.page_owner:
            return  # an object inside a slab or pool page
        npages = ka.buddy.blocks.get(pfn)
        rec = ka.live.get(addr)
        label = _LABEL.get(rec.kind) if rec is not None else None
        if npages is None or label is None:
            return
        self._objects[addr] = (label, npages)
        self._level[label] += npages

    def pages(self) -> dict[str, int]:
        """Committed pages per kind now."""
        ka, vm = self.ka, self.vm
        out = dict.fromkeys(KINDS, 0)
        out["reserved"] = self._reserved
        out["page_tables"] = vm.page_table_pages
        out["slab"] = sum(len(c.slabs) << c.order for c in ka.slub.all_caches)
        out.update(self._level)
        out["dma"] += sum(len(p.pages) << p.order for p in ka.pools.all_pools)
        out["vmalloc"] = vm.pages["vmalloc"]
        out["arena"] = vm.pages["arena"]
        used = self._buddy.used_pages + self._reserved
        out["heap"] = max(0, used - sum(out.values()))
        return out

    def sample(self) -> None:
        used = self._buddy.used_pages
        now = self.pages()
        hw = self.high_water
        for k, v in now.items():
            if v > hw[k]:
                hw[k] = v
        if used > self.peak_used:
            self.peak_used = used
            self.at_peak = now

    # -- the report ----------------------------------------------------------------------------

    def section(self, errors: list[KallocError]) -> dict[str, Any]:
        """The report's `commit` key (docs/user-guide.md, "Commit accounting")."""
        self.sample()
        now = self.pages()
        zones = []
        for z in self._buddy.populated_zones:
            zones.append({
                "name": z.name,
                "managed_pages": z.managed,
                "free_pages": z.nr_free,
                "lowest_free_pages": z.min_free_seen,
                "min_watermark": z.wmark_min,
                "headroom_pages": z.min_free_seen - z.wmark_min,
                "low_watermark_hits": z.low_wmark_hits,
            })  # fmt: skip
        ram = self._buddy.ram_bytes
        return {
            "bytes": {k: v * PAGE_SIZE for k, v in now.items()},
            "high_water_bytes": {k: v * PAGE_SIZE for k, v in self.high_water.items()},
            "at_peak_bytes": {k: v * PAGE_SIZE for k, v in self.at_peak.items()},
            "committed_bytes": sum(now.values()) * PAGE_SIZE,
            "peak_committed_bytes": (self.peak_used + self._reserved) * PAGE_SIZE,
            "ram_bytes": ram,
            "zones": zones,
            "allocation_failures": sum(e.fields.get("count", 1) for e in errors if e.kind == "oom"),
        }


def install(bridge: Bridge, ka: Kalloc, vm: Vmalloc) -> CommitMeter:
    """Meter `ka` (and `vm`'s pages): sample after every hypercall that moved the used-page count
    (the bridge's page watchers: one comparison in the bridge for every other call)."""
    meter = CommitMeter(ka, vm)
    bridge.page_watchers.append(meter.sample)
    return meter
