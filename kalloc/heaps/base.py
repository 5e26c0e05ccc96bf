"""The interface every heap policy behind the C library face provides.

A heap serves malloc, free, calloc, realloc, aligned_alloc and
malloc_usable_size for one `Kalloc`, taking its memory from the buddy
allocator, and says which pages it holds (for the memory map) and which objects
are live (for leak scans and replay checks).

Policies (kalloc.heaps.HEAPS): "kmalloc" (today's libc face on the kmalloc
classes), "slab" (finer size classes, exact pages for large requests),
"firstfit" (boundary tags, address-ordered first fit with coalescing over
pages from the buddy allocator), "arena" (the same fit over one growable
range of the arena window, committed and trimmed page by page at its top),
"segfit" (slabs, best fit, whole pages, growth in place) and "tlsf" (TLSF's good fit).

Invariants:
 1. Every heap follows the policies of kalloc.libc for zero sizes, realloc(p, 0),
    calloc overflow, alignment and heap_max, so a trace means the same under
    every policy; only where the bytes come from differs.
 2. A heap never hands out memory it has not committed: pages are allocated
    (and, in the arena, mapped) before the pointer is returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.config import TASK, Caller
from kalloc.page import PAGE_SHIFT, get_order

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.stats import Allocation


class Heap:
    """Base class: the C library face of one policy over a Kalloc."""

    name = "?"
    page_label = "heap"  # the memory map's colour for pages this heap holds itself

    def __init__(self, ka: Kalloc) -> None:
        self.ka = ka

    def exact_pages(self, npages: int, gfp: int, size: int, caller: Caller) -> int | None:
        """The first pfn of `npages` pages from the buddy allocator (a block of the order that
        covers them, its tail given back), for a request of `size` bytes; None when it failed
        (the failure reported as the page allocator reports it)."""
        ka = self.ka
        order = get_order(npages << PAGE_SHIFT)
        if order > ka.config.max_order:
            ka.pages.too_large(gfp, size, caller, f"{size} bytes exceed the largest block")
            return None
        pfn = ka.pages.alloc_block(gfp & ~0x100, order, caller, size)
        if pfn is not None:
            ka.buddy.trim(pfn, npages)
        return pfn

    # -- the C library face (subclasses implement) -----------------------------------------------
    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        raise NotImplementedError

    def free(self, addr: int, caller: Caller = TASK) -> None:
        raise NotImplementedError

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        raise NotImplementedError

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        raise NotImplementedError

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        raise NotImplementedError

    def malloc_usable_size(self, addr: int) -> int:
        raise NotImplementedError

    # -- what the heap holds ---------------------------------------------------------------------
    def live_allocations(self) -> list[Allocation]:
        """Live objects this heap keeps outside the allocator's own records (default: none)."""
        return []

    def owned_pfns(self) -> dict[int, str]:
        """{pfn: label} of pages the heap holds outside the allocator's records (memory map)."""
        return {}

    def owns(self, addr: int) -> bool:
        """True when addr may be a pointer this heap returned (free and realloc route by it)."""
        return False

    # -- byte access (the arena's pointers are virtual) ------------------------------------------
    def write(self, addr: int, data: bytes) -> None:
        self.ka.phys.write(addr, data)

    def read(self, addr: int, n: int) -> bytes:
        return self.ka.phys.read(addr, n)

    def check(self) -> None:
        """Prove the heap's own invariants (raises InvariantError); the allocator's are ka.check()."""

    def stats(self) -> dict[str, int]:
        return {}


def pfn_range(addr: int, nbytes: int) -> range:
    return range(addr >> PAGE_SHIFT, (addr + nbytes) >> PAGE_SHIFT)
