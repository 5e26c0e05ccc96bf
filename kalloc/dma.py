"""The DMA API: coherent buffers and DMA pools, always from ZONE_DMA.

This machine maps DMA addresses to physical addresses one to one (no IOMMU),
so every call returns the pair (cpu address, dma address) with both equal;
the pair stays in the API so code is written as for Linux
(Documentation/core-api/dma-api.rst).

    DmaApi     dma_alloc_coherent / dma_free_coherent: a buddy block of
               get_order(size) pages from ZONE_DMA, zeroed, through the page pipeline
    DmaPools   dma_pool_create / alloc / free / destroy: the paths over the pool
               structures of kalloc.dmapool (pool pages cut into blocks)

A buddy block is aligned to its own size, so a coherent buffer is aligned to
its page order and one of 64 KiB or less never crosses a 64 KiB boundary (the
guarantee dma-api.rst gives for dma_alloc_coherent, which ISA-style DMA
engines rely on). Pool pages are kept until dma_pool_destroy(), as in Linux.
With the sanitizer on, a changed 0xa7 in a free block is a write after free.

Data structure (DmaPools):
    by_handle: {handle: DmaPool}   live pools, 1, 2, 3 ... in creation order
    all_pools: [DmaPool]           the same pools, in creation order
    live.page_owner[pfn] = page    for every page of every pool page

Invariants (and kalloc.dmapool's):
 1. Coherent buffers and pool pages lie in ZONE_DMA.
 2. Every page of a pool page maps to it in page_owner until dma_pool_destroy().
 3. Every LIVE pool block has a live record of kind dma_pool.
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Config
from kalloc.debug import POOL_POISON_FREED, find_damage
from kalloc.dmapool import DMA_BLOCK_MIN, DmaPool, PoolPage
from kalloc.errors import BadArgumentError, KallocError, LeakError, OutOfBoundsError, UseAfterFreeError
from kalloc.gate import RequestGate
from kalloc.kinds import KIND_DMA_COHERENT, KIND_DMA_POOL
from kalloc.live import LiveRecord, LiveTable, new_record
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order
from kalloc.pages import PagePipeline
from kalloc.physmem import PhysMem
from kalloc.slab import OBJ_FREE, OBJ_LIVE

__all__ = ["MAX_POOLS", "DmaApi", "DmaPool", "DmaPools", "PoolPage"]

MAX_POOLS = 1024  # live dma_pool_create() pools: each costs host memory with no guest RAM behind it


class DmaApi:
    """dma_alloc_coherent and dma_free_coherent."""

    def __init__(self, gate: RequestGate, pages: PagePipeline) -> None:
        self.gate = gate
        self.pages = pages
        self.live = pages.live

    def dma_alloc_coherent(self, size: int, gfp: int, caller: Caller = TASK) -> tuple[int, int] | None:
        """A zeroed buffer from ZONE_DMA, aligned to its page order; returns (cpu, dma) or None.

        Pair with dma_free_coherent(size, cpu, dma). Context: GFP_ATOMIC from
        interrupts. Raises BadArgumentError for size 0 or unknown GFP bits.
        """
        gate = self.gate
        gate.check_gfp(gfp, caller)
        gate.check_size(size, caller)
        if size == 0:
            raise BadArgumentError("dma_alloc_coherent() of 0 bytes", site=caller.site)
        gate.may_sleep(gfp, caller, "dma_alloc_coherent")
        pfn = self.pages.alloc_block(gfp | G.DMA, get_order(size), caller, size)
        if pfn is None:
            return None
        addr = self.pages.commit(pfn, gfp, size, KIND_DMA_COHERENT, caller)
        return addr, addr

    def dma_free_coherent(self, size: int, cpu: int, dma: int, caller: Caller = TASK) -> None:
        """Free a coherent buffer: the same size and both addresses dma_alloc_coherent returned.

        cpu 0 is a no-op. Context: task only; from an interrupt or with
        interrupts disabled it is reported (Linux: WARN_ON(irqs_disabled()) in
        dma_free_attrs, since freeing may unmap) and still done.
        """
        self.gate.check_size(size, caller)
        if cpu == 0:
            return
        live = self.live
        rec = live.take_for_free(cpu, KIND_DMA_COHERENT, "dma_free_coherent", caller)
        if dma != cpu:
            raise live.mismatch(
                f"dma_free_coherent() with DMA address {dma:#x} for the buffer at {cpu:#x}", cpu, rec, caller
            )
        if size != rec.size:
            raise live.mismatch(
                f"dma_free_coherent() of {size} bytes, but {rec.size} bytes were allocated", cpu, rec, caller
            )
        self.gate.free_in_atomic("dma_free_coherent", cpu, caller)
        self.pages.release(cpu, rec, caller)


class DmaPools:
    """The DMA pools of one allocator and dma_pool_* (module docstring)."""

    def __init__(
        self,
        config: Config,
        phys: PhysMem,
        gate: RequestGate,
        pages: PagePipeline,
        reports: list[KallocError],
    ) -> None:
        self.max_order = config.max_order
        self.debug = config.debug
        self.phys = phys
        self.gate = gate
        self.pages = pages
        self.live: LiveTable = pages.live
        self.page_owner = pages.live.page_owner
        self.reports = reports
        self.by_handle: dict[int, DmaPool] = {}
        self.all_pools: list[DmaPool] = []
        self.next_handle = 1

    def dma_pool_create(self, name: str, size: int, align: int, boundary: int) -> DmaPool:
        """Create a pool of `size`-byte blocks aligned to `align`, never crossing `boundary`.

        align 0 means 1; boundary 0 means the pool page size. Follows
        dma_pool_create()'s rules, raising BadArgumentError where Linux
        returns NULL: size 0, align or boundary not a power of two, boundary
        smaller than the (aligned) block. Pair with dma_pool_destroy().
        """
        if not isinstance(name, str) or not name:
            raise BadArgumentError("dma_pool_create() needs a non-empty name")
        if len(self.by_handle) >= MAX_POOLS:
            raise BadArgumentError(
                f"dma_pool_create({name!r}): {MAX_POOLS} pools exist already (kalloc's limit)"
            )
        for what, v in (("size", size), ("align", align), ("boundary", boundary)):
            self.gate.check_size(v, TASK, what)
        if size == 0:
            raise BadArgumentError(f"dma_pool_create({name!r}) of 0-byte blocks")
        align = align or 1
        if align & (align - 1):
            raise BadArgumentError(f"dma_pool_create({name!r}): align {align} is not a power of two")
        block = -(-max(size, DMA_BLOCK_MIN) // align) * align
        allocation = max(block, PAGE_SIZE)
        if get_order(allocation) > self.max_order:
            raise BadArgumentError(f"dma_pool_create({name!r}): {block}-byte blocks exceed the largest block")
        if boundary == 0:
            boundary = allocation
        elif boundary < block or boundary & (boundary - 1):
            raise BadArgumentError(
                f"dma_pool_create({name!r}): boundary {boundary} is not a power of two"
                f" >= the {block}-byte block"
            )
        pool = DmaPool(name, self.next_handle, size, align, min(boundary, allocation), allocation)
        self.next_handle += 1
        self.by_handle[pool.handle] = pool
        self.all_pools.append(pool)
        return pool

    def pool_by_handle(self, handle: int) -> DmaPool | None:
        """The live pool with this handle, or None."""
        return self.by_handle.get(handle)

    @staticmethod
    def check_pool(pool: DmaPool, api: str) -> None:
        if not isinstance(pool, DmaPool):
            raise BadArgumentError(f"{api}(): {pool!r} is not a DMA pool")
        if pool.destroyed:
            raise BadArgumentError(f"{api}() on destroyed pool {pool.name!r}")

    def dma_pool_alloc(
        self, pool: DmaPool, gfp: int, caller: Caller = TASK
    ) -> tuple[int, int] | None:
        """A block of `pool`; returns (cpu, dma) or None. Pair with dma_pool_free().

        Not zeroed unless __GFP_ZERO. Context: GFP_ATOMIC from interrupts.
        """
        self.check_pool(pool, "dma_pool_alloc")
        self.gate.check_gfp(gfp, caller)
        self.gate.may_sleep(gfp, caller, "dma_pool_alloc")
        page = self._page_with_room(pool, gfp, caller)
        if page is None:
            return None
        idx = page.free.pop()
        off = pool.offsets[idx]
        addr = page.base + off
        if self.debug:
            self.check_poison(pool, page, idx, caller)
        if gfp & G.ZERO:
            page.mv[off : off + pool.size] = bytes(pool.size)
        elif self.debug:
            page.mv[off : off + pool.size] = pool.poison_alloc
        page.obj[idx] = OBJ_LIVE
        page.inuse += 1
        page.alloc_site[idx] = caller.site
        live = self.live
        live.records[addr] = new_record(LiveRecord, (pool.object_size, KIND_DMA_POOL, caller.site, gfp))
        live.freed.pop(addr, None)
        if live.listeners:
            live.notify("alloc", addr, pool.object_size, pool.size)
        return addr, addr

    def _page_with_room(self, pool: DmaPool, gfp: int, caller: Caller) -> PoolPage | None:
        page = pool.cur
        if page is not None and page.free:
            return page
        if pool.partial:
            page = pool.partial.popitem()[1]
        else:
            pfn = self.pages.alloc_block((gfp & ~G.ZERO) | G.DMA, pool.order, caller, pool.size)
            if pfn is None:
                return None
            pool.build_poison()
            page = PoolPage(pool, pfn, self.phys.view(pfn << PAGE_SHIFT, PAGE_SIZE << pool.order))
            if self.debug:
                page.mv[:] = bytes([POOL_POISON_FREED]) * len(page.mv)
            for p in range(pfn, pfn + (1 << pool.order)):
                self.page_owner[p] = page
            pool.pages[pfn] = page
        pool.cur = page
        return page

    def check_poison(self, pool: DmaPool, page: PoolPage, idx: int, caller: Caller) -> None:
        """pool_check_block(): a free block must still read 0xa7."""
        off = pool.offsets[idx]
        if self.pages.sanitizer.seen:  # bytes KASAN reported at the access are not reported again
            self.pages.sanitizer.reported.restore(page.base + off, pool.poison_free)
        got = page.mv[off : off + pool.size].tobytes()
        damage = find_damage(got, pool.poison_free, 0)
        if damage is None:
            return
        addr = page.base + off
        if not page.free_site[idx]:  # never handed out: an overflow from the block before it
            self._report_overflow(pool, page, idx, damage, caller)
            page.mv[off : off + pool.size] = pool.poison_free
            return
        self.reports.append(
            UseAfterFreeError(
                f"write to a free block of DMA pool {pool.name!r}: {damage['count']} byte(s) changed"
                f" at offset {damage['offset']}",
                addr=addr + damage["offset"],
                site=caller.site,
                object={"addr": addr, "size": pool.size, "kind": f"dma_pool:{pool.name}"},
                alloc_site=page.alloc_site[idx],
                free_site=page.free_site[idx],
                **damage,
            )
        )
        page.mv[off : off + pool.size] = pool.poison_free

    def _report_overflow(
        self, pool: DmaPool, page: PoolPage, idx: int, damage: dict, caller: Caller
    ) -> None:
        """Damage in a never-used block: out-of-bounds, blamed on the block below it if any."""
        off = pool.offsets[idx]
        prev = idx - 1 if idx > 0 and page.alloc_site[idx - 1] else None
        obj_off = pool.offsets[prev] if prev is not None else off
        self.reports.append(
            OutOfBoundsError(
                f"write past a block of DMA pool {pool.name!r}: {damage['count']} byte(s) changed in the"
                f" never-used block after it (offset {off - obj_off + damage['offset']} of the block)",
                addr=page.base + off + damage["offset"],
                site=caller.site,
                object={"addr": page.base + obj_off, "size": pool.size, "kind": f"dma_pool:{pool.name}"},
                alloc_site=page.alloc_site[prev] if prev is not None else 0,
                **{**damage, "offset": off - obj_off + damage["offset"]},
            )
        )

    def dma_pool_free(self, pool: DmaPool, cpu: int, dma: int, caller: Caller = TASK) -> None:
        """Return a block to `pool`; cpu 0 is a no-op. Context: any.

        Raises InvalidFreeError (another pool's block, another API's memory,
        an interior pointer, a DMA address that does not match) or DoubleFreeError.
        """
        self.check_pool(pool, "dma_pool_free")
        if cpu == 0:
            return
        rec = self.live.records.get(cpu)
        page = self.page_owner.get(cpu >> PAGE_SHIFT)
        ours = isinstance(page, PoolPage) and page.pool is pool
        if rec is None or rec.kind != KIND_DMA_POOL or not ours:
            raise self.live.diagnose_free(cpu, "dma_pool_free", caller, pool=pool)
        assert isinstance(page, PoolPage)
        if dma != cpu:
            raise self.live.mismatch(
                f"dma_pool_free() with DMA address {dma:#x} for the block at {cpu:#x}", cpu, rec, caller
            )
        idx = pool.block_index_at(cpu - page.base)
        assert idx is not None, "a live pool block is not at a block offset"
        self.live.forget(cpu, rec)
        if self.debug:
            off = pool.offsets[idx]
            page.mv[off : off + pool.size] = pool.poison_free
        page.obj[idx] = OBJ_FREE
        page.free.append(idx)
        page.inuse -= 1
        page.free_site[idx] = caller.site
        if page is not pool.cur and len(page.free) == 1:
            pool.partial[page.pfn] = page

    def dma_pool_destroy(self, pool: DmaPool | None) -> None:
        """Free every page of an empty pool; None is a no-op, as in Linux. Blocks in use: LeakError."""
        if pool is None:
            return
        self.check_pool(pool, "dma_pool_destroy")
        busy = pool.active_blocks()
        if busy:
            addrs = sorted(
                p.base + pool.offsets[i]
                for p in pool.pages.values()
                for i, s in enumerate(p.obj)
                if s == OBJ_LIVE
            )
            raise LeakError(
                f"dma_pool_destroy({pool.name!r}): {busy} block(s) still in use",
                addr=addrs[0],
                live=busy,
                objects=addrs[:16],
                pool=pool.name,
            )
        for pfn in list(pool.pages):
            if self.debug:  # like discard_slab()'s padding check: last chance to see damage
                page = pool.pages[pfn]
                for idx, state in enumerate(page.obj):
                    if state == OBJ_FREE:
                        self.check_poison(pool, page, idx, TASK)
            for p in range(pfn, pfn + (1 << pool.order)):
                del self.page_owner[p]
            self.pages.buddy.free(pfn)
        pool.pages.clear()
        pool.partial.clear()
        pool.cur = None
        pool.destroyed = True
        del self.by_handle[pool.handle]
        self.all_pools.remove(pool)
