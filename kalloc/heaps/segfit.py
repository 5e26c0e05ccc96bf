"""The "segfit" heap: exact-fit slabs, best fit with coalescing, page-exact large blocks, in-place growth.

A console-style general-purpose heap over physical pages from the buddy allocator,
combining the well-known ideas, each where it pays:

  small     a request of a size class with enough live objects (4 pages of them, or
            256 objects) takes an exact-fit slot (kalloc.heaps.segslab): no header,
            no rounding beyond its alignment, and an emptied slab page goes back
            at once. A class with few objects stays in the fit regions, so a small
            program does not pay a page per size class.
  middle    best fit with immediate coalescing over boundary-tagged regions of
            physically contiguous pages (kalloc.heaps.fit: 8-byte tag per block,
            free-list links inside free blocks).
  large     a request whose whole pages waste at most 1/32 of it (4095 bytes: one
            page; 8190: two; anything from 128 KiB) takes exactly its pages, with no
            header: its size lives in the page's descriptor, as kmalloc_large's
            order does in Linux's struct page (the reserved memmap).
  grow      a region grows at its end, in place, when the pages after it are free
            (kalloc.heaps.pageclaim: sbrk over physical pages); else a new region
            of exactly the pages needed. realloc grows in place when the next block
            is free or the block is the last of its region (the region grows under
            it), and a page-exact block grows by the free pages after it.
  shrink    after every free, whole free pages at a region's end go back (the tail
            is trimmed), an empty region is released, an emptied slab too.

Accounting is the machine's: committed memory is the buddy allocator's used pages;
tags, slabs and regions all live in them. The heap's control state (class table,
region list) is static data, like glibc's main_arena, not heap memory.

Invariants (check() proves them, with FitHeap's):
 1. Every region is exactly the pages of its buddy blocks, each allocated.
 2. Every live object is in exactly one of: a used block of a region, a slab slot,
    a page-exact block (at its first byte).
 3. Every slab is a SlabClasses slab (kalloc.heaps.segslab's invariants hold).
"""

from __future__ import annotations

from kalloc.config import TASK, Caller
from kalloc.errors import InvariantError
from kalloc.heaps import pageclaim
from kalloc.heaps.fit import HDR, MIN_BLOCK, FitRegion, block_size_for, grow_need
from kalloc.heaps.fitheap import FitHeap
from kalloc.heaps.segslab import SLAB_MAX, SlabClasses, slot_for
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for

GROWER_MIN = 1024  # realloc growing an object to this size or more keeps it where it can grow
SLAB_AFTER = 4  # a size class takes slabs once its live objects fill this many pages
SLAB_COUNT = 64  # ... or number SLAB_AFTER * SLAB_COUNT (256: many small objects)
LARGE_MIN = 2048  # smallest request that may take whole pages of its own
LARGE_WASTE = 32  # ... when its last page's unused tail is at most 1/32 of it


def is_large(size: int) -> bool:
    """True when `size` takes exactly its own pages (the tail wastes at most 1/LARGE_WASTE of it)."""
    return size >= LARGE_MIN and (pages_for(size) * PAGE_SIZE - size) * LARGE_WASTE <= size


