"""Per-CPU array caches ("magazines") above SLUB: Bonwick's magazines, SLAB's array_cache,
Linux 6.18's SLUB percpu sheaves, for the kmalloc classes 8..2048.

    kmalloc / malloc of class c   pop mags[c] (LIFO); empty -> refill(c): `batch` objects
                                  taken from the slab layer in SLUB's own order, then pop
    kfree / free of a class-c obj push on mags[c]; full -> flush(c): the `batch` oldest go
                                  back to their slabs (Slub.release), then push

An object in a magazine counts as ALLOCATED for the slab layer (slab.inuse, /proc/slabinfo's
active_objs: Linux's per-CPU objects are in use) and is not live for the user: no live
record, so never a leak. Its slot state is OBJ_PERCPU (it was freed: a second free is a
double free, its describe() is "free") or OBJ_PERCPU_NEW (taken fresh by a refill, never
handed out: a free of it is an invalid free). Reclaim flushes every magazine first (a
shrinker, as Linux drains per-CPU caches before it fails an allocation).

A hit (`hit_alloc`, `hit_free`) does exactly the live-table, slot, statistics and listener
work of Slub.alloc / Slub.free for one object; the machine's fast path replays its ring with
the same two functions (kalloc_machine.fastpath), so "magazines on, fast path off" (the
Python twin) is the fast path's reference.

Served only with sanitize="off" (no poison or red zones to keep per object); `enable`
refuses other modes. Requests outside the classes, __GFP_DMA, unknown flags, and every other
API (kzalloc and krealloc through KmallocApi, calloc, realloc, aligned_alloc) keep the plain
SLUB paths; an object those made is still pushed on its class's magazine when kfree / free
frees it.

Invariants:
 1. Every address in mags[c] is an object of caches[c] in state OBJ_PERCPU or OBJ_PERCPU_NEW,
    exactly once; no other object is in those states; len(mags[c]) <= limit.
 2. `dirty` holds every class whose magazine Python changed since the owner last cleared it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Context
from kalloc.kinds import KIND_KMALLOC, KIND_MALLOC
from kalloc.live import LiveRecord, new_record
from kalloc.page import PAGE_SHIFT
from kalloc.slab import OBJ_FREE, OBJ_LIVE, OBJ_PERCPU, OBJ_PERCPU_NEW, SLAB_CPU, SLAB_FULL, KmemCache, Slab

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc

SERVED_MAX = 2048  # the largest request the magazines serve (classes 8 .. 2048)
DEFAULT_LIMIT = 32
_BAD_GFP = ~G.KNOWN_MASK | G.DMA
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_ZERO = G.ZERO
_GFP_MALLOC = G.GFP_KERNEL
_TASK = Context.TASK


class Magazines:
    """The per-CPU array caches of one Kalloc (module docstring). Built by `enable`."""

    def __init__(self, ka: Kalloc, limit: int, batch: int | None = None) -> None:
        self.ka = ka
        self.limit = limit
        self.batch = batch if batch is not None else max(1, (limit + 1) // 2)
        km = ka.kmalloc_api
        self.slub = ka.slub
        self.gate = ka.gate
        self.live = ka.live
        self.records = ka.live.records
        self.page_owner = ka.live.page_owner
        self.caches: list[KmemCache] = []
        for cache in km.by_size[1 : SERVED_MAX + 1]:
            if cache not in self.caches:
                self.caches.append(cache)
        self.index = {cache: i for i, cache in enumerate(self.caches)}
        self.class_of = [0] + [self.index[c] for c in km.by_size[1 : SERVED_MAX + 1]]  # size -> class
        self.mags: list[list[int]] = [[] for _ in self.caches]
        self.dirty: set[int] = set()
        self.malloc_max = min(SERVED_MAX, ka.libc_api.small_max)
        self.refills = self.flushes = 0
        # the machine's fast path: told of every object a Python hit hands out or takes back, or that
        # krealloc / realloc may free (`left`): its byte map
        self.on_alloc: Callable[[int, int, int], None] | None = None
        self.on_free: Callable[[int], None] | None = None
        self._kmalloc, self._kfree, self._malloc, self._free = ka.kmalloc, ka.kfree, ka.malloc, ka.free
        self._krealloc, self._realloc = ka.krealloc, ka.realloc

    # ================================================================ the API faces

    def kmalloc(self, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """KmallocApi.kmalloc through the magazines for the served classes (same checks, same reports)."""
        if 0 < size <= SERVED_MAX and not gfp & _BAD_GFP and gfp >= 0:
            if gfp & _DIRECT_RECLAIM and caller.context is not _TASK:
                self.gate.invalid_context(gfp, caller, "kmalloc")
            return self.alloc(self.class_of[size], size, gfp, caller, KIND_KMALLOC)
        return self._kmalloc(size, gfp, caller)

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        """LibcApi.malloc through the magazines for the served classes."""
        if isinstance(size, int) and 0 < size <= self.malloc_max:
            if caller.context is not _TASK:  # LibcApi.request_ok's report; served all the same
                self.gate.invalid_context(_GFP_MALLOC, caller, "malloc")
            return self.alloc(self.class_of[size], size, _GFP_MALLOC, caller, KIND_MALLOC)
        return self._malloc(size, caller)

    def kfree(self, addr: int, caller: Caller = TASK) -> None:
        """KmallocApi.kfree; a live kmalloc object of a served class goes on its magazine."""
        rec = self.records.get(addr)
        if rec is not None and rec[1] == KIND_KMALLOC:
            owner = self.page_owner.get(addr >> PAGE_SHIFT)
            ci = self.index.get(owner.cache) if isinstance(owner, Slab) else None
            if ci is not None:
                self.push(ci, addr, rec, caller[1], owner)  # type: ignore[arg-type]
                return
        self._kfree(addr, caller)

    def free(self, addr: int, caller: Caller = TASK) -> None:
        """LibcApi.free; a live malloc object of a served class goes on its magazine."""
        rec = self.records.get(addr)
        if rec is not None and rec[1] == KIND_MALLOC:
            owner = self.page_owner.get(addr >> PAGE_SHIFT)
            ci = self.index.get(owner.cache) if isinstance(owner, Slab) else None
            if ci is not None:
                self.push(ci, addr, rec, caller[1], owner)  # type: ignore[arg-type]
                return
        self._free(addr, caller)

    def krealloc(self, addr: int, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """KmallocApi.krealloc; its old object leaves the magazines' reach first (`left`)."""
        self.left(addr)
        return self._krealloc(addr, size, gfp, caller)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        """LibcApi.realloc; its old object leaves the magazines' reach first (`left`)."""
        self.left(addr)
        return self._realloc(addr, size, caller)

    def left(self, addr: int) -> None:
        """An object a path other than `push` may free or resize (krealloc, realloc: Slub.free
        directly): `on_free` is told, so the fast path's map no longer offers it."""
        if self.on_free is not None:
            self.on_free(addr)

    # ================================================================ the layer

    def alloc(self, ci: int, size: int, gfp: int, caller: Caller, kind: int) -> int | None:
        """Pop class ci's magazine (refilled first when empty); None after the slab layer's oom report."""
        mag = self.mags[ci]
        if not mag and not self.refill(ci, gfp, caller, size):
            return None
        addr = mag.pop()
        self.dirty.add(ci)
        slab = self.hit_alloc(addr, size, kind, caller[1], gfp)
        if gfp & _ZERO:
            off = addr - slab.base
            slab.mv[off : off + size] = slab.cache.pat_zero[:size]
        if self.on_alloc is not None:
            self.on_alloc(addr, ci, kind)
        return addr

    def push(self, ci: int, addr: int, rec: LiveRecord, site: int, slab: Slab) -> None:
        """Free a live object of class ci onto its magazine (a flush first when it is full)."""
        mag = self.mags[ci]
        if len(mag) >= self.limit:
            self.flush(ci)
        if self.on_free is not None:
            self.on_free(addr)
        self.hit_free(addr, rec, site, slab)
        mag.append(addr)
        self.dirty.add(ci)

    def hit_alloc(self, addr: int, size: int, kind: int, site: int, gfp: int) -> Slab:
        """Hand out a magazine object (already popped): Slub.alloc's bookkeeping for it."""
        slab: Slab = self.page_owner[addr >> PAGE_SHIFT]  # type: ignore[assignment]
        cache = slab.cache
        idx = (addr - slab.base) // cache.stride
        slab.obj[idx] = OBJ_LIVE
        slab.alloc_site[idx] = site
        cache.total_allocs += 1
        self.records[addr] = new_record(LiveRecord, (size, kind, site, gfp))
        live = self.live
        if live.freed:
            live.freed.pop(addr, None)
        listeners = live.listeners
        if listeners:  # LiveTable.notify, to the listeners that want slab objects (as Slub.alloc)
            n, tell = live.slab_listeners_of
            if tell or n != len(listeners):
                for fn in live.slab_listeners():
                    fn("alloc", addr, size, cache.size)
        return slab

    def hit_free(self, addr: int, rec: LiveRecord, site: int, slab: Slab) -> None:
        """Take back a live object of `slab` onto a magazine (the caller appends it): Slub.free's work."""
        cache = slab.cache
        idx = (addr - slab.base) // cache.stride
        live = self.live
        del self.records[addr]
        if live.not_leak:
            live.not_leak.discard(addr)
        if live.ksized:
            live.ksized.discard(addr)
        size = rec[0]
        listeners = live.listeners
        if listeners:
            n, tell = live.slab_listeners_of
            if tell or n != len(listeners):
                for fn in live.slab_listeners():
                    fn("free", addr, size, cache.size)
        slab.free_site[idx] = site
        slab.freed_size[idx] = size
        slab.freed_kind[idx] = rec[1]
        cache.total_frees += 1
        slab.obj[idx] = OBJ_PERCPU

    def refill(self, ci: int, gfp: int, caller: Caller, size: int) -> bool:
        """Fill an empty magazine with up to `batch` objects from the slab layer; False: none."""
        cache = self.caches[ci]
        got: list[int] = []
        for _ in range(self.batch):
            addr = self.take(cache, gfp if not got else gfp | G.NOWARN, caller, size)
            if addr is None:
                break
            got.append(addr)
        if not got:
            return False
        self.refills += 1
        got.reverse()  # the first object the slab layer gave is popped first
        self.mags[ci].extend(got)
        self.dirty.add(ci)
        return True

    def take(self, cache: KmemCache, gfp: int, caller: Caller, size: int) -> int | None:
        """One object from the slab layer, as Slub.alloc picks it, marked as a magazine's."""
        slab = cache.cpu
        if slab is None or slab.inuse == slab.nobjs:
            if slab is not None and cache.partial:
                slab.where = SLAB_FULL
                slab = cache.partial.popitem()[1]
                slab.where = SLAB_CPU
                cache.cpu = slab
            else:
                slab = cache.next_slab() or self.slub.new_slab(cache, gfp, caller, size)
                if slab is None:
                    return None
        if slab.free:
            idx = slab.free.pop()
            slab.obj[idx] = OBJ_PERCPU
        else:
            idx = slab.next_fresh
            slab.next_fresh = idx + 1
            slab.obj[idx] = OBJ_PERCPU_NEW
        slab.inuse += 1
        return slab.base + idx * cache.stride + cache.left

    def flush(self, ci: int, n: int | None = None) -> None:
        """Give the `n` (default `batch`) oldest objects of a magazine back to their slabs."""
        mag = self.mags[ci]
        out = mag[: self.batch if n is None else n]
        del mag[: len(out)]
        self.flushes += 1
        self.dirty.add(ci)
        page_owner, release = self.page_owner, self.slub.release
        for addr in out:
            slab: Slab = page_owner[addr >> PAGE_SHIFT]  # type: ignore[assignment]
            idx = (addr - slab.base) // slab.cache.stride
            if slab.obj[idx] == OBJ_PERCPU_NEW:
                slab.freed_kind[idx] = 0
            slab.obj[idx] = OBJ_FREE
            release(slab, idx)

    def flush_all(self) -> None:
        """Empty every magazine (the shrinker; also `disable`)."""
        for ci, mag in enumerate(self.mags):
            if mag:
                self.flush(ci, len(mag))

    def shrink(self) -> None:
        """The shrinker reclaim runs: flush every magazine, then free the slabs that emptied."""
        if any(self.mags):
            self.flush_all()
            self.slub.shrink()

    # ================================================================ what it shows

    def tunables(self) -> dict[str, tuple[int, int, int]]:
        """/proc/slabinfo's `tunables <limit> <batchcount> <sharedfactor>` per served cache."""
        return {c.name: (self.limit, self.batch, 0) for c in self.caches}

    def section(self) -> dict[str, object]:
        """The report's `percpu` key: the layer's settings and what it holds now."""
        return {
            "limit": self.limit,
            "batch": self.batch,
            "refills": self.refills,
            "flushes": self.flushes,
            "held": {c.name: len(m) for c, m in zip(self.caches, self.mags, strict=True) if m},
        }


def enable(ka: Kalloc, limit: int = DEFAULT_LIMIT, batch: int | None = None) -> Magazines:
    """Put the magazines in front of ka's kmalloc, kfree, malloc and free (before anything binds
    them: a heap or the bridge's services). Raises ValueError unless sanitize is "off"."""
    if ka.config.sanitize != "off":
        raise ValueError("the per-CPU magazines are served with --sanitize off only")
    if limit < 1:
        raise ValueError(f"a magazine holds at least 1 object (got {limit})")
    mags = Magazines(ka, limit, batch)
    ka.kmalloc, ka.kfree, ka.malloc, ka.free = mags.kmalloc, mags.kfree, mags.malloc, mags.free  # type: ignore[method-assign]
    ka.krealloc, ka.realloc = mags.krealloc, mags.realloc  # type: ignore[method-assign]
    ka.pages.register_shrinker(mags.shrink)
    ka.statistics.tunables = mags.tunables()
    ka.magazines = mags
    return mags
