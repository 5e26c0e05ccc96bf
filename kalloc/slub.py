"""SLUB's kmem_cache API over the object paths of kalloc.slubpaths (alloc, free, slabs made
and discarded, reclaim): caches created (kalloc's own and the user's), looked up, allocated
from, freed to, shrunk and destroyed.

Data structure:
    by_handle: {handle: KmemCache}   user caches (kmem_cache_create), 1, 2, 3 ...
    all_caches: [KmemCache]          every cache, kalloc's own included, oldest first

Invariants (kalloc.slubpaths', and):
 1. all_caches holds exactly the caches not destroyed; by_handle exactly the user ones.
 2. At most MAX_USER_CACHES user caches live at once; a user cache's handle is never reused.
 3. The API refuses a destroyed cache and kalloc's own (internal) caches (check_cache).
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Context
from kalloc.errors import BadArgumentError, LeakError
from kalloc.kinds import KIND_CACHE
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.slab import OBJ_LIVE, SLAB_KNOWN_FLAGS, KmemCache, Slab
from kalloc.slubpaths import SlubPaths

MAX_USER_CACHES = 1024  # live kmem_cache_create() caches: each costs host memory, no guest RAM
_UNKNOWN_GFP = ~G.KNOWN_MASK
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_TASK = Context.TASK


class Slub(SlubPaths):
    """The slab allocator of one Kalloc: SlubPaths' object paths and the kmem_cache API."""

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
