"""The "slab" heap: the kernel-style C heap with finer size classes and exact pages for large requests.

Same machinery as the kmalloc heap — SLUB caches of the allocator (red zones,
poison, sites, leak scans and check() all apply), objects of kind "malloc" —
with three differences that raise utilization:

  1. Size classes 4 per power of two from 64 bytes (jemalloc's spacing: at most
     25% internal waste, 12.5% on average), multiples of 16 so every class
     keeps the 16-byte alignment of requests >= 16; 8 and 16..64 by 16 below.
     kmalloc keeps Linux's classes; these are private caches named malloc-N.
  2. Slab order: the smallest order (<= 3) that wastes at most 1/8 of the slab,
     not SLUB's "8 objects per slab" — a cache of large objects should not
     commit 32 KiB for its first object.
  3. An emptied slab goes back to the buddy allocator at once (min_partial 0;
     only the current slab is kept), so freed memory stops counting as
     committed.

Requests above 8192 bytes take exactly ceil(size / 4096) pages, as in the
kmalloc heap.

Invariants:
 1. SLAB_HEAP_CLASSES is increasing; _by_size[n] is the smallest class >= n.
 2. Every object is a malloc record of the allocator (ka.live), in a malloc-N
    slot or at the head of exactly pages_for(size) pages.
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import TASK, Caller
from kalloc.heaps.base import Heap
from kalloc.libc import MALLOC_ALIGN
from kalloc.page import PAGE_SIZE, pages_for
from kalloc.slab import SLUB_MAX_ORDER, KmemCache
from kalloc.stats import KIND_MALLOC

SLAB_HEAP_MAX = 8192  # above: exact pages


def slab_heap_classes() -> tuple[int, ...]:
    """8, 16, 32, 48, 64, then four classes per doubling (80, 96, 112, 128, 160, ...) up to 8192."""
    out = [8, 16, 32, 48, 64]
    base = 64
    while base < SLAB_HEAP_MAX:
        out.extend(base + base // 4 * i for i in range(1, 5))
        base *= 2
    return tuple(out)


SLAB_HEAP_CLASSES = slab_heap_classes()


def heap_slab_order(stride: int, max_order: int) -> int:
    """The smallest order that holds one object and wastes at most 1/8 of the slab (else least waste)."""
    best, best_waste = None, None
    for order in range(min(SLUB_MAX_ORDER, max_order) + 1):
        slab = PAGE_SIZE << order
        if slab < stride:
            continue
        waste = (slab % stride) / slab
        if waste <= 1 / 8:
            return order
        if best_waste is None or waste < best_waste:
            best, best_waste = order, waste
    assert best is not None, "a heap class does not fit in the largest slab"
    return best


class SlabHeap(Heap):
    """malloc on private fine-grained slab caches (module docstring)."""

    name = "slab"

    def __init__(self, ka) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ka)
        caches = {}
        for size in SLAB_HEAP_CLASSES:
            align = 8 if size < MALLOC_ALIGN else MALLOC_ALIGN
            cache = ka.slub.make_cache(f"malloc-{size}", size, align, 0, None, internal=True)
            assert cache is not None
            self._relayout(cache, heap_slab_order(cache.stride, ka.config.max_order))
            cache.min_partial = 0
            caches[size] = cache
        self.caches = caches
        by_size: list[KmemCache] = []
        it = iter(SLAB_HEAP_CLASSES)
        cls = next(it)
        for n in range(SLAB_HEAP_MAX + 1):
            while n > cls:
                cls = next(it)
            by_size.append(caches[cls])
        self._by_size = by_size

    def _relayout(self, cache: KmemCache, order: int) -> None:
        if order == cache.order:
            return
        cache.order = order
        cache.slab_bytes = PAGE_SIZE << order
        cache.nobjs = cache.slab_bytes // cache.stride
        cache.build_patterns(self.ka.debug)

    # -- the C library face -----------------------------------------------------------------------

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        ka = self.ka
        ka.gate.check_size(size, caller)
        if not ka.libc_api.request_ok(size, caller, "malloc"):
            return None
        return self._sized(size, G.GFP_KERNEL, caller)

    def _sized(self, size: int, gfp: int, caller: Caller) -> int | None:
        ka = self.ka
        if not ka.libc_api.within_heap_max(size, caller, gfp):
            return None
        if size <= SLAB_HEAP_MAX:
            return ka.slub.alloc(self._by_size[size], size, gfp, caller, KIND_MALLOC)
        return ka.pages.alloc_exact(size, gfp, caller, KIND_MALLOC)

    def usable_for(self, size: int) -> int:
        """The usable size malloc(size) would give."""
        if size <= SLAB_HEAP_MAX:
            return self._by_size[max(size, 1)].size
        return pages_for(size) * PAGE_SIZE

    def free(self, addr: int, caller: Caller = TASK) -> None:
        self.ka.free(addr, caller)

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        total = self.ka.libc_api.calloc_total(n, size, caller)
        if total is None:
            return None
        return self._sized(total, G.GFP_KERNEL | G.ZERO, caller)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.libc_api.realloc_object(addr, size, caller, self.malloc, self.usable_for, self._sized)

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.aligned_alloc(align, size, caller)

    def malloc_usable_size(self, addr: int) -> int:
        return self.ka.malloc_usable_size(addr)
