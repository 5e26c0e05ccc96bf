"""The page pipeline: every request for pages, from any layer, and the page API on top of it.

    alloc_block(gfp, order)   zonelist walk (kalloc.zone watermarks, reserve access per
         │                    alloc_flags_for) -> buddy block
         ├─ failed: reclaim() — run every registered shrinker (the slab layer registers
         │          one: drain the KASAN quarantine, free every empty slab), retry once;
         │          __GFP_NOFAIL retries once more with ALLOC_MIN_RESERVE
         └─ failed: oom() — an out-of-memory report (or raise, for __GFP_NOFAIL)
    commit(pfn, size, kind)   record a block as a live object, fill it (zero, 0x5a, red zone)
    release(addr, rec)        check its tail red zone, forget it, poison, free the block
    alloc_large / alloc_exact the two large-object shapes: a power-of-two block (kmalloc_large)
                              and exactly ceil(size / 4096) pages (malloc, alloc_pages_exact)

As in Linux, the page allocator never calls up into the slab layer: the slab
layer registers a shrinker here (register_shrinker), and reclaim runs the list.

Zonelists, highest zone first: NORMAL requests fall back to DMA; __GFP_DMA
requests use ZONE_DMA only.

Invariants:
 1. A block returned by alloc_block is an allocated buddy block of 2^order pages
    (kalloc.buddy), not yet recorded as a live object.
 2. A failed request leaves no state changed but the reports (and what reclaim freed).
 3. `freed` never names an address that is the head of an allocated block.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc import gfp as G
from kalloc.buddy import Buddy
from kalloc.config import TASK, Caller, Config, Context
from kalloc.debug import POISON_FREE, POISON_INUSE, RED_ACTIVE
from kalloc.errors import BadArgumentError, KallocError, OutOfMemoryError
from kalloc.gate import RequestGate
from kalloc.kinds import HEAP_KINDS, KIND_DMA_COHERENT, KIND_PAGES, KIND_PAGES_EXACT
from kalloc.live import FreedPages, LiveRecord, LiveTable, new_record
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order, pages_for
from kalloc.physmem import PhysMem
from kalloc.sanitize import Sanitizer
from kalloc.zone import (
    ALLOC_MIN_RESERVE,
    ZONE_DMA,
    ZONE_NORMAL,
    Zone,
    alloc_flags_for,
    default_min_free_kbytes,
    enough_free,
    setup_lowmem_reserve,
    setup_watermarks,
)

_ZERO = G.ZERO
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_UNKNOWN_GFP = ~G.KNOWN_MASK
_TASK = Context.TASK

Shrinker = Callable[[], object]


class PagePipeline:
    """Pages for every layer: zonelists, reclaim, oom reports, live page-level objects."""

    def __init__(
        self,
        buddy: Buddy,
        phys: PhysMem,
        config: Config,
        live: LiveTable,
        sanitizer: Sanitizer,
        reports: list[KallocError],
    ) -> None:
        self.buddy = buddy
        self.phys = phys
        self.max_order = config.max_order
        self.debug = config.debug
        self.live = live
        self.records = live.records
        self.sanitizer = sanitizer
        self.reports = reports
        self.shrinkers: list[Shrinker] = []
        zones = buddy.zones
        populated = buddy.populated_zones
        managed_kb = sum(z.managed for z in populated) * (PAGE_SIZE // 1024)
        mfk = config.min_free_kbytes
        self.min_free_kbytes = default_min_free_kbytes(managed_kb) if mfk is None else mfk
        setup_watermarks(populated, self.min_free_kbytes)
        setup_lowmem_reserve(populated, config.lowmem_reserve_ratio)
        self.zl_normal = [z for z in (zones[ZONE_NORMAL], zones[ZONE_DMA]) if z.populated]
        self.zl_dma = [zones[ZONE_DMA]] if zones[ZONE_DMA].populated else []

    def register_shrinker(self, fn: Shrinker) -> None:
        """Have reclaim() call fn() (which frees what it can) before a request fails."""
        self.shrinkers.append(fn)

    # ---------------------------------------------------------------- blocks

    def alloc_block(self, gfp: int, order: int, caller: Caller, size: int) -> int | None:
        """A block of 2^order pages for a request of `size` bytes, or None after reclaim and a report."""
        zones = self.zl_dma if gfp & G.DMA else self.zl_normal
        if order > self.max_order:
            self.oom(gfp, order, size, caller, "larger than the largest buddy block")
            return None
        highest = zones[0].idx if zones else ZONE_DMA
        flags = alloc_flags_for(gfp)
        buddy = self.buddy
        if buddy.grouping is not None:  # kalloc.antifrag: the request's mobility or tag
            buddy.grouping.classify(size)
        pfn = buddy.alloc_zonelist(zones, order, highest, flags)
        if pfn is None:
            self.reclaim()
            pfn = buddy.alloc_zonelist(zones, order, highest, flags)
            if pfn is None and gfp & G.NOFAIL:
                pfn = buddy.alloc_zonelist(zones, order, highest, flags | ALLOC_MIN_RESERVE)
            if pfn is None:
                self.oom(gfp, order, size, caller, why_no_block(zones, order, highest, flags))
                return None
        self.live.freed.pop(pfn << PAGE_SHIFT, None)
        return pfn

    def reclaim(self) -> int:
        """Run every shrinker (no demand paging: nothing else can be reclaimed); returns pages freed."""
        before = self.buddy.used_pages
        for fn in self.shrinkers:
            fn()
        return before - self.buddy.used_pages

    def oom(self, gfp: int, order: int, size: int, caller: Caller, reason: str) -> None:
        """An allocation failed: report it (unless __GFP_NOWARN), or raise for __GFP_NOFAIL."""
        nofail = bool(gfp & G.NOFAIL)
        if gfp & G.NOWARN and not nofail:
            return
        err = OutOfMemoryError(
            f"page allocation failure: order:{order}, mode:{G.describe(gfp)} ({reason})",
            site=caller.site,
            severity="error" if nofail else "warning",
            size=size,
            order=order,
            gfp=G.describe(gfp),
            gfp_mask=gfp,
            context=caller.context.name.lower(),
            zones=[
                {
                    "name": z.name,
                    "free": z.nr_free,
                    "min": z.wmark_min,
                    "low": z.wmark_low,
                    "high": z.wmark_high,
                    "lowmem_reserve": list(z.lowmem_reserve),
                    "largest_free_order": z.largest_free_order(),
                }
                for z in self.buddy.populated_zones
            ],
        )
        if nofail:
            raise err
        self.reports.append(err)

    def too_large(self, gfp: int, size: int, caller: Caller, reason: str) -> None:
        """A request no memory state could meet (size over a limit): an oom report, NULL."""
        self.oom(gfp & ~G.NOFAIL, get_order(size), size, caller, reason)

    # ---------------------------------------------------------------- page-level live objects

    def commit(self, pfn: int, gfp: int, size: int, kind: int, caller: Caller) -> int:
        """Record a block as a live object and prepare its bytes; returns its address.

        __GFP_ZERO and dma_alloc_coherent zero the whole block. Otherwise, with
        the sanitizer on, the object is filled 0x5a (fresh) and, for heap kinds
        (kmalloc, malloc), the rest of its last page is a 0xcc red zone.
        """
        addr = pfn << PAGE_SHIFT
        nbytes = self.buddy.blocks[pfn] << PAGE_SHIFT
        debug = self.debug
        if gfp & _ZERO or kind == KIND_DMA_COHERENT:
            self.phys.fill(addr, nbytes, 0)
        elif debug:
            self.phys.fill(addr, size if kind in HEAP_KINDS else nbytes, POISON_INUSE)
        if debug and kind in HEAP_KINDS:
            self.phys.fill(addr + size, pages_for(size) * PAGE_SIZE - size, RED_ACTIVE)
        self.records[addr] = new_record(LiveRecord, (size, kind, caller.site, gfp))
        live = self.live
        if live.listeners:
            live.notify("alloc", addr, size, nbytes)
        return addr

    def release(self, addr: int, rec: LiveRecord, caller: Caller) -> None:
        """Free a page-level live object (checks its tail red zone first)."""
        pfn = addr >> PAGE_SHIFT
        live = self.live
        if live.vmapped:  # before anything changes: a vmap'd page is never handed out twice
            live.refuse_mapped(addr, rec, "free", caller)
        if self.debug and rec.kind in HEAP_KINDS and addr not in live.ksized:
            self.sanitizer.check_large_tail(addr, rec, caller)
        live.forget(addr, rec)
        npages = self.buddy.blocks[pfn]
        if self.debug:
            # Like xv6's kfree "fill with junk to catch dangling refs".
            self.phys.fill(addr, npages << PAGE_SHIFT, POISON_FREE)
        self.buddy.free(pfn)
        live.freed[addr] = new_record(FreedPages, (rec.kind, rec.size, rec.site, caller.site))

    def alloc_large(self, size: int, gfp: int, caller: Caller, kind: int) -> int | None:
        """kmalloc_large(): a block of get_order(size) pages."""
        order = get_order(size)
        if order > self.max_order:
            self.too_large(gfp, size, caller, f"{size} bytes exceed the largest block")
            return None
        pfn = self.alloc_block(gfp, order, caller, size)
        if pfn is None:
            return None
        return self.commit(pfn, gfp, size, kind, caller)

    def alloc_exact(self, size: int, gfp: int, caller: Caller, kind: int, align_order: int = 0) -> int | None:
        """ceil(size / 4096) pages (at least one), aligned to PAGE_SIZE << align_order (malloc's shape)."""
        npages = pages_for(max(size, 1))
        order = max(get_order(npages * PAGE_SIZE), align_order)
        if order > self.max_order:
            self.too_large(gfp, size, caller, f"{size} bytes exceed the largest block")
            return None
        pfn = self.alloc_block(gfp, order, caller, size)
        if pfn is None:
            return None
        self.buddy.trim(pfn, npages)
        return self.commit(pfn, gfp, size, kind, caller)


class PageApi:
    """alloc_pages, free_pages, alloc_pages_exact, free_pages_exact."""

    def __init__(self, gate: RequestGate, pages: PagePipeline) -> None:
        self.gate = gate
        self.pages = pages
        self.live = pages.live
        self.max_order = pages.max_order

    def alloc_pages(self, gfp: int, order: int, caller: Caller = TASK) -> int | None:
        """Allocate 2^order contiguous pages; returns the physical address or None.

        Pair with free_pages(addr, order). Context: GFP_ATOMIC / GFP_NOWAIT from
        interrupts; a blocking gfp there is reported as invalid-context.
        Raises BadArgumentError for unknown GFP bits or an order outside 0..max_order.
        """
        gate = self.gate  # its checks behind one inline test each: the usual case costs no call
        if gfp & _UNKNOWN_GFP or gfp < 0:
            gate.check_gfp(gfp, caller)
        if not (isinstance(order, int) and 0 <= order <= self.max_order):
            gate.check_order(order, caller)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK:
            gate.invalid_context(gfp, caller, "alloc_pages")
        pfn = self.pages.alloc_block(gfp, order, caller, PAGE_SIZE << order)
        if pfn is None:
            return None
        return self.pages.commit(pfn, gfp, PAGE_SIZE << order, KIND_PAGES, caller)

    def free_pages(self, addr: int, order: int, caller: Caller = TASK) -> None:
        """Free what alloc_pages(gfp, order) returned; addr 0 is a no-op. Context: any."""
        if not (isinstance(order, int) and 0 <= order <= self.max_order):
            self.gate.check_order(order, caller)
        if addr == 0:
            return
        rec = self.live.take_for_free(addr, KIND_PAGES, "free_pages", caller)
        if get_order(rec.size) != order:
            raise self.live.mismatch(
                f"free_pages() with order {order} of a block allocated with order {get_order(rec.size)}",
                addr,
                rec,
                caller,
            )
        self.pages.release(addr, rec, caller)

    def alloc_pages_exact(self, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """Allocate ceil(size / 4096) pages with no power-of-two waste (make_alloc_exact()).

        The block of get_order(size) is split and its unused tail freed at once.
        Pair with free_pages_exact(addr, size). Raises BadArgumentError for size 0.
        """
        gate = self.gate
        gate.check_gfp(gfp, caller)
        gate.check_size(size, caller)
        if size == 0:
            raise BadArgumentError("alloc_pages_exact() of 0 bytes", site=caller.site)
        gate.may_sleep(gfp, caller, "alloc_pages_exact")
        pfn = self.pages.alloc_block(gfp, get_order(size), caller, size)
        if pfn is None:
            return None
        self.pages.buddy.trim(pfn, pages_for(size))
        return self.pages.commit(pfn, gfp, size, KIND_PAGES_EXACT, caller)

    def free_pages_exact(self, addr: int, size: int, caller: Caller = TASK) -> None:
        """Free what alloc_pages_exact(size) returned (the same size, in pages). addr 0: no-op."""
        self.gate.check_size(size, caller)
        if addr == 0:
            return
        rec = self.live.take_for_free(addr, KIND_PAGES_EXACT, "free_pages_exact", caller)
        if pages_for(size) != pages_for(rec.size):
            raise self.live.mismatch(
                f"free_pages_exact() of {size} bytes, but {rec.size} bytes were allocated", addr, rec, caller
            )
        self.pages.release(addr, rec, caller)


def why_no_block(zones: list[Zone], order: int, highest: int, alloc_flags: int) -> str:
    """Why the zonelist walk found no block: fragmentation (pages free, no block that
    large: teaching session 5) or too few free pages above the min watermark."""
    for z in zones:
        if z.managed and enough_free(z, order, z.wmark_min, highest, alloc_flags):
            largest = z.largest_free_order()
            biggest = f"order {largest}" if largest >= 0 else "none"
            return (f"fragmentation: zone {z.name} has {z.nr_free} free pages, enough above its min "
                    f"watermark, but no free block of order {order} (largest: {biggest})")
    return "too few free pages above the min watermark: " + ", ".join(
        f"{z.name} {z.nr_free} free, min {z.wmark_min}" for z in zones if z.managed)