class SegFitHeap(FitHeap):
    """Slabs, best fit and whole pages behind malloc (module docstring)."""

    name = "segfit"

    def __init__(self, ka) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ka)
        self._blocks: dict[int, list[list[int]]] = {}  # region start -> [[pfn, npages], ...]
        self._large: dict[int, int] = {}  # address of a page-exact object -> its pages
        self.slabs = SlabClasses(ka)
        self._class_live: dict[int, int] = {}  # slot size -> live objects of that size anywhere
        self.claims = 0  # regions and blocks grown in place
        self.slab_after = SLAB_AFTER  # tests set 0: every small class in slabs at once
        self._grown: set[int] = set()  # objects realloc has grown at least once
        self._growers: set[int] = set()  # ... at least twice (kept at a region's top, given room)
        self._moving_grower = False  # realloc is moving a growing object: _place puts it on a top

    # -- placement ---------------------------------------------------------------------------------
    def _count(self, size: int, delta: int) -> None:
        if size <= SLAB_MAX:
            slot = slot_for(size)
            self._class_live[slot] = self._class_live.get(slot, 0) + delta

    def _slab_worthy(self, slot: int) -> bool:
        n = self._class_live.get(slot, 0)
        busy = n * slot >= self.slab_after * PAGE_SIZE or n >= self.slab_after * SLAB_COUNT
        return busy or self.slabs.holds(slot)

    def _place(self, size: int, align: int, gfp: int, caller: Caller) -> int | None:
        slot = slot_for(size)
        p: int | None = None
        if self._moving_grower:
            p = self._place_grower(size, align, gfp, caller)
        elif align <= 16 and slot <= SLAB_MAX and self._slab_worthy(slot):
            p = self.slabs.alloc(slot, gfp, caller)
        elif is_large(size) and align <= PAGE_SIZE:
            p = self._large_alloc(size, gfp, caller)
        else:
            p = super()._place(size, align, gfp, caller)
        if p is not None:
            self._count(size, 1)
        return p

    def _fit(self, size: int, align: int) -> int | None:
        """Best fit over every region (the smallest free block that holds it; lowest address on
        ties), keeping off the free block right after a growing block while anything else fits."""
        avoid = self._room_of_growers()
        passes: tuple[set[int] | frozenset[int], ...] = (avoid, frozenset()) if avoid else (frozenset(),)
        for keep_off in passes:
            best, where = None, None
            for r in self.regions:
                got = r.best(size, align, keep_off)
                if got is not None and (best is None or got[0] < best[0]):
                    best, where = got, r
            if best is not None and where is not None:
                where.take(best[1], best[2], size)
                return best[2]
        return None

    def _room_of_growers(self) -> set[int]:
        """Starts of the free blocks that follow a block realloc has grown (its room to grow)."""
        room = set()
        for g in self._growers:
            r = self.region_of(g)
            if r is not None and g - HDR in r.used:
                room.add(g - HDR + r.used[g - HDR])
        return room

    def _place_grower(self, size: int, align: int, gfp: int, caller: Caller) -> int | None:
        """A block realloc grows goes to the start of a region's free top, where it can keep growing."""
        need = grow_need(size, align)
        for r in sorted(self.regions, key=lambda r: -r.top_free()):
            if r.top_free() >= need or self._claim(r, pages_for(need - r.top_free())):
                p = r.take_at(r.free_starts[-1], size, align)
                if p is not None:
                    return p
        if self._new_region(need, size, gfp, caller):
            r = max(self.regions, key=lambda r: r.top_free())
            p = r.take_at(r.free_starts[-1], size, align)
            if p is not None:
                return p
        return super()._place(size, align, gfp, caller)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        old = self.requested(addr)
        up = old is not None and size > old
        was_grown = addr in self._grown
        self._moving_grower = up and size >= GROWER_MIN and was_grown
        try:
            new = super().realloc(addr, size, caller)
        finally:
            self._moving_grower = False
        if new is not None and up:  # grown once: noted; grown again: a grower, kept where it can grow
            (self._growers if was_grown else self._grown).add(new)
            if new != addr:
                self._grown.discard(addr)
                self._growers.discard(addr)
            self._grown.add(new)
        return new

    def _large_alloc(self, size: int, gfp: int, caller: Caller) -> int | None:
        npages = pages_for(size)
        pfn = self.exact_pages(npages, gfp, size, caller)
        if pfn is None:
            return None
        self._large[pfn << PAGE_SHIFT] = npages
        return pfn << PAGE_SHIFT

    # -- regions -----------------------------------------------------------------------------------
    def _grow(self, size: int, align: int, gfp: int, caller: Caller) -> bool:
        need = grow_need(size, align)
        for r in sorted(self.regions, key=lambda r: -r.top_free()):  # in place: sbrk at a region's end
            if self._claim(r, pages_for(max(need - r.top_free(), 1))):
                return True
        return self._new_region(need, size, gfp, caller)

    def _claim(self, r: FitRegion, npages: int) -> bool:
        last = self._blocks[r.start][-1]
        if not pageclaim.extend(self.ka.buddy, last[0], npages):
            return False
        last[1] += npages
        r.grow(r.end + (npages << PAGE_SHIFT))
        self.claims += 1
        return True

    def _new_region(self, need: int, size: int, gfp: int, caller: Caller) -> bool:
        npages = pages_for(need)
        pfn = self.exact_pages(npages, gfp, size, caller)
        if pfn is None:
            return False
        start, end = pfn << PAGE_SHIFT, (pfn + npages) << PAGE_SHIFT
        for r in self.regions:
            if r.end == start:  # physically adjacent: one region, blocks coalesce across the seam
                r.grow(end)
                self._blocks[r.start].append([pfn, npages])
                return True
        self.add_region(FitRegion(start, end))
        self._blocks[start] = [[pfn, npages]]
        return True

    def _after_free(self, region: FitRegion) -> None:
        if region.is_empty():
            self.drop_region(region)
            for pfn, _n in self._blocks.pop(region.start):
                self.ka.buddy.free(pfn)
            return
        top = region.top_free()
        if top < PAGE_SIZE:
            return
        last = region.end - top
        new_end = -(-last // PAGE_SIZE) * PAGE_SIZE
        if 0 < new_end - last < MIN_BLOCK:
            new_end += PAGE_SIZE
        drop = (region.end - new_end) >> PAGE_SHIFT
        if drop <= 0:
            return
        region.shrink(new_end)
        blocks = self._blocks[region.start]
        while drop:  # give the tail pages back, last block first
            pfn, n = blocks[-1]
            if n <= drop:
                self.ka.buddy.free(pfn)
                blocks.pop()
                drop -= n
            else:
                self.ka.buddy.trim(pfn, n - drop)
                blocks[-1][1] = n - drop
                drop = 0

    # -- free and resize ---------------------------------------------------------------------------
    def _release(self, addr: int, rec: tuple[int, int], caller: Caller) -> None:
        self._count(rec[0], -1)
        self._growers.discard(addr)
        self._grown.discard(addr)
        super()._release(addr, rec, caller)

    def _unplace(self, addr: int) -> FitRegion | None:
        if self.slabs.slab_of(addr) is not None:
            self.slabs.free(addr)
            return None
        if addr in self._large:
            del self._large[addr]
            self.ka.buddy.free(addr >> PAGE_SHIFT)
            return None
        return super()._unplace(addr)

    def _live_size(self, addr: int) -> int:
        return self.requested(addr) or 0

    def _resize(self, addr: int, size: int, caller: Caller) -> bool:
        old = self._live_size(addr)
        done = self._resize_where(addr, size, caller)
        if done:
            self._count(old, -1)
            self._count(size, 1)
        return done

    def _resize_where(self, addr: int, size: int, caller: Caller) -> bool:
        slab = self.slabs.slab_of(addr)
        if slab is not None:
            return slot_for(size) == slab.slot
        if addr in self._large:
            return self._resize_large(addr, size)
        if super()._resize(addr, size, caller):
            return True
        region = self.region_of(addr)
        assert region is not None
        b = addr - HDR
        nxt = b + region.used[b]
        top = nxt == region.end or (nxt in region.free_size and nxt + region.free_size[nxt] == region.end)
        if not top:
            return False
        avail = region.used[b] + region.top_free()
        if not self._claim(region, pages_for(block_size_for(size) - avail)):
            return False
        return region.resize_in_place(addr, size)

    def _resize_large(self, addr: int, size: int) -> bool:
        n, want = self._large[addr], pages_for(size)
        if want == n:
            return True
        if want < n:
            if size < PAGE_SIZE // 2:
                return False  # a small object does not keep a page of its own
            self.ka.buddy.trim(addr >> PAGE_SHIFT, want)
        elif not pageclaim.extend(self.ka.buddy, addr >> PAGE_SHIFT, want - n):
            return False
        else:
            self.claims += 1
        self._large[addr] = want
        return True

    # -- what the heap holds -----------------------------------------------------------------------
    def usable(self, p: int) -> int:
        slab = self.slabs.slab_of(p)
        if slab is not None:
            return slab.slot
        if p in self._large:
            return self._large[p] << PAGE_SHIFT
        return super().usable(p)

    def owns(self, addr: int) -> bool:
        return addr in self._large or self.slabs.slab_of(addr) is not None or super().owns(addr)

    def owned_pfns(self) -> dict[int, str]:
        out = {p: "heap" for blocks in self._blocks.values() for pfn, n in blocks
               for p in range(pfn, pfn + n)}  # fmt: skip
        out.update((p, "slab") for p in self.slabs.by_pfn)
        for a, n in self._large.items():
            out.update((p, "heap") for p in range((a >> PAGE_SHIFT), (a >> PAGE_SHIFT) + n))
        return out

    def _objects_outside_regions(self) -> int:
        return len(self._large) + sum(s.used for s in self.slabs.slabs())

    def check(self) -> None:
        super().check()
        buddy = self.ka.buddy
        for r in self.regions:
            pages = sum(n for _p, n in self._blocks[r.start])
            if pages << PAGE_SHIFT != r.end - r.start:
                raise InvariantError(f"segfit region {r.start:#x} is not exactly its blocks' pages")
            if any(buddy.blocks.get(pfn) != n for pfn, n in self._blocks[r.start]):
                raise InvariantError(f"segfit region {r.start:#x}: a block is not an allocated block")
        for a, n in self._large.items():
            if buddy.blocks.get(a >> PAGE_SHIFT) != n or self.requested(a) is None:
                raise InvariantError(f"segfit page-exact object {a:#x} is not its own block of {n} pages")
        self.slabs.check(sum(1 for a in self.live_addrs() if self.slabs.slab_of(a) is not None))

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out.update(slabs=len(self.slabs.slabs()), large_objects=len(self._large), claims=self.claims)
        return out

