"""The full walks: check() proves the allocator's invariants, check_poison() every guard byte.

Zephyr keeps its cheap always-on checks inline and the full walk apart; so does
kalloc. The inline checks are kalloc.sanitize's (on the alloc and free paths);
these walks visit every slab, pool page and live object, and are run by tests,
by `kalloc run --check`, and after every step of the property tests.

check() proves (see also kalloc.buddy and kalloc.slab):
 1. Every page is free in one buddy list, in one allocated block, or reserved.
 2. Every live object lies inside an allocated block of its kind: a LIVE slot
    of a slab, an allocated pool block, or a page block it heads.
 3. Every LIVE slab slot and pool block has a live record; no live record is
    left without one.
 4. No two live objects overlap.
 5. Slab and pool lists agree with their counters (kalloc.slab invariants).
 6. Free + used + reserved bytes == RAM (kalloc.buddy's check).
 7. The quarantine's entries are QUARANTINED slots and its byte count is their sum.

check_poison() walks red zones and poison of every slab object, pool block and
large heap object, and returns the damage it found and repaired.

Invariants:
 1. check() changes nothing; it raises InvariantError naming the broken invariant.
 2. check_poison() leaves `reports` as it found it: the damage is returned instead.
"""

from __future__ import annotations

from kalloc.buddy import Buddy
from kalloc.config import TASK
from kalloc.dma import DmaPools
from kalloc.dmapool import DmaPool, PoolPage
from kalloc.errors import InvariantError, KallocError
from kalloc.kinds import HEAP_KINDS, KIND_CACHE, KIND_DMA_POOL
from kalloc.live import LiveTable
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.sanitize import Sanitizer
from kalloc.slab import (
    OBJ_FREE,
    OBJ_LIVE,
    OBJ_PERCPU,
    OBJ_PERCPU_NEW,
    OBJ_QUARANTINED,
    OBJ_UNUSED,
    SLAB_CPU,
    SLAB_EMPTY,
    SLAB_FULL,
    SLAB_PARTIAL,
    KmemCache,
    Slab,
)
from kalloc.slub import Slub


class AllocatorCheck:
    """The full walks over one allocator's parts (module docstring)."""

    def __init__(
        self,
        buddy: Buddy,
        slub: Slub,
        pools: DmaPools,
        live: LiveTable,
        sanitizer: Sanitizer,
        reports: list[KallocError],
        debug: bool,
    ) -> None:
        self.buddy = buddy
        self.slub = slub
        self.pools = pools
        self.live = live
        self.page_owner = live.page_owner
        self.sanitizer = sanitizer
        self.reports = reports
        self.debug = debug

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
            if rec.kind in (KIND_CACHE, KIND_DMA_POOL) or pages_for(max(rec.size, 1)) > n:
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
        quarantined = obj.count(OBJ_QUARANTINED) + obj.count(OBJ_PERCPU) + obj.count(OBJ_PERCPU_NEW)
        if slab.inuse != live + quarantined:
            raise InvariantError(f"{slab!r}: inuse {slab.inuse} != live {live} + held {quarantined}"
                                 " (quarantined or per-CPU)")
        if sorted(slab.free) != [i for i in range(slab.nobjs) if obj[i] == OBJ_FREE]:
            raise InvariantError(f"{slab!r}: the free list differs from the objects marked free")
        unused = [i for i in range(slab.nobjs) if obj[i] == OBJ_UNUSED]
        if unused != list(range(slab.next_fresh, slab.nobjs)):
            raise InvariantError(f"{slab!r}: never-used objects are not exactly those from next_fresh on")
        kinds = (KIND_CACHE,) if not cache.internal else HEAP_KINDS
        for i in range(slab.nobjs):
            if obj[i] == OBJ_LIVE:
                rec = self.live.get(slab.object_addr(i))
                if rec is None or rec.kind not in kinds or rec.size > cache.size:
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
                if rec is None or rec.kind != KIND_DMA_POOL:
                    raise InvariantError(f"pool {pool.name!r}: live block {i} has no matching live record")
        return live

    def _check_no_overlap(self) -> None:
        prev_end, prev = -1, 0
        for addr in sorted(self.live):
            if addr < prev_end:
                raise InvariantError(f"live objects {prev:#x} and {addr:#x} overlap")
            prev_end, prev = addr + self.live[addr].size, addr

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
                self.sanitizer.check_slab(slab)
        for pool in self.pools.all_pools:
            for page in pool.pages.values():
                self._poison_walk_pool_page(pool, page)
        for addr, rec in self.live.items():
            if (
                rec.kind in HEAP_KINDS
                and addr >> PAGE_SHIFT not in self.page_owner
                and addr not in self.live.ksized
            ):
                self.sanitizer.check_large_tail(addr, rec)
        found = self.reports[start:]
        del self.reports[start:]
        return found

    def _poison_walk_pool_page(self, pool: DmaPool, page: PoolPage) -> None:
        for idx, state in enumerate(page.obj):
            if state == OBJ_FREE:
                self.pools.check_poison(pool, page, idx, TASK)
