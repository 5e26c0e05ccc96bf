"""The Kalloc facade: one allocator instance over a PhysMem, and its page and cache API.

`Kalloc` composes the parts: the buddy allocator (kalloc.buddy) with zones
and watermarks (kalloc.zone), slab caches (kalloc.slab), and the API mixins
for kmalloc (kalloc.kmalloc), the C library (kalloc.libc), DMA
(kalloc.dma) and statistics (kalloc.stats). This module holds what they
share: the request pipeline (validate, check context, allocate, reclaim, fail
with a report), the record of live objects, misuse diagnosis, the page and
kmem_cache API, and the full invariant walk `check()`.

Data structures (all keyed by ints; nothing depends on object ids):
    _live: dict[addr, (size, kind, site, gfp)]    every live object, any API
    _page_owner: dict[pfn, Slab | PoolPage]       every page of a slab or pool page
    _buddy.blocks: dict[head pfn, npages]         every allocated page block
    _freed: dict[addr, (kind, size, alloc_site, free_site)]
                                                  page-level objects freed and not reallocated
                                                  at that address (double-free diagnosis)
    _not_leak, _ksized: set[addr]                 kmemleak_not_leak marks; objects whose
                                                  tail was unlocked by ksize()

Errors: misuse raises before any state changes (BadArgumentError,
InvalidFreeError, DoubleFreeError, LeakError); conditions the run survives are
appended to `reports` (OutOfMemoryError warnings, InvalidContextError,
OutOfBoundsError / UseAfterFreeError found by the poison checks).

Invariants (check() proves 1-6; see also kalloc.buddy and kalloc.slab):
 1. Every page is free in one buddy list, in one allocated block, or reserved.
 2. Every live object lies inside an allocated block of its kind: a LIVE slot
    of a slab, an allocated pool block, or a page block it heads.
 3. Every LIVE slab slot and pool block has a live record; no live record is
    left without one.
 4. No two live objects overlap.
 5. Slab and pool lists agree with their counters (kalloc.slab invariants).
 6. Free + used + reserved bytes == RAM.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc import gfp as G
from kalloc.buddy import Buddy
from kalloc.config import TASK, Caller, Config, Context
from kalloc.debug import (
    POISON_FREE,
    POISON_INUSE,
    RED_ACTIVE,
    Quarantine,
    default_quarantine_bytes,
    find_damage,
)
from kalloc.dma import DmaApi, DmaPool, DmaPools, PoolPage
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidContextError,
    InvalidFreeError,
    InvariantError,
    KallocError,
    LeakError,
    OutOfBoundsError,
    OutOfMemoryError,
    UseAfterFreeError,
)
from kalloc.kmalloc import KmallocApi
from kalloc.libc import LibcApi
from kalloc.live import LiveTable
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order, pages_for
from kalloc.physmem import PhysMem
from kalloc.slab import (
    OBJ_FREE,
    OBJ_LIVE,
    OBJ_QUARANTINED,
    OBJ_UNUSED,
    SLAB_CPU,
    SLAB_EMPTY,
    SLAB_FULL,
    SLAB_KNOWN_FLAGS,
    SLAB_PARTIAL,
    KmemCache,
    Slab,
)
from kalloc.slub import Slub
from kalloc.stackdepot import StackDepot
from kalloc.stats import (
    KIND_ALLOC_API,
    KIND_CACHE,
    KIND_DMA_COHERENT,
    KIND_DMA_POOL,
    KIND_KMALLOC,
    KIND_MALLOC,
    KIND_NAMES,
    KIND_PAGES,
    KIND_PAGES_EXACT,
    Allocation,
    StatsApi,
)
from kalloc.zone import (
    ALLOC_MIN_RESERVE,
    ZONE_DMA,
    ZONE_NORMAL,
    alloc_flags_for,
    default_min_free_kbytes,
    setup_lowmem_reserve,
    setup_watermarks,
)

U32_MAX = 0xFFFF_FFFF  # the firmware is 32-bit: no size or address argument exceeds this

_TASK_CTX = Context.TASK
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_ZERO = G.ZERO
_UNKNOWN_GFP = ~G.KNOWN_MASK
_HEAP_KINDS = (KIND_KMALLOC, KIND_MALLOC)

Listener = Callable[[str, int, int, int], None]


class Kalloc(KmallocApi, LibcApi, DmaApi, StatsApi):
    """A kernel-style allocator (Linux buddy + SLUB model) over physical memory.

    Args:
        phys: the RAM banks (bank.dma marks DMA-reachable banks: zone DMA).
        config: policy settings.
        reserved: [(start, end, label)] physical ranges that are not the
            allocator's (firmware image, stacks); their pages are reserved and
            accounted by label.

    Public attributes: config, phys, depot (StackDepot: callers save stacks here
    and pass the handle as Caller.site), reports (non-fatal reports, in order),
    listeners (callables fn(event, addr, size, usable) told of every "alloc",
    "free" and "resize" of a live object), min_free_kbytes.
    """

    def __init__(
        self,
        phys: PhysMem,
        config: Config = Config(),  # noqa: B008 - Config is an immutable value
        reserved: list[tuple[int, int, str]] | tuple[()] = (),
    ) -> None:
        self.phys = phys
        self.config = config
        self.depot = StackDepot()
        self.reports: list[KallocError] = []
        self.listeners: list[Listener] = []
        self.buddy = Buddy(phys, config.max_order, config.struct_page_size, list(reserved))
        self._setup_zones()
        self.debug = config.debug
        self.kasan = config.sanitize == "kasan"
        self.live = LiveTable()
        self._not_leak: set[int] = set()
        self._ksized: set[int] = set()
        self._freed: dict[int, tuple[int, int, int, int]] = {}
        self.page_owner: dict[int, Slab | PoolPage] = {}
        quarantine = None
        if self.kasan:
            budget = config.quarantine_bytes
            if budget is None:
                budget = default_quarantine_bytes(self.buddy.ram_bytes)
            quarantine = Quarantine(budget)
        self.slub = Slub(quarantine)
        self.pools = DmaPools()
        self._init_kmalloc()

    @classmethod
    def standalone(cls, size: int = 16 << 20, dma_size: int = 4 << 20, config: Config = Config()) -> Kalloc:  # noqa: B008
        """An allocator over a fresh bytearray (PhysMem.standalone): the REPL and test setup."""
        return cls(PhysMem.standalone(size=size, dma_size=dma_size), config)

    def _setup_zones(self) -> None:
        zones = self.buddy.zones
        populated = self.buddy.populated_zones
        managed_kb = sum(z.managed for z in populated) * (PAGE_SIZE // 1024)
        mfk = self.config.min_free_kbytes
        self.min_free_kbytes = default_min_free_kbytes(managed_kb) if mfk is None else mfk
        setup_watermarks(populated, self.min_free_kbytes)
        setup_lowmem_reserve(populated, self.config.lowmem_reserve_ratio)
        # Zonelists, highest zone first: NORMAL requests fall back to DMA.
        self._zl_normal = [z for z in (zones[ZONE_NORMAL], zones[ZONE_DMA]) if z.populated]
        self._zl_dma = [zones[ZONE_DMA]] if zones[ZONE_DMA].populated else []

    # ================================================================ argument checks

    def _check_gfp(self, gfp: int, caller: Caller) -> None:
        if gfp & _UNKNOWN_GFP or gfp < 0:
            raise BadArgumentError(
                f"unknown GFP flag bits {gfp & _UNKNOWN_GFP & U32_MAX:#x} in {gfp:#x}",
                site=caller.site,
                gfp=gfp,
            )

    @staticmethod
    def _check_size(size: int, caller: Caller, what: str = "size") -> None:
        if not isinstance(size, int) or size < 0 or size > U32_MAX:
            raise BadArgumentError(
                f"{what} {size!r} does not fit in 32 bits (size overflow)", site=caller.site
            )

    def _check_order(self, order: int, caller: Caller) -> None:
        if not isinstance(order, int) or not 0 <= order <= self.config.max_order:
            raise BadArgumentError(f"order {order!r} is outside 0..{self.config.max_order}", site=caller.site)

    def _invalid_context(self, gfp: int, caller: Caller, api: str) -> None:
        """Report a sleeping allocation from atomic context (Linux: might_sleep() in slab_pre_alloc_hook)."""
        where = "from interrupt context" if caller.context is Context.IRQ else "with interrupts disabled"
        self.reports.append(
            InvalidContextError(
                f"sleeping allocation {where}",
                site=caller.site,
                api=api,
                gfp=G.describe(gfp),
                context=caller.context.name.lower(),
                depth=caller.depth,
            )
        )

    # ================================================================ the page pipeline

    def _alloc_block(self, gfp: int, order: int, caller: Caller, size: int) -> int | None:
        """A block of 2^order pages for a request, or None after reclaim and a report.

        Zones are tried in fallback order against their min watermark (reserve
        access per kalloc.zone.alloc_flags_for). On failure: reclaim (shrink
        every cache, drain the quarantine), retry once; a __GFP_NOFAIL request
        retries once more with ALLOC_MIN_RESERVE (as __alloc_pages_slowpath's
        nofail path) and raises OutOfMemoryError if that fails too.
        """
        zones = self._zl_dma if gfp & G.DMA else self._zl_normal
        if order > self.config.max_order:
            self._oom(gfp, order, size, caller, "larger than the largest buddy block")
            return None
        highest = zones[0].idx if zones else ZONE_DMA
        flags = alloc_flags_for(gfp)
        pfn = self.buddy.alloc_zonelist(zones, order, highest, flags)
        if pfn is None:
            self._reclaim()
            pfn = self.buddy.alloc_zonelist(zones, order, highest, flags)
            if pfn is None and gfp & G.NOFAIL:
                pfn = self.buddy.alloc_zonelist(zones, order, highest, flags | ALLOC_MIN_RESERVE)
            if pfn is None:
                self._oom(gfp, order, size, caller, "no zone has a free block above its watermark")
                return None
        self._freed.pop(pfn << PAGE_SHIFT, None)
        return pfn

    def _reclaim(self) -> int:
        """Reclaim without demand paging: drain the quarantine, free every empty slab.

        Like kmem_cache_shrink() on every cache: the empty slabs kept on the
        lists (min_partial) and each cache's current slab when it is empty.
        (Linux's reclaim leaves SLUB alone; on a board of a few hundred KiB an
        idle order-3 slab is too much to keep.) Returns pages freed.
        """
        before = self.buddy.used_pages
        if self.slub.quarantine is not None:
            for entry in self.slub.quarantine.drain():
                self._slab_release(entry[1], entry[2])
        for cache in self.slub.all_caches:
            self._shrink_cache(cache)
        return before - self.buddy.used_pages

    def _oom(self, gfp: int, order: int, size: int, caller: Caller, reason: str) -> None:
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

    def _too_large(self, gfp: int, size: int, caller: Caller, reason: str) -> None:
        """A request no memory state could meet (size over a limit): an oom report, NULL."""
        self._oom(gfp & ~G.NOFAIL, get_order(size), size, caller, reason)

    def _commit_pages(self, pfn: int, gfp: int, size: int, kind: int, caller: Caller) -> int:
        """Record a page block as a live object and prepare its bytes; returns its address.

        __GFP_ZERO and dma_alloc_coherent zero the whole block. Otherwise, with
        the sanitizer on, the object is filled 0x5a (fresh) and, for heap kinds
        (kmalloc, malloc), the rest of its last page is a 0xcc red zone.
        """
        addr = pfn << PAGE_SHIFT
        nbytes = self.buddy.blocks[pfn] << PAGE_SHIFT
        if gfp & _ZERO or kind == KIND_DMA_COHERENT:
            self.phys.fill(addr, nbytes, 0)
        elif self.debug:
            self.phys.fill(addr, size if kind in _HEAP_KINDS else nbytes, POISON_INUSE)
        if self.debug and kind in _HEAP_KINDS:
            self.phys.fill(addr + size, pages_for(size) * PAGE_SIZE - size, RED_ACTIVE)
        self.live[addr] = (size, kind, caller.site, gfp)
        if self.listeners:
            self._notify("alloc", addr, size, nbytes)
        return addr

    def _release_pages(self, addr: int, rec: tuple[int, int, int, int], caller: Caller) -> None:
        """Free a page-level live object (checks its tail red zone first)."""
        size, kind = rec[0], rec[1]
        pfn = addr >> PAGE_SHIFT
        if self.debug and kind in _HEAP_KINDS and addr not in self._ksized:
            end = pages_for(size) * PAGE_SIZE
            got = self.phys.read(addr + size, end - size)
            damage = find_damage(got, bytes([RED_ACTIVE]) * len(got), size)
            if damage:
                self._report_oob(addr, rec, damage, caller, "red zone after the object")
        self._forget_live(addr, rec)
        npages = self.buddy.blocks[pfn]
        if self.debug:
            # Like xv6's kfree "fill with junk to catch dangling refs".
            self.phys.fill(addr, npages << PAGE_SHIFT, POISON_FREE)
        self.buddy.free(pfn)
        self._freed[addr] = (kind, size, rec[2], caller.site)

    def _forget_live(self, addr: int, rec: tuple[int, int, int, int]) -> None:
        del self.live[addr]
        if self._not_leak:
            self._not_leak.discard(addr)
        usable = 0
        if self.listeners:
            usable = self._usable(addr, rec)
        if self._ksized:
            self._ksized.discard(addr)
        if self.listeners:
            self._notify("free", addr, rec[0], usable)

    def _notify(self, event: str, addr: int, size: int, usable: int) -> None:
        for fn in self.listeners:
            fn(event, addr, size, usable)

    # ================================================================ slab objects

    def _slab_alloc(self, cache: KmemCache, size: int, gfp: int, caller: Caller, kind: int) -> int | None:
        """One object of `cache` (the hot path of kmalloc, malloc and kmem_cache_alloc)."""
        slab = cache.cpu
        if slab is None or slab.inuse == slab.nobjs:
            slab = cache.next_slab() or self._new_slab(cache, gfp, caller, size)
            if slab is None:
                return None
        if slab.free:
            idx = slab.free.pop()
            fresh = False
        else:
            idx = slab.next_fresh
            slab.next_fresh = idx + 1
            fresh = True
        off = idx * cache.stride + cache.left
        addr = slab.base + off
        if self.debug:
            self._slab_prepare(cache, slab, idx, off, size, gfp, caller)
        elif gfp & _ZERO:
            slab.mv[off : off + size] = cache.pat_zero[:size]
        slab.inuse += 1
        slab.obj[idx] = OBJ_LIVE
        slab.alloc_site[idx] = caller.site
        cache.last_alloc_fresh = fresh
        cache.total_allocs += 1
        self.live[addr] = (size, kind, caller.site, gfp)
        if self._freed:
            self._freed.pop(addr, None)
        if self.listeners:
            self._notify("alloc", addr, size, cache.size)
        return addr

    def _slab_prepare(
        self, cache: KmemCache, slab: Slab, idx: int, off: int, size: int, gfp: int, caller: Caller
    ) -> None:
        """Sanitizer work when an object is handed out: check its poison, fill it, guard its tail."""
        mv = slab.mv
        osize = cache.size
        if cache.poison:
            if mv[off : off + osize].tobytes() != cache.pat_free:
                self._report_poison(cache, slab, idx, caller)
            mv[off : off + size] = cache.pat_zero[:size] if gfp & _ZERO else cache.pat_fresh[:size]
        elif gfp & _ZERO:
            mv[off : off + size] = cache.pat_zero[:size]
        if cache.redzone and size < osize:
            mv[off + size : off + osize] = cache.pat_rz[: osize - size]

    def _new_slab(self, cache: KmemCache, gfp: int, caller: Caller, size: int) -> Slab | None:
        """allocate_slab(): pages for a new slab, laid out, constructed and made current."""
        slab_gfp = (gfp & ~_ZERO) | (G.DMA if cache.dma else 0)
        pfn = self._alloc_block(slab_gfp, cache.order, caller, size)
        if pfn is None:
            return None
        base = pfn << PAGE_SHIFT
        slab = Slab(cache, pfn, self.phys.view(base, cache.slab_bytes))
        if self.debug:
            slab.mv[:] = cache.template
        for p in range(pfn, pfn + (1 << cache.order)):
            self.page_owner[p] = slab
        if cache.ctor is not None:
            for i in range(slab.nobjs):
                cache.ctor(slab.object_addr(i))
        cache.install(slab)
        return slab

    def _slab_free(self, slab: Slab, addr: int, rec: tuple[int, int, int, int], caller: Caller) -> None:
        """Free a live slab object: check its red zones, poison it, return (or quarantine) it."""
        cache = slab.cache
        off = addr - slab.base
        idx = off // cache.stride
        if self.debug:
            self._slab_check_redzones(cache, slab, idx, off, rec, caller)
            if cache.poison:
                slab.mv[off : off + cache.size] = cache.pat_free
        self._forget_live(addr, rec)
        slab.free_site[idx] = caller.site
        cache.total_frees += 1
        q = self.slub.quarantine
        if q is not None:
            slab.obj[idx] = OBJ_QUARANTINED
            for entry in q.push((addr, slab, idx, cache.size)):
                self._slab_release(entry[1], entry[2])
            return
        self._slab_release(slab, idx)

    def _slab_release(self, slab: Slab, idx: int) -> None:
        """Put object `idx` back on its slab's free list; discard the slab if it is surplus."""
        slab.obj[idx] = OBJ_FREE
        slab.free.append(idx)
        slab.inuse -= 1
        if slab.where != SLAB_CPU:
            dead = slab.cache.after_free(slab)
            if dead is not None:
                self._slab_discard(dead)

    def _slab_discard(self, slab: Slab) -> None:
        """discard_slab(): check the padding, unmap the pages, free them to the buddy."""
        cache = slab.cache
        if self.debug:
            self._check_slab_padding(slab)
        cache.forget(slab)
        for p in range(slab.pfn, slab.pfn + (1 << slab.order)):
            del self.page_owner[p]
        self.buddy.free(slab.pfn)

    def _shrink_cache(self, cache: KmemCache) -> int:
        """Free every empty slab of `cache`; returns pages freed."""
        freed = 0
        for slab in cache.take_empty():
            self._slab_discard(slab)
            freed += 1 << slab.order
        return freed

    # ================================================================ sanitizer reports

    def _slab_check_redzones(
        self,
        cache: KmemCache,
        slab: Slab,
        idx: int,
        off: int,
        rec: tuple[int, int, int, int],
        caller: Caller,
    ) -> None:
        """check_object() at free: left red zone, then tail + right red zone (repaired after a report)."""
        if not cache.redzone:
            return
        mv = slab.mv
        left = cache.left
        slot = off - left
        got = mv[slot:off].tobytes()
        if got != cache.pat_rz[:left]:
            damage = find_damage(got, cache.pat_rz[:left].tobytes(), -left)
            self._report_oob(slab.base + off, rec, damage, caller, "red zone before the object")
            mv[slot:off] = cache.pat_rz[:left]
        guard = cache.size if slab.base + off in self._ksized else rec[0]
        end = slot + cache.stride
        got = mv[off + guard : end].tobytes()
        if got != cache.pat_rz[: end - off - guard]:
            damage = find_damage(got, cache.pat_rz[: end - off - guard].tobytes(), guard)
            self._report_oob(slab.base + off, rec, damage, caller, "red zone after the object")
            mv[off + guard : end] = cache.pat_rz[: end - off - guard]

    def _report_oob(
        self, addr: int, rec: tuple[int, int, int, int], damage: dict | None, caller: Caller, where: str
    ) -> None:
        assert damage is not None
        self.reports.append(
            OutOfBoundsError(
                f"{where} overwritten: {damage['count']} byte(s) changed at offset {damage['offset']}"
                f" of a {rec[0]}-byte object",
                addr=addr + damage["offset"],
                site=caller.site,
                object=self._object_dict(addr, rec),
                alloc_site=rec[2],
                **damage,
            )
        )

    def _report_poison(self, cache: KmemCache, slab: Slab, idx: int, caller: Caller) -> None:
        """A free object's poison changed: something wrote to it after it was freed."""
        off = idx * cache.stride + cache.left
        got = slab.mv[off : off + cache.size].tobytes()
        damage = find_damage(got, cache.pat_free, 0)
        assert damage is not None
        addr = slab.base + off
        self.reports.append(
            UseAfterFreeError(
                f"write to a freed object: {damage['count']} byte(s) of poison changed at offset"
                f" {damage['offset']} of a freed {cache.size}-byte {cache.name} object",
                addr=addr + damage["offset"],
                site=caller.site,
                object={"addr": addr, "size": cache.size, "kind": self._cache_kind_name(cache)},
                alloc_site=slab.alloc_site[idx],
                free_site=slab.free_site[idx],
                **damage,
            )
        )

    def _check_slab_padding(self, slab: Slab) -> KallocError | None:
        """slab_pad_check(): the bytes after the last slot must still read 0x5a."""
        cache = slab.cache
        start = slab.nobjs * cache.stride
        got = slab.mv[start:].tobytes()
        if got == cache.pat_pad:
            return None
        damage = find_damage(got, cache.pat_pad, 0)
        assert damage is not None
        err = OutOfBoundsError(
            f"slab padding overwritten: {damage['count']} byte(s) after the last {cache.name} object",
            addr=slab.base + start + damage["offset"],
            object={"addr": slab.base + start, "size": len(got), "kind": f"slab-padding:{cache.name}"},
            **damage,
        )
        self.reports.append(err)
        slab.mv[start:] = cache.pat_pad
        return err

    # ================================================================ records and lookup

    def _cache_kind_name(self, cache: KmemCache) -> str:
        return cache.name if cache.internal else f"cache:{cache.name}"

    def _kind_name(self, addr: int, rec: tuple[int, int, int, int]) -> str:
        kind = rec[1]
        if kind == KIND_CACHE:
            owner = self.page_owner[addr >> PAGE_SHIFT]
            assert isinstance(owner, Slab)
            return f"cache:{owner.cache.name}"
        if kind == KIND_DMA_POOL:
            owner = self.page_owner[addr >> PAGE_SHIFT]
            assert isinstance(owner, PoolPage)
            return f"dma_pool:{owner.pool.name}"
        return KIND_NAMES[kind]

    def _object_dict(self, addr: int, rec: tuple[int, int, int, int]) -> dict[str, int | str]:
        return {"addr": addr, "size": rec[0], "kind": self._kind_name(addr, rec)}

    def _usable(self, addr: int, rec: tuple[int, int, int, int]) -> int:
        """Bytes the owner of a live object may use: the slot's object size, or its pages."""
        owner = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(owner, Slab):
            return owner.cache.size
        if isinstance(owner, PoolPage):
            return owner.pool.size
        return self.buddy.blocks[addr >> PAGE_SHIFT] << PAGE_SHIFT

    def _allocation(self, addr: int, rec: tuple[int, int, int, int]) -> Allocation:
        return Allocation(
            addr=addr,
            size=rec[0],
            kind=self._kind_name(addr, rec),
            site=rec[2],
            not_leak=addr in self._not_leak,
            gfp=rec[3],
            usable=self._usable(addr, rec),
        )

    def _container(self, addr: int) -> tuple[int, tuple[int, int, int, int]] | None:
        """(start, record) of the live object whose slot or page block contains addr."""
        pfn = addr >> PAGE_SHIFT
        owner = self.page_owner.get(pfn)
        if isinstance(owner, Slab):
            cache = owner.cache
            idx = (addr - owner.base) // cache.stride
            if idx < owner.nobjs and owner.obj[idx] == OBJ_LIVE:
                start = owner.object_addr(idx)
                return start, self.live[start]
            return None
        if isinstance(owner, PoolPage):
            idx = owner.pool.block_index_containing(addr - owner.base)
            if idx is not None and owner.obj[idx] == OBJ_LIVE:
                start = owner.base + owner.pool.offsets[idx]
                return start, self.live[start]
            return None
        blocks = self.buddy.blocks
        for k in range(self.config.max_order + 1):
            head = pfn & ~((1 << k) - 1)
            n = blocks.get(head)
            if n is not None:
                if pfn < head + n:
                    start = head << PAGE_SHIFT
                    rec = self.live.get(start)
                    return (start, rec) if rec is not None else None
                return None
        return None

    def live_allocations(self) -> list[Allocation]:
        """Every live object, sorted by address."""
        return [self._allocation(a, self.live[a]) for a in sorted(self.live)]

    def lookup(self, addr: int) -> Allocation | None:
        """The live object whose slot (object, red zones, padding) or page block contains addr."""
        hit = self._container(addr)
        return self._allocation(*hit) if hit else None

    def describe(self, addr: int) -> dict | None:
        """What lies at addr, for reports: a live or freed object (with sites), or None.

        Returns {"state": "live" | "free" | "quarantined", "object": {addr, size,
        kind}, "offset": addr - object start, "alloc_site", "free_site"}. Free
        slab objects and DMA pool blocks, and page-level objects freed and not
        reused since, are "free" (a never-used slot has free_site 0).
        """
        hit = self._container(addr)
        if hit:
            start, rec = hit
            return {
                "state": "live",
                "object": self._object_dict(start, rec),
                "offset": addr - start,
                "alloc_site": rec[2],
                "free_site": 0,
            }
        owner = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(owner, Slab):
            cache = owner.cache
            idx = (addr - owner.base) // cache.stride
            if idx < owner.nobjs and owner.obj[idx] in (OBJ_FREE, OBJ_QUARANTINED):
                start = owner.object_addr(idx)
                return {
                    "state": "quarantined" if owner.obj[idx] == OBJ_QUARANTINED else "free",
                    "object": {"addr": start, "size": cache.size, "kind": self._cache_kind_name(cache)},
                    "offset": addr - start,
                    "alloc_site": owner.alloc_site[idx],
                    "free_site": owner.free_site[idx],
                }
            return None
        if isinstance(owner, PoolPage):
            pool = owner.pool
            idx = pool.block_index_containing(addr - owner.base)
            if idx is not None and owner.obj[idx] == OBJ_FREE:
                start = owner.base + pool.offsets[idx]
                return {
                    "state": "free",
                    "object": {"addr": start, "size": pool.size, "kind": f"dma_pool:{pool.name}"},
                    "offset": addr - start,
                    "alloc_site": owner.alloc_site[idx],
                    "free_site": owner.free_site[idx],
                }
            return None
        return self._describe_freed_pages(addr)

    def _describe_freed_pages(self, addr: int) -> dict | None:
        """A page-level object freed (and its head not reallocated) whose pages hold addr."""
        if owner_free := self._freed:
            for k in range(self.config.max_order + 1):
                head = addr & ~((PAGE_SIZE << k) - 1)
                rec = owner_free.get(head)
                if rec is not None and addr < head + pages_for(max(rec[1], 1)) * PAGE_SIZE:
                    kind, size, alloc_site, free_site = rec
                    return {
                        "state": "free",
                        "object": {"addr": head, "size": size, "kind": KIND_NAMES[kind]},
                        "offset": addr - head,
                        "alloc_site": alloc_site,
                        "free_site": free_site,
                    }
        return None

    # ================================================================ misuse diagnosis

    def _diagnose_free(
        self,
        addr: int,
        api: str,
        caller: Caller,
        cache: KmemCache | None = None,
        pool: DmaPool | None = None,
    ) -> KallocError:
        """The error for a free that does not match a live object of the right kind (slow path)."""
        site = caller.site
        rec = self.live.get(addr)
        if rec is not None:
            obj = self._object_dict(addr, rec)
            if cache is not None and rec[1] == KIND_CACHE:
                msg = f"{api}() of an object of cache {obj['kind'][6:]!r} passed with cache {cache.name!r}"
                return InvalidFreeError(msg, addr=addr, site=site, object=obj, alloc_site=rec[2])
            if pool is not None and rec[1] == KIND_DMA_POOL:
                msg = f"{api}() of a block of pool {obj['kind'][9:]!r} passed with pool {pool.name!r}"
                return InvalidFreeError(msg, addr=addr, site=site, object=obj, alloc_site=rec[2])
            msg = f"{api}() of memory allocated by {KIND_ALLOC_API[rec[1]]}() (wrong API pair)"
            return InvalidFreeError(msg, addr=addr, site=site, object=obj, alloc_site=rec[2])
        hit = self._container(addr)
        if hit is not None:
            start, rec = hit
            return InvalidFreeError(
                f"{api}() of a pointer {addr - start} bytes into a live object (not its start)",
                addr=addr,
                site=site,
                offset=addr - start,
                object=self._object_dict(start, rec),
                alloc_site=rec[2],
            )
        freed = self._freed_object_at(addr)
        if freed is not None:
            obj, alloc_site, free_site = freed
            return DoubleFreeError(
                f"{api}() of an object that was already freed",
                addr=addr,
                site=site,
                object=obj,
                alloc_site=alloc_site,
                free_site=free_site,
            )
        if addr < 0 or not self.phys.contains(addr):
            return InvalidFreeError(f"{api}() of {addr:#x}, which is not a RAM address", addr=addr, site=site)
        return InvalidFreeError(f"{api}() of a pointer that was never allocated", addr=addr, site=site)

    def _freed_object_at(self, addr: int) -> tuple[dict, int, int] | None:
        """(object, alloc_site, free_site) of a freed object starting at addr, if one is known."""
        owner = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(owner, Slab):
            cache = owner.cache
            idx, delta = cache.object_index(owner, addr)
            if delta == 0 and idx < owner.nobjs and owner.obj[idx] in (OBJ_FREE, OBJ_QUARANTINED):
                obj = {"addr": addr, "size": cache.size, "kind": self._cache_kind_name(cache)}
                return obj, owner.alloc_site[idx], owner.free_site[idx]
            return None
        if isinstance(owner, PoolPage):
            idx = owner.pool.block_index_at(addr - owner.base)
            if idx is not None and owner.obj[idx] == OBJ_FREE:
                obj = {"addr": addr, "size": owner.pool.size, "kind": f"dma_pool:{owner.pool.name}"}
                return obj, owner.alloc_site[idx], owner.free_site[idx]
            return None
        rec = self._freed.get(addr)
        if rec is not None:
            kind, size, alloc_site, free_site = rec
            return {"addr": addr, "size": size, "kind": KIND_NAMES[kind]}, alloc_site, free_site
        return None

    # ================================================================ page API

    def alloc_pages(self, gfp: int, order: int, caller: Caller = TASK) -> int | None:
        """Allocate 2^order contiguous pages; returns the physical address or None.

        Pair with free_pages(addr, order). Context: GFP_ATOMIC / GFP_NOWAIT from
        interrupts; a blocking gfp there is reported as invalid-context.
        Raises BadArgumentError for unknown GFP bits or an order outside 0..max_order.
        """
        self._check_gfp(gfp, caller)
        self._check_order(order, caller)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK_CTX:
            self._invalid_context(gfp, caller, "alloc_pages")
        pfn = self._alloc_block(gfp, order, caller, PAGE_SIZE << order)
        if pfn is None:
            return None
        return self._commit_pages(pfn, gfp, PAGE_SIZE << order, KIND_PAGES, caller)

    def free_pages(self, addr: int, order: int, caller: Caller = TASK) -> None:
        """Free what alloc_pages(gfp, order) returned; addr 0 is a no-op. Context: any."""
        self._check_order(order, caller)
        if addr == 0:
            return
        rec = self.live.get(addr)
        if rec is None or rec[1] != KIND_PAGES:
            raise self._diagnose_free(addr, "free_pages", caller)
        if get_order(rec[0]) != order:
            raise InvalidFreeError(
                f"free_pages() with order {order} of a block allocated with order {get_order(rec[0])}",
                addr=addr,
                site=caller.site,
                object=self._object_dict(addr, rec),
                alloc_site=rec[2],
            )
        self._release_pages(addr, rec, caller)

    def alloc_pages_exact(self, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """Allocate ceil(size / 4096) pages with no power-of-two waste (make_alloc_exact()).

        The block of get_order(size) is split and its unused tail freed at once.
        Pair with free_pages_exact(addr, size). Raises BadArgumentError for size 0.
        """
        self._check_gfp(gfp, caller)
        self._check_size(size, caller)
        if size == 0:
            raise BadArgumentError("alloc_pages_exact() of 0 bytes", site=caller.site)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK_CTX:
            self._invalid_context(gfp, caller, "alloc_pages_exact")
        pfn = self._alloc_block(gfp, get_order(size), caller, size)
        if pfn is None:
            return None
        self.buddy.trim(pfn, pages_for(size))
        return self._commit_pages(pfn, gfp, size, KIND_PAGES_EXACT, caller)

    def free_pages_exact(self, addr: int, size: int, caller: Caller = TASK) -> None:
        """Free what alloc_pages_exact(size) returned (the same size, in pages). addr 0: no-op."""
        self._check_size(size, caller)
        if addr == 0:
            return
        rec = self.live.get(addr)
        if rec is None or rec[1] != KIND_PAGES_EXACT:
            raise self._diagnose_free(addr, "free_pages_exact", caller)
        if pages_for(size) != pages_for(rec[0]):
            raise InvalidFreeError(
                f"free_pages_exact() of {size} bytes, but {rec[0]} bytes were allocated",
                addr=addr,
                site=caller.site,
                object=self._object_dict(addr, rec),
                alloc_site=rec[2],
            )
        self._release_pages(addr, rec, caller)

    # ================================================================ kmem_cache API

    def kmem_cache_create(
        self,
        name: str,
        size: int,
        align: int = 0,
        flags: int = 0,
        ctor: Callable[[int], None] | None = None,
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
        self._check_size(size, TASK)
        if size == 0:
            raise BadArgumentError(f"kmem_cache_create({name!r}) of 0-byte objects")
        if not isinstance(align, int) or align < 0 or align & (align - 1) or align > PAGE_SIZE:
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): align {align!r} is not 0 or a power of two <= 4096"
            )
        if not isinstance(flags, int) or flags & ~SLAB_KNOWN_FLAGS or flags < 0:
            raise BadArgumentError(f"kmem_cache_create({name!r}): unknown flags {flags!r}")
        cache = self._make_cache(name, size, align, flags, ctor, internal=False)
        if cache is None:
            raise BadArgumentError(
                f"kmem_cache_create({name!r}): {size}-byte objects do not fit in the largest slab"
            )
        return cache

    def _make_cache(
        self,
        name: str,
        size: int,
        align: int,
        flags: int,
        ctor: Callable[[int], None] | None,
        internal: bool,
    ) -> KmemCache | None:
        cache = KmemCache(
            name,
            size,
            align,
            flags,
            ctor,
            handle=0 if internal else self.slub.next_handle,
            redzone=self.config.redzone,
            debug=self.debug,
            max_order=self.config.max_order,
            internal=internal,
        )
        if cache.nobjs == 0 or cache.order > self.config.max_order:
            return None
        if not internal:
            self.slub.by_handle[cache.handle] = cache
            self.slub.next_handle += 1
        self.slub.all_caches.append(cache)
        return cache

    def cache_by_handle(self, handle: int) -> KmemCache | None:
        """The live user cache with this handle, or None."""
        return self.slub.by_handle.get(handle)

    def _check_cache(self, cache: KmemCache, api: str) -> None:
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
        self._check_cache(cache, "kmem_cache_alloc")
        self._check_gfp(gfp, caller)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK_CTX:
            self._invalid_context(gfp, caller, "kmem_cache_alloc")
        return self._slab_alloc(cache, cache.size, gfp & ~G.DMA, caller, KIND_CACHE)

    def kmem_cache_free(self, cache: KmemCache, addr: int, caller: Caller = TASK) -> None:
        """Free an object of `cache`. addr 0 is a no-op. Context: any.

        Raises InvalidFreeError (not from this cache, interior pointer, another
        API's memory) or DoubleFreeError.
        """
        self._check_cache(cache, "kmem_cache_free")
        if addr == 0:
            return
        rec = self.live.get(addr)
        slab = self.page_owner.get(addr >> PAGE_SHIFT)
        if rec is None or rec[1] != KIND_CACHE or not isinstance(slab, Slab) or slab.cache is not cache:
            raise self._diagnose_free(addr, "kmem_cache_free", caller, cache=cache)
        self._slab_free(slab, addr, rec, caller)

    def kmem_cache_shrink(self, cache: KmemCache) -> int:
        """Release the cache's empty slabs (and its quarantined objects); returns pages released."""
        self._check_cache(cache, "kmem_cache_shrink")
        before = self.buddy.used_pages
        self._drain_quarantine_of(cache)
        self._shrink_cache(cache)
        return before - self.buddy.used_pages

    def kmem_cache_destroy(self, cache: KmemCache) -> None:
        """Destroy an empty cache. With live objects: raises LeakError and keeps the cache."""
        self._check_cache(cache, "kmem_cache_destroy")
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
        self._drain_quarantine_of(cache)
        for slab in list(cache.slabs.values()):
            self._slab_discard(slab)
        cache.destroyed = True
        del self.slub.by_handle[cache.handle]
        self.slub.all_caches.remove(cache)

    def _drain_quarantine_of(self, cache: KmemCache) -> None:
        if self.slub.quarantine is not None:
            for entry in self.slub.quarantine.drain(keep=lambda e: e[1].cache is not cache):
                self._slab_release(entry[1], entry[2])

    # ================================================================ leaks

    def not_leak(self, addr: int) -> None:
        """kmemleak_not_leak(): leave this live object out of leak reports. 0 is a no-op."""
        if addr == 0:
            return
        if addr not in self.live:
            raise BadArgumentError(
                f"not_leak() of {addr:#x}, which is not the start of a live object", addr=addr
            )
        self._not_leak.add(addr)

    # ================================================================ checks

    def check(self) -> None:
        """Walk all state and prove the invariants; raises InvariantError naming the broken one."""
        self.buddy.check()
        owned: dict[int, object] = {}
        slab_live = 0
        for cache in self.slub.all_caches:
            for slab in cache.slabs.values():
                slab_live += self._check_slab(cache, slab, owned)
            self._check_cache_lists(cache)
        for pool in self.pools.all_pools:
            for page in pool.pages.values():
                slab_live += self._check_pool_page(pool, page, owned)
        if owned.keys() != self.page_owner.keys():
            raise InvariantError("the page -> slab/pool table lists pages no live slab or pool page owns")
        page_live = 0
        for addr, rec in self.live.items():
            if addr >> PAGE_SHIFT in self.page_owner:
                continue
            pfn = addr >> PAGE_SHIFT
            n = self.buddy.blocks.get(pfn)
            if addr & (PAGE_SIZE - 1) or n is None:
                raise InvariantError(f"live object {addr:#x} lies in no slab, pool page or allocated block")
            if rec[1] in (KIND_CACHE, KIND_DMA_POOL) or pages_for(max(rec[0], 1)) > n:
                raise InvariantError(f"page-level object {addr:#x} does not fit its block or has a slab kind")
            page_live += 1
        if slab_live + page_live != len(self.live):
            raise InvariantError(
                f"{len(self.live)} live records, but slabs, pools and page blocks"
                f" hold {slab_live + page_live}"
            )
        self._check_no_overlap()
        self._check_quarantine()

    def _check_slab(self, cache: KmemCache, slab: Slab, owned: dict[int, object]) -> int:
        n = 1 << slab.order
        if self.buddy.blocks.get(slab.pfn) != n:
            raise InvariantError(f"slab {slab!r} is not an allocated block of {n} pages")
        for p in range(slab.pfn, slab.pfn + n):
            if self.page_owner.get(p) is not slab:
                raise InvariantError(f"page {p:#x} of {slab!r} does not map back to its slab")
            owned[p] = slab
        obj = slab.obj
        live = obj.count(OBJ_LIVE)
        quarantined = obj.count(OBJ_QUARANTINED)
        if slab.inuse != live + quarantined:
            raise InvariantError(f"{slab!r}: inuse {slab.inuse} != live {live} + quarantined {quarantined}")
        if sorted(slab.free) != [i for i in range(slab.nobjs) if obj[i] == OBJ_FREE]:
            raise InvariantError(f"{slab!r}: the free list differs from the objects marked free")
        unused = [i for i in range(slab.nobjs) if obj[i] == OBJ_UNUSED]
        if unused != list(range(slab.next_fresh, slab.nobjs)):
            raise InvariantError(f"{slab!r}: never-used objects are not exactly those from next_fresh on")
        kinds = (KIND_CACHE,) if not cache.internal else _HEAP_KINDS
        for i in range(slab.nobjs):
            if obj[i] == OBJ_LIVE:
                rec = self.live.get(slab.object_addr(i))
                if rec is None or rec[1] not in kinds or rec[0] > cache.size:
                    raise InvariantError(f"{slab!r}: live object {i} has no matching live record")
        return live

    def _check_cache_lists(self, cache: KmemCache) -> None:
        for slab in cache.slabs.values():
            where = slab.where
            if where == SLAB_CPU and cache.cpu is not slab:
                raise InvariantError(f"{slab!r} says it is the current slab but is not")
            if where == SLAB_PARTIAL and (cache.partial.get(slab.pfn) is not slab or not slab.inuse > 0):
                raise InvariantError(f"{slab!r} is not on the partial list as a non-empty slab")
            if where == SLAB_FULL and slab.inuse != slab.nobjs:
                raise InvariantError(f"{slab!r} is marked full but has free objects")
            if where == SLAB_EMPTY and (slab.inuse or slab not in cache.empty):
                raise InvariantError(f"{slab!r} is marked empty but is not an empty listed slab")
        listed = len(cache.partial) + len(cache.empty) + (cache.cpu is not None)
        counted = sum(1 for s in cache.slabs.values() if s.where != SLAB_FULL)
        if listed != counted:
            raise InvariantError(f"cache {cache.name!r}: slab lists hold {listed} slabs, {counted} expected")

    def _check_pool_page(self, pool: DmaPool, page: PoolPage, owned: dict[int, object]) -> int:
        n = 1 << pool.order
        if self.buddy.blocks.get(page.pfn) != n:
            raise InvariantError(f"pool page {page.base:#x} of {pool.name!r} is not an allocated block")
        for p in range(page.pfn, page.pfn + n):
            if self.page_owner.get(p) is not page:
                raise InvariantError(f"page {p:#x} of pool {pool.name!r} does not map back to its pool page")
            owned[p] = page
        live = page.obj.count(OBJ_LIVE)
        if page.inuse != live or sorted(page.free) != [i for i, s in enumerate(page.obj) if s == OBJ_FREE]:
            raise InvariantError(f"pool {pool.name!r} page {page.base:#x}: counters differ from block states")
        for i, s in enumerate(page.obj):
            if s == OBJ_LIVE:
                rec = self.live.get(page.base + pool.offsets[i])
                if rec is None or rec[1] != KIND_DMA_POOL:
                    raise InvariantError(f"pool {pool.name!r}: live block {i} has no matching live record")
        return live

    def _check_no_overlap(self) -> None:
        prev_end, prev = -1, 0
        for addr in sorted(self.live):
            if addr < prev_end:
                raise InvariantError(f"live objects {prev:#x} and {addr:#x} overlap")
            prev_end, prev = addr + self.live[addr][0], addr

    def _check_quarantine(self) -> None:
        q = self.slub.quarantine
        if q is None:
            return
        total = 0
        for addr, slab, idx, nbytes in q:
            if slab.obj[idx] != OBJ_QUARANTINED or slab.object_addr(idx) != addr:
                raise InvariantError(f"quarantined object {addr:#x} is not marked quarantined in its slab")
            total += nbytes
        if total != q.nbytes:
            raise InvariantError(f"quarantine counts {q.nbytes} bytes, its entries hold {total}")

    def check_poison(self) -> list[KallocError]:
        """Walk red zones and poison of every slab object, pool block and large heap object.

        Returns the damage found (OutOfBoundsError for red zones and slab
        padding, UseAfterFreeError for the poison of free objects) and repairs
        it, so a second walk reports only new damage. The errors are not added
        to `reports`. Does nothing with sanitize="off".
        """
        if not self.debug:
            return []
        start = len(self.reports)
        for cache in self.slub.all_caches:
            for slab in cache.slabs.values():
                self._poison_walk_slab(cache, slab)
        for pool in self.pools.all_pools:
            for page in pool.pages.values():
                self._poison_walk_pool_page(pool, page)
        for addr, rec in self.live.items():
            if (
                rec[1] in _HEAP_KINDS
                and addr >> PAGE_SHIFT not in self.page_owner
                and addr not in self._ksized
            ):
                self._poison_walk_large(addr, rec)
        found = self.reports[start:]
        del self.reports[start:]
        return found

    def _poison_walk_slab(self, cache: KmemCache, slab: Slab) -> None:
        for idx in range(slab.nobjs):
            state = slab.obj[idx]
            off = idx * cache.stride + cache.left
            if state == OBJ_LIVE:
                addr = slab.base + off
                self._slab_check_redzones(cache, slab, idx, off, self.live[addr], TASK)
                continue
            if cache.poison and slab.mv[off : off + cache.size].tobytes() != cache.pat_free:
                self._report_poison(cache, slab, idx, TASK)
                slab.mv[off : off + cache.size] = cache.pat_free
            if cache.redzone:
                fake = (cache.size, KIND_CACHE, slab.alloc_site[idx], 0)
                self._check_free_slot_redzones(cache, slab, off, fake)
        self._check_slab_padding(slab)

    def _check_free_slot_redzones(
        self, cache: KmemCache, slab: Slab, off: int, rec: tuple[int, int, int, int]
    ) -> None:
        mv, left = slab.mv, cache.left
        slot = off - left
        for lo, hi, base, where in (
            (slot, off, -left, "red zone before a free object"),
            (off + cache.size, slot + cache.stride, cache.size, "red zone after a free object"),
        ):
            got = mv[lo:hi].tobytes()
            want = cache.pat_rz[: hi - lo].tobytes()
            damage = find_damage(got, want, base)
            if damage:
                err = OutOfBoundsError(
                    f"{where} overwritten: {damage['count']} byte(s) changed at offset {damage['offset']}",
                    addr=slab.base + off + damage["offset"],
                    object={
                        "addr": slab.base + off,
                        "size": cache.size,
                        "kind": self._cache_kind_name(cache),
                    },
                    alloc_site=rec[2],
                    **damage,
                )
                self.reports.append(err)
                mv[lo:hi] = want

    def _poison_walk_pool_page(self, pool: DmaPool, page: PoolPage) -> None:
        for idx, state in enumerate(page.obj):
            if state == OBJ_FREE:
                self._pool_check_poison(pool, page, idx, TASK)

    def _poison_walk_large(self, addr: int, rec: tuple[int, int, int, int]) -> None:
        size = rec[0]
        end = pages_for(size) * PAGE_SIZE
        got = self.phys.read(addr + size, end - size)
        want = bytes([RED_ACTIVE]) * len(got)
        damage = find_damage(got, want, size)
        if damage:
            self._report_oob(addr, rec, damage, TASK, "red zone after the object")
            self.phys.write(addr + size, want)
