"""SLUB's paths over the structures of kalloc.slab (step 1: the part's name and its tables).

Data structure:
    by_handle: dict[handle, KmemCache]   user caches (kmem_cache_create), by handle
    all_caches: list[KmemCache]          every cache, kalloc's own included, oldest first
    quarantine: Quarantine | None        KASAN's freed-object delay (sanitize="kasan")

Invariants:
 1. all_caches holds every cache not destroyed; by_handle exactly the user ones.
"""

from __future__ import annotations

from kalloc.debug import Quarantine
from kalloc.slab import KmemCache


class Slub:
    """The slab allocator's tables."""

    def __init__(self, quarantine: Quarantine | None) -> None:
        self.by_handle: dict[int, KmemCache] = {}
        self.all_caches: list[KmemCache] = []
        self.next_handle = 1
        self.quarantine = quarantine
