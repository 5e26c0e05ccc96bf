"""Kind codes of live objects: which API allocated an object, and how reports name it.

A live record's `kind` is one of the KIND_* codes below; KIND_NAMES[code] is its text
in reports and Allocation.kind (":<name>" is added for caches and pools), and
KIND_ALLOC_API[code] the function that allocates it ("wrong API pair" messages).

Invariants:
 1. The three tables are indexed by the same codes, 0..6, in the same order.
 2. HEAP_KINDS are the kinds with a red-zoned tail: kmalloc and malloc objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kalloc.slab import KmemCache

# Kind codes of a live record; the kind text is KIND_NAMES[code] (":<name>" added
# for caches and pools).
KIND_KMALLOC = 0
KIND_MALLOC = 1
KIND_PAGES = 2
KIND_PAGES_EXACT = 3
KIND_DMA_COHERENT = 4
KIND_CACHE = 5
KIND_DMA_POOL = 6
KIND_NAMES: tuple[str, ...] = (
    "kmalloc",
    "malloc",
    "pages",
    "pages_exact",
    "dma_coherent",
    "cache",
    "dma_pool",
)
# The API that allocates each kind, for "wrong API pair" messages.
KIND_ALLOC_API: tuple[str, ...] = (
    "kmalloc",
    "malloc",
    "alloc_pages",
    "alloc_pages_exact",
    "dma_alloc_coherent",
    "kmem_cache_alloc",
    "dma_pool_alloc",
)
HEAP_KINDS = (KIND_KMALLOC, KIND_MALLOC)  # objects with a red-zoned tail: kmalloc and malloc



def cache_kind_name(cache: KmemCache) -> str:
    """The kind text of a cache's objects: its name for kalloc's own caches, "cache:<name>" else."""
    return cache.name if cache.internal else f"cache:{cache.name}"
