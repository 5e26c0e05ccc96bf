"""The "arena" heap: a console-style growable heap in a reserved virtual window, without demand paging.

dlmalloc grows its heap with sysmalloc (sbrk/mmap) and shrinks it with systrim,
expecting the OS to commit pages on first touch and to take them back. A console
has virtual memory but no demand paging (Adrian Stone's point in the seed
article), so this arena does both explicitly:

  - grow (sysmalloc done right): when no free block fits, commit exactly the
    pages missing at the top — take order-0 pages from the buddy allocator and
    map them at the arena's end in the arena window (kalloc.vmalloc) *before*
    the pointer is returned. Physical pages need not be contiguous.
  - shrink (systrim done right): after a free, when the free block at the top
    reaches TRIM_THRESHOLD, unmap every whole page of it (the CPU's TLB is
    flushed by the unmap listeners) and give the pages back to the buddy
    allocator.

Inside the range: boundary tags, address-ordered first fit with coalescing
(kalloc.heaps.fit). What it cannot do is give back a free page below a live
block: that is the fragmentation a console allocator has to live with.

Pointers are virtual (ARENA_START ...): the arena reads and writes its bytes
through the page tables.

Invariants (check() proves them):
 1. Every page of [ARENA_START, top) is mapped, and the page at top is not.
 2. The region is exactly [ARENA_START, top); the fit heap's invariants hold in it.
"""

from __future__ import annotations

from kalloc.config import Caller
from kalloc.debug import POISON_FREE
from kalloc.errors import InvariantError
from kalloc.heaps.fit import MIN_BLOCK, FitRegion, grow_need
from kalloc.heaps.fitheap import FitHeap
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.vmalloc import ARENA_END, ARENA_START, Vmalloc

# Trim when the top free block reaches 2 pages: one page of hysteresis keeps a
# malloc/free pair that straddles a page boundary from committing and unmapping
# (with a TLB flush) on every call.
TRIM_THRESHOLD = 2 * PAGE_SIZE


class ArenaHeap(FitHeap):
    """malloc in one growable range of the arena window (module docstring)."""

    name = "arena"
    page_label = "arena"

    def __init__(self, ka, vm: Vmalloc | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ka)
        self.vm = vm if vm is not None else Vmalloc(ka)
        self.region: FitRegion | None = None
        self.top = ARENA_START  # end of the committed range
        self.end = ARENA_END  # the window's usable end (a machine may keep its top: Cortex-M's SCS)
        self.grows = 0
        self.trims = 0

    def _grow(self, size: int, align: int, gfp: int, caller: Caller) -> bool:
        ka = self.ka
        need = grow_need(size, align)
        have = self.region.top_free() if self.region is not None else 0
        npages = pages_for(max(need - have, 1))
        if self.top + (npages << PAGE_SHIFT) > self.end:
            ka.pages.too_large(gfp, size, caller, "the arena window is full")
            return False
        pfns: list[int] = []
        for _ in range(npages):
            pfn = ka.pages.alloc_block(gfp & ~0x100, 0, caller, size)
            if pfn is None:
                for p in pfns:
                    ka.buddy.free(p)
                return False
            pfns.append(pfn)
        if not self.vm.map_pages(self.top, pfns, "arena", caller):
            for p in pfns:
                ka.buddy.free(p)
            return False
        new_top = self.top + (npages << PAGE_SHIFT)
        if self.region is None:
            self.region = FitRegion(self.top, new_top)
            self.add_region(self.region)
        else:
            self.region.grow(new_top)
        self.top = new_top
        self.grows += 1
        return True

    def _after_free(self, region: FitRegion) -> None:
        top_free = region.top_free()
        if top_free < TRIM_THRESHOLD:
            return
        last = region.end - top_free
        new_end = -(-last // PAGE_SIZE) * PAGE_SIZE
        if 0 < new_end - last < MIN_BLOCK:
            new_end += PAGE_SIZE
        npages = (region.end - new_end) >> PAGE_SHIFT
        if npages <= 0:
            return
        region.shrink(new_end)
        for pfn in self.vm.unmap_pages(new_end, npages, "arena"):
            if self.ka.debug:
                self.ka.phys.fill(pfn << PAGE_SHIFT, PAGE_SIZE, POISON_FREE)
            self.ka.buddy.free(pfn)
        self.top = new_end
        self.trims += 1

    # Byte access goes through the page tables: arena pointers are virtual.
    def _fill(self, addr: int, n: int, byte: int) -> None:
        self.vm.fill(addr, n, byte)

    def write(self, addr: int, data: bytes) -> None:
        self.vm.write(addr, data)

    def read(self, addr: int, n: int) -> bytes:
        return self.vm.read(addr, n)

    def owned_pfns(self) -> dict[int, str]:
        vpn0, vpn1 = ARENA_START >> PAGE_SHIFT, self.top >> PAGE_SHIFT
        return {pfn: "arena" for vpn, pfn in self.vm.pte.items() if vpn0 <= vpn < vpn1}

    def check(self) -> None:
        super().check()
        for vpn in range(ARENA_START >> PAGE_SHIFT, self.top >> PAGE_SHIFT):
            if vpn not in self.vm.pte:
                raise InvariantError(f"arena page {vpn << PAGE_SHIFT:#x} below the top is not mapped")
        if (self.top >> PAGE_SHIFT) in self.vm.pte:
            raise InvariantError("the page above the arena's top is mapped")
        self.vm.check()

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out.update(committed_bytes=self.top - ARENA_START, grows=self.grows, trims=self.trims)
        return out
