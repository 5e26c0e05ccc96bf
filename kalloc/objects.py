"""Heap objects: what kfree, krealloc, free and realloc share for kmalloc and malloc objects.

A heap object (kind kmalloc or malloc) lives either in a slab slot (small) or at
the head of a page block (large); which one is told by the page -> slab map.

    free(addr, rec)                   to its slab (kalloc.slub) or its pages (kalloc.pages)
    resize_in_place(addr, rec, size, gfp, caller)  a new requested size that fits its slot or
                                      pages; the resize becomes the object's allocation site
    move_contents(new, old, rec, size)  copy min(old size, size) bytes, zero the growth
                                      for __GFP_ZERO

Invariants:
 1. After resize_in_place the bytes past the new size, to the end of the slot's
    object or the last page, are a 0xcc red zone (sanitizer on), even if ksize()
    had lifted it; the record's size is the new size and its site the resize's
    (as if the object had moved: leak and bounds reports name the realloc line,
    the line that chose the size; Valgrind's realloc3 checks the same).
 2. These run after the caller took the record (kalloc.live take_for_free): no misuse
    reaches them.
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import Caller
from kalloc.debug import POISON_INUSE, RED_ACTIVE
from kalloc.live import LiveRecord, LiveTable
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.pages import PagePipeline
from kalloc.physmem import PhysMem
from kalloc.slab import Slab
from kalloc.slub import Slub


class HeapObjects:
    """Free, resize and move kmalloc and malloc objects (module docstring)."""

    def __init__(self, phys: PhysMem, live: LiveTable, slub: Slub, pages: PagePipeline, debug: bool) -> None:
        self.phys = phys
        self.live = live
        self.page_owner = live.page_owner
        self.slub = slub
        self.pages = pages
        self.debug = debug

    def free(self, addr: int, rec: LiveRecord, caller: Caller) -> None:
        """Free a live heap object to its slab or its pages."""
        slab = self.page_owner.get(addr >> PAGE_SHIFT)
        if slab is None:
            self.pages.release(addr, rec, caller)
        else:
            assert isinstance(slab, Slab)
            self.slub.free(slab, addr, rec, caller)

    def resize_in_place(self, addr: int, rec: LiveRecord, size: int, gfp: int, caller: Caller) -> None:
        """Give a live object a new requested size that fits its slot or pages, allocated at caller.

        Growth reads 0x5a (or zeros for __GFP_ZERO); the new tail is a 0xcc red
        zone again, even if ksize() had lifted it. The object's allocation site
        becomes caller's (invariant 1).
        """
        old = rec.size
        live = self.live
        if size > old:
            if gfp & G.ZERO:
                self.phys.fill(addr + old, size - old, 0)
            elif self.debug and addr not in live.ksized:
                self.phys.fill(addr + old, size - old, POISON_INUSE)
        if self.debug:
            end = self.guard_end(addr, size)
            self.phys.fill(addr + size, end - size, RED_ACTIVE)
        live.ksized.discard(addr)
        site = caller.site
        live.records[addr] = rec._replace(size=size, site=site)
        slab = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(slab, Slab):
            slab.alloc_site[(addr - slab.base) // slab.cache.stride] = site
        if live.listeners:
            live.notify("resize", addr, size, live.usable(addr, rec))

    def guard_end(self, addr: int, size: int) -> int:
        """End of the tail red zone of an object of `size` at addr (== size: no tail guard)."""
        owner = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(owner, Slab):
            return owner.cache.size if owner.cache.redzone else size
        return pages_for(size) * PAGE_SIZE

    def move_contents(self, new: int, old: int, rec: LiveRecord, size: int, gfp: int) -> None:
        """Copy min(old size, size) bytes from old to new; zero the growth for __GFP_ZERO."""
        n = min(rec.size, size)
        if n:
            self.phys.view(new, n)[:] = self.phys.view(old, n)
        if gfp & G.ZERO and size > n:
            self.phys.fill(new + n, size - n, 0)
