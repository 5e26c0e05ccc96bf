"""SLUB's paths over the structures of kalloc.slab: object alloc and free, slabs made and
discarded, reclaim, and the kmem_cache API.

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
    by_handle: {handle: KmemCache}   user caches (kmem_cache_create), 1, 2, 3 ...
    all_caches: [KmemCache]          every cache, kalloc's own included, oldest first
    quarantine: Quarantine | None    KASAN's freed-object delay: (addr, slab, idx, size)
    live.page_owner[pfn] = slab      for every page of every slab

Invariants (kalloc.slab's, and):
 1. all_caches holds exactly the caches not destroyed; by_handle exactly the user ones.
 2. Every page of a slab maps to it in page_owner, and no page of a discarded slab does.
 3. Every LIVE object has a live record of a kind its cache serves; every QUARANTINED
    object is in the quarantine exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Config, Context
from kalloc.debug import Quarantine
from kalloc.errors import BadArgumentError, LeakError
from kalloc.gate import RequestGate
from kalloc.kinds import KIND_CACHE
from kalloc.live import LiveRecord, LiveTable, new_record
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.pages import PagePipeline
from kalloc.physmem import PhysMem
from kalloc.sanitize import Sanitizer
from kalloc.slab import (
    OBJ_FREE,
    OBJ_LIVE,
    OBJ_QUARANTINED,
    SLAB_CPU,
    SLAB_FULL,
    SLAB_KNOWN_FLAGS,
    SLAB_PARTIAL,
    KmemCache,
    Slab,
)

# long-module: the object paths inline their helpers (forget, release, list moves, poison fill): hot path
MAX_USER_CACHES = 1024  # live kmem_cache_create() caches: each costs host memory, no guest RAM
_ZERO = G.ZERO
_UNKNOWN_GFP = ~G.KNOWN_MASK
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_TASK = Context.TASK


class Slub:
    """The slab allocator of one Kalloc (module docstring)."""

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
            if cache.poison and cache.redzone and not gfp & _ZERO:  # _prepare's usual case, inline
                mv, osize = slab.mv, cache.size
                if not cache.pat_free.startswith(mv[off : off + osize]):  # == without a copy (same length)
                    self.sanitizer.report_poison(cache, slab, idx, caller)
                mv[off : off + osize] = cache.pat_fresh_rz[osize - size : 2 * osize - size]
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

    # ================================================================ caches

    def make_cache(
        self, name: str, size: int, align: int, flags: int, ctor: Callable[[int], None] | None, internal: bool
    ) -> KmemCache | None:
        """A new cache (kalloc's own when `internal`), or None when its objects fit in no slab."""
        config = self.config
        cache = KmemCache(
            name,
            size,
            align,
            flags,
            ctor,
            handle=0 if internal else self.next_handle,
            redzone=config.redzone,
            debug=self.debug,
            max_order=config.max_order,
            internal=internal,
        )
        if cache.nobjs == 0 or cache.order > config.max_order:
            return None
        if not internal:
            self.by_handle[cache.handle] = cache
            self.next_handle += 1
        self.all_caches.append(cache)
        return cache

    def cache_by_handle(self, handle: int) -> KmemCache | None:
        """The live user cache with this handle, or None."""
        return self.by_handle.get(handle)

    def kmem_cache_create(
        self, name: str, size: int, align: int = 0, flags: int = 0, ctor: Callable[[int], None] | None = None
    ) -> KmemCache:
        """Create a cache of `size`-byte objects; cache.handle is 1, 2, 3... in creation order.

        align: 0 (default: 8) or a power of two up to 4096. flags: SLAB_* of
        kalloc.slab (SLAB_HWCACHE_ALIGN, SLAB_CACHE_DMA, ...; SLAB_KALLOC_CTOR
        when the caller constructs fresh objects itself). ctor(addr) runs for
        every object when its slab is created, as in Linux.
        Raises BadArgumentError for an empty name, a bad size, align or flag.
        Pair with kmem_cache_destroy().
        """
        if not isinstance(name, str) or not name:
            raise BadArgumentError("kmem_cache_create() needs a non-empty name")
        self.gate.check_size(size, TASK)
        if size == 0:
            raise BadArgumentError(f"kmem_cache_create({name!r}) of 0-byte objects")
        largest = PAGE_SIZE << self.config.max_order
        if size > largest:  # refused before anything is built: no host bytes for a size no slab holds
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): {size}-byte objects exceed the largest slab ({largest} bytes)"
            )
        if len(self.by_handle) >= MAX_USER_CACHES:
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): {MAX_USER_CACHES} caches exist already (kalloc's limit)"
            )
        if not isinstance(align, int) or align < 0 or align & (align - 1) or align > PAGE_SIZE:
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): align {align!r} is not 0 or a power of two <= 4096"
            )
        if not isinstance(flags, int) or flags & ~SLAB_KNOWN_FLAGS or flags < 0:
            raise BadArgumentError(f"kmem_cache_create({name!r}): unknown flags {flags!r}")
        cache = self.make_cache(name, size, align, flags, ctor, internal=False)
        if cache is None:
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): {size}-byte objects do not fit in the largest slab"
            )
        return cache

    @staticmethod
    def check_cache(cache: KmemCache, api: str) -> None:
        if not isinstance(cache, KmemCache):
            raise BadArgumentError(f"{api}(): {cache!r} is not a cache")
        if cache.destroyed:
            raise BadArgumentError(f"{api}() on destroyed cache {cache.name!r}")
        if cache.internal:
            raise BadArgumentError(f"{api}() on kalloc's own cache {cache.name!r}")

    def kmem_cache_alloc(self, cache: KmemCache, gfp: int, caller: Caller = TASK) -> int | None:
        """An object of `cache`, or None (with an oom report unless __GFP_NOWARN).

        After success cache.last_alloc_fresh tells whether the object is handed
        out for the first time since its slab was created (a caller-side
        constructor must run then). Pair with kmem_cache_free(cache, obj).
        Context: GFP_ATOMIC from interrupts. __GFP_DMA is ignored: the cache's
        SLAB_CACHE_DMA flag decides the zone.
        """
        if not isinstance(cache, KmemCache) or cache.destroyed or cache.internal:  # the usual case: one test
            self.check_cache(cache, "kmem_cache_alloc")
        gate = self.gate
        if gfp & _UNKNOWN_GFP or gfp < 0:
            gate.check_gfp(gfp, caller)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK:  # gate.may_sleep, inlined (hot path)
            gate.invalid_context(gfp, caller, "kmem_cache_alloc")
        return self.alloc(cache, cache.size, gfp & ~G.DMA, caller, KIND_CACHE)

    def kmem_cache_free(self, cache: KmemCache, addr: int, caller: Caller = TASK) -> None:
        """Free an object of `cache`. addr 0 is a no-op. Context: any.

        Raises InvalidFreeError (not from this cache, interior pointer, another
        API's memory) or DoubleFreeError.
        """
        if not isinstance(cache, KmemCache) or cache.destroyed or cache.internal:
            self.check_cache(cache, "kmem_cache_free")
        if addr == 0:
            return
        rec = self.records.get(addr)
        slab = self.page_owner.get(addr >> PAGE_SHIFT)
        if rec is None or rec.kind != KIND_CACHE or not isinstance(slab, Slab) or slab.cache is not cache:
            raise self.live.diagnose_free(addr, "kmem_cache_free", caller, cache=cache)
        self.free(slab, addr, rec, caller)

    def kmem_cache_shrink(self, cache: KmemCache) -> int:
        """Release the cache's empty slabs (and its quarantined objects); returns pages released."""
        self.check_cache(cache, "kmem_cache_shrink")
        buddy = self.pages.buddy
        before = buddy.used_pages
        self.drain_quarantine_of(cache)
        self.shrink_cache(cache)
        return before - buddy.used_pages

    def kmem_cache_destroy(self, cache: KmemCache | None, caller: Caller = TASK) -> None:
        """Destroy an empty cache; None is a no-op, as in Linux. With live objects: raises LeakError.

        Before its slabs go, every freed object's poison and red zones are checked (discard()):
        damage is reported (use-after-free, out-of-bounds) at the caller's site.
        """
        if cache is None:
            return
        self.check_cache(cache, "kmem_cache_destroy")
        live = cache.live_objs()
        if live:
            addrs = sorted(
                s.object_addr(i) for s in cache.slabs.values() for i in range(s.nobjs) if s.obj[i] == OBJ_LIVE
            )
            raise LeakError(
                f"kmem_cache_destroy({cache.name!r}): {live} object(s) still allocated",
                addr=addrs[0],
                live=live,
                objects=addrs[:16],
                cache=cache.name,
            )
        self.drain_quarantine_of(cache)
        for slab in list(cache.slabs.values()):
            self.discard(slab, caller=caller)
        cache.destroyed = True
        del self.by_handle[cache.handle]
        self.all_caches.remove(cache)
