"""Heap policies behind the C library face, selected with `--heap=NAME`.

    kmalloc    kalloc.libc as it is: the kmalloc size classes (Linux's), pages above 8 KiB
    slab       finer slab size classes (4 per doubling), lean slab orders, exact pages above 8 KiB
    firstfit   boundary tags, address-ordered first fit with coalescing (heap_4 / K&R),
               regions of pages from the buddy allocator
    arena      the same fit in one range of the arena window, committed page by page at
               its top and trimmed there (sysmalloc/systrim without demand paging)
    segfit     exact-fit slabs for busy size classes, best fit with coalescing, page-exact
               large blocks, regions and blocks growing in place (kalloc.heaps.pageclaim),
               the tail trimmed: the console-style default of `kalloc replay`
    tlsf       TLSF's two-level good fit over firstfit's regions: the reference

DEFAULT_HEAP is the policy `kalloc replay` and `kalloc bench` use unless told
(kalloc.replay.DEFAULT_HEAP names the same); it was chosen by measurement
(docs/performance.md, "Heap utilization"). `kalloc run` keeps `kmalloc`.

Invariants:
 1. HEAPS names every policy; make_heap(name) builds exactly HEAPS[name] (the
    arena over the given Vmalloc's page tables when one is passed).
 2. Every policy follows kalloc.libc's rules through ka.libc_api (kalloc.heaps.base).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.heaps.arena import ArenaHeap
from kalloc.heaps.base import Heap
from kalloc.heaps.firstfit import FirstFitHeap
from kalloc.heaps.kmallocheap import KmallocHeap
from kalloc.heaps.segfit import SegFitHeap
from kalloc.heaps.slabheap import SlabHeap
from kalloc.heaps.tlsf import TlsfHeap

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.vmalloc import Vmalloc

HEAPS: dict[str, type[Heap]] = {
    "kmalloc": KmallocHeap,
    "slab": SlabHeap,
    "firstfit": FirstFitHeap,
    "arena": ArenaHeap,
    "segfit": SegFitHeap,
    "tlsf": TlsfHeap,
}
DEFAULT_HEAP = "segfit"


def make_heap(name: str, ka: Kalloc, vm: Vmalloc | None = None) -> Heap:
    """The heap policy `name` over `ka` (the arena shares `vm`'s page tables when given)."""
    if name not in HEAPS:
        raise ValueError(f"unknown heap {name!r} (one of {', '.join(HEAPS)})")
    if name == "arena":
        return ArenaHeap(ka, vm)
    return HEAPS[name](ka)


__all__ = [
    "DEFAULT_HEAP",
    "HEAPS",
    "ArenaHeap",
    "FirstFitHeap",
    "Heap",
    "KmallocHeap",
    "SlabHeap",
    "make_heap",
]
