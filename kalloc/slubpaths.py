"""SLUB's object paths over the structures of kalloc.slab: object alloc and free, slabs made
and discarded, reclaim. kalloc.slub's `Slub` adds the kmem_cache API on top of them.

    alloc(cache, size)   the hot path of kmalloc, malloc and kmem_cache_alloc: the current
      │                  slab's free list, else its never-used objects
      └─ cache.next_slab() (partial, then empty) or new_slab(): pages from the page pipeline,
                         laid out (kalloc.debug's template), constructed, made current
    free(slab, addr)     check red zones, poison, then release() — or, under kasan, the
                         quarantine first (its oldest entries are released instead)
    release(slab, idx)   back on the free list; a surplus empty slab is discarded
    shrink()             the shrinker the page pipeline runs in reclaim: drain the
                         quarantine, free every empty slab of every cache

Data structure:
    quarantine: Quarantine | None    KASAN's freed-object delay: (addr, slab, idx, size)
    live.page_owner[pfn] = slab      for every page of every slab
    all_caches: [KmemCache]          every cache (kept by kalloc.slub), what shrink() walks

The object paths inline their helpers (forget, release, list moves, poison fill, and under
poison the usual case of the red-zone check): they are the hot path of every slab allocation
and free.

Invariants (kalloc.slab's, and):
 1. Every page of a slab maps to it in page_owner, and no page of a discarded slab does.
 2. Every LIVE object has a live record of a kind its cache serves; every QUARANTINED
    object is in the quarantine exactly once.
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Config
from kalloc.debug import Quarantine
from kalloc.gate import RequestGate
from kalloc.live import LiveRecord, LiveTable, new_record
from kalloc.page import PAGE_SHIFT
from kalloc.pages import PagePipeline
from kalloc.physmem import PhysMem
from kalloc.sanitize import Sanitizer
from kalloc.slab import (
    OBJ_FREE,
    OBJ_LIVE,
    OBJ_QUARANTINED,
    SLAB_CPU,
    SLAB_FULL,
    SLAB_PARTIAL,
    KmemCache,
    Slab,
)

_ZERO = G.ZERO


class SlubPaths:
    """The object paths and the reclaim of one Kalloc's slab allocator (module docstring)."""

    def __init__(
        self,
        config: Config,
        phys: PhysMem,
        gate: RequestGate,
        pages: PagePipeline,
        live: LiveTable,
        sanitizer: Sanitizer,
        quarantine: Quarantine | None,
    ) -> None:
        self.config = config
        self.debug = config.debug
        self.phys = phys
        self.gate = gate
        self.pages = pages
        self.live = live
        self.records = live.records  # the hot path's views of the live table
        self.freed = live.freed
        self.listeners = live.listeners
        self.not_leak = live.not_leak
        self.ksized = live.ksized
        self.page_owner = live.page_owner
        self.sanitizer = sanitizer
        self.seen = sanitizer.seen  # bytes KASAN reported at the access: the checks' slow path skips them
        self.quarantine = quarantine
        self.by_handle: dict[int, KmemCache] = {}
        self.all_caches: list[KmemCache] = []
        self.next_handle = 1
        pages.register_shrinker(self.shrink)

    # ================================================================ objects

    def alloc(self, cache: KmemCache, size: int, gfp: int, caller: Caller, kind: int) -> int | None:
        """One object of `cache` holding `size` bytes, recorded as `kind`; None after an oom report."""
        slab = cache.cpu
        if slab is None or slab.inuse == slab.nobjs:
            if slab is not None and cache.partial:  # next_slab()'s usual case, inline: a partial slab in
                slab.where = SLAB_FULL
                slab = cache.partial.popitem()[1]
                slab.where = SLAB_CPU
                cache.cpu = slab
            else:
                slab = cache.next_slab() or self.new_slab(cache, gfp, caller, size)
                if slab is None:
                    return None
        free = slab.free
        if free:
            idx = free.pop()
            cache.last_alloc_fresh = False
        else:
            idx = slab.next_fresh
            slab.next_fresh = idx + 1
            cache.last_alloc_fresh = True
        off = idx * cache.stride + cache.left
        addr = slab.base + off
        if self.debug:
            if cache.poison_rz and not gfp & _ZERO:  # _prepare's usual case, inline
                mv, end = slab.mv, off + cache.size
                if cache.pat_free_cmp != mv[off:end]:  # one memcmp, no copy (kalloc.slab build_patterns)
                    self.sanitizer.report_poison(cache, slab, idx, caller)
                mv[off:end] = cache.fill_views[size]  # the fresh fill and the tail red zone in one store
            else:
                self._prepare(cache, slab, idx, off, size, gfp, caller)
        elif gfp & _ZERO:
            slab.mv[off : off + size] = cache.pat_zero[:size]
        site = caller[1]  # .site (a tuple index is cheaper than the NamedTuple's descriptor)
        slab.inuse += 1
        slab.obj[idx] = OBJ_LIVE
        slab.alloc_site[idx] = site
        cache.total_allocs += 1
        self.records[addr] = new_record(LiveRecord, (size, kind, site, gfp))
        freed = self.freed
        if freed:
            freed.pop(addr, None)
        listeners = self.listeners
        if listeners:  # LiveTable.notify, to the listeners that want slab objects (no call for none)
            n, tell = self.live.slab_listeners_of
            for fn in tell if n == len(listeners) else self.live.slab_listeners():
                fn("alloc", addr, size, cache.size)
        return addr

    def _prepare(
        self, cache: KmemCache, slab: Slab, idx: int, off: int, size: int, gfp: int, caller: Caller
    ) -> None:
        """Sanitizer work when an object is handed out: check its poison, fill it, guard its tail.
        (Poison with a red zone and no __GFP_ZERO, the usual case, is inline in `alloc`.)"""
        mv = slab.mv
        osize = cache.size
        if cache.poison:
            if not cache.pat_free.startswith(mv[off : off + osize]):
                self.sanitizer.report_poison(cache, slab, idx, caller)
            mv[off : off + size] = cache.pat_zero[:size] if gfp & _ZERO else cache.pat_fresh[:size]
        elif gfp & _ZERO:
            mv[off : off + size] = cache.pat_zero[:size]
        if cache.redzone and size < osize:
            mv[off + size : off + osize] = cache.pat_rz[: osize - size]

    def new_slab(self, cache: KmemCache, gfp: int, caller: Caller, size: int) -> Slab | None:
        """allocate_slab(): pages for a new slab, laid out, constructed and made current."""
        slab_gfp = (gfp & ~_ZERO) | (G.DMA if cache.dma else 0)
        pfn = self.pages.alloc_block(slab_gfp, cache.order, caller, size)
        if pfn is None:
            return None
        if not cache.built:
            cache.build_patterns(self.debug)
        slab = Slab(cache, pfn, self.phys.view(pfn << PAGE_SHIFT, cache.slab_bytes))
        if self.debug:
            slab.mv[:] = cache.template
            if self.sanitizer.seen:  # marks of bad writes to what these pages held are stale now
                self.sanitizer.reported.forget(slab.base, cache.slab_bytes)
        for p in range(pfn, pfn + (1 << cache.order)):
            self.page_owner[p] = slab
        if cache.ctor is not None:
            for i in range(slab.nobjs):
                cache.ctor(slab.object_addr(i))
        cache.install(slab)
        return slab

    def free(self, slab: Slab, addr: int, rec: LiveRecord, caller: Caller) -> None:
        """Free a live slab object: check its red zones, poison it, return (or quarantine) it."""
        cache = slab.cache
        off = addr - slab.base
        idx = off // cache.stride
        if self.debug:
            if cache.poison_rz and not self.seen:  # check_redzones()'s usual case, inline: both intact
                mv, left = slab.mv, cache.left
                guard = cache.size if self.ksized and addr in self.ksized else rec[0]  # rec.size
                if cache.pat_rz_left != mv[off - left : off] or not cache.pat_rz_bytes.startswith(
                    mv[off + guard : off - left + cache.stride]
                ):
                    self.sanitizer.check_redzones(cache, slab, idx, off, rec, caller)  # report, repair
                mv[off : off + cache.size] = cache.pat_free_cmp
            else:
                self.sanitizer.check_redzones(cache, slab, idx, off, rec, caller)
                if cache.poison:
                    slab.mv[off : off + cache.size] = cache.pat_free
        del self.records[addr]  # LiveTable.forget, inlined (the hot path)
        if self.not_leak:
            self.not_leak.discard(addr)
        if self.ksized:
            self.ksized.discard(addr)
        size = rec[0]  # .size
        listeners = self.listeners
        if listeners:
            n, tell = self.live.slab_listeners_of
            for fn in tell if n == len(listeners) else self.live.slab_listeners():
                fn("free", addr, size, cache.size)
        slab.free_site[idx] = caller[1]
        slab.freed_size[idx] = size
        slab.freed_kind[idx] = rec[1]  # .kind
        cache.total_frees += 1
        if self.quarantine is not None:
            slab.obj[idx] = OBJ_QUARANTINED
            for entry in self.quarantine.push((addr, slab, idx, cache.size)):
                self.release(entry[1], entry[2])
            return
        slab.obj[idx] = OBJ_FREE  # release(), inlined
        slab.free.append(idx)
        slab.inuse -= 1
        where = slab.where
        if where == SLAB_FULL and slab.inuse:  # after_free()'s usual case, inline: full -> partial
            slab.where = SLAB_PARTIAL
            cache.partial[slab.pfn] = slab
        elif where != SLAB_CPU:
            dead = cache.after_free(slab)
            if dead is not None:
                self.discard(dead)

    def release(self, slab: Slab, idx: int) -> None:
        """Put object `idx` back on its slab's free list; discard the slab if it is surplus."""
        slab.obj[idx] = OBJ_FREE
        slab.free.append(idx)
        slab.inuse -= 1
        if slab.where != SLAB_CPU:
            dead = slab.cache.after_free(slab)
            if dead is not None:
                self.discard(dead)

    def discard(self, slab: Slab, last: bool = True, caller: Caller = TASK) -> None:
        """discard_slab(): check every slot and the padding, unmap the pages, free them to the buddy.

        The check (sanitizer on) is the end-of-run walk's (Sanitizer.check_slab): a write into
        a freed object must not vanish with its slab (SLUB's free_slab() checks each object).
        """
        if self.debug:
            self.sanitizer.check_slab(slab, caller)
        cache = slab.cache
        cache.forget(slab)
        for p in range(slab.pfn, slab.pfn + (1 << slab.order)):
            del self.page_owner[p]
        self.pages.buddy.free(slab.pfn)
        if last and not cache.slabs and not cache.internal:  # patterns follow guest memory (kalloc.slab)
            cache.drop_patterns()

    # ================================================================ reclaim

    def shrink(self) -> None:
        """The shrinker: drain the quarantine, then free every empty slab of every cache.

        Like kmem_cache_shrink() on every cache: the empty slabs kept on the lists
        (min_partial) and each cache's current slab when it is empty. (Linux's
        reclaim leaves SLUB alone; on a board of a few hundred KiB an idle order-3
        slab is too much to keep.)
        """
        if self.quarantine is not None:
            for entry in self.quarantine.drain():
                self.release(entry[1], entry[2])
        for cache in self.all_caches:
            self.shrink_cache(cache)

    def shrink_cache(self, cache: KmemCache) -> int:
        """Free every empty slab of `cache`; returns pages freed."""
        freed = 0
        empty = cache.take_empty()  # off the lists already: discard() sees no slabs left until the last
        for i, slab in enumerate(empty):
            self.discard(slab, last=i == len(empty) - 1)
            freed += 1 << slab.order
        return freed

    def drain_quarantine_of(self, cache: KmemCache) -> None:
        if self.quarantine is not None:
            for entry in self.quarantine.drain(keep=lambda e: e[1].cache is not cache):
                self.release(entry[1], entry[2])
