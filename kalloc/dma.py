"""The DMA API: coherent buffers and DMA pools, always from ZONE_DMA.

This machine maps DMA addresses to physical addresses one to one (no IOMMU),
so every call returns the pair (cpu address, dma address) with both equal;
the pair stays in the API so code is written as for Linux
(Documentation/core-api/dma-api.rst).

dma_alloc_coherent(size) takes a buddy block of get_order(size) pages from
ZONE_DMA, zeroed. A buddy block is aligned to its own size, so a buffer is
aligned to its page order and one of 64 KiB or less never crosses a 64 KiB
boundary (the guarantee dma-api.rst gives for dma_alloc_coherent, which ISA-
style DMA engines rely on).

A DmaPool (mm/dmapool.c) carves small blocks out of pool pages:

    pool page (allocation bytes, >= one page)
    | blk | blk | blk | pad | blk | blk | blk | pad |      boundary = 2 blocks + pad
    0                     boundary                   2*boundary

Blocks are `size` bytes (the request rounded up to `align`) and never cross
a multiple of `boundary` inside a page; a block that would is moved to the
next boundary, exactly as pool_initialise_page() lays them out. Pool pages are
kept until dma_pool_destroy(), as in Linux. With the sanitizer on, free
blocks hold 0xa7 and fresh blocks 0xa9 (Linux's CONFIG_DMAPOOL_DEBUG bytes);
a changed 0xa7 is a write after free.

Invariants:
 1. Every block offset o satisfies o % align == 0 and o // boundary ==
    (o + size - 1) // boundary, and o + size <= allocation.
 2. A pool page's inuse == its LIVE blocks; its free list holds exactly its FREE
    blocks; it is listed in pool.partial only if it has a free block and is not
    the current page.
 3. Coherent buffers and pool pages lie in ZONE_DMA.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Context
from kalloc.debug import POOL_POISON_ALLOCATED, POOL_POISON_FREED, find_damage
from kalloc.errors import (
    BadArgumentError,
    InvalidContextError,
    InvalidFreeError,
    LeakError,
    OutOfBoundsError,
    UseAfterFreeError,
)
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order
from kalloc.slab import OBJ_FREE, OBJ_LIVE
from kalloc.stats import KIND_DMA_COHERENT, KIND_DMA_POOL

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc

DMA_BLOCK_MIN = 8  # sizeof(struct dma_block) on a 32-bit machine: the smallest pool block
DMA_64K = 64 << 10


def pool_block_offsets(size: int, allocation: int, boundary: int) -> tuple[int, ...]:
    """Block offsets in one pool page, as mm/dmapool.c pool_initialise_page()."""
    offsets = []
    offset, next_boundary = 0, boundary
    while offset + size <= allocation:
        if offset + size > next_boundary:
            offset = next_boundary
            next_boundary += boundary
            continue
        offsets.append(offset)
        offset += size
    return tuple(offsets)


class PoolPage:
    """One page block of a DMA pool and the state of its blocks."""

    __slots__ = ("alloc_site", "base", "free", "free_site", "inuse", "mv", "obj", "pfn", "pool")

    def __init__(self, pool: DmaPool, pfn: int, mv: memoryview) -> None:
        n = len(pool.offsets)
        self.pool = pool
        self.pfn = pfn
        self.base = pfn << PAGE_SHIFT
        self.mv = mv
        self.obj = bytearray([OBJ_FREE]) * n
        self.free = list(range(n - 1, -1, -1))  # pop() hands out block 0 first
        self.inuse = 0
        self.alloc_site = [0] * n
        self.free_site = [0] * n


class DmaPool:
    """A pool of equal DMA blocks (struct dma_pool). Public: name, handle, size, align, boundary."""

    def __init__(self, name: str, handle: int, size: int, align: int, boundary: int, allocation: int) -> None:
        self.name = name
        self.handle = handle
        self.object_size = size
        self.align = align
        self.size = -(-max(size, DMA_BLOCK_MIN) // align) * align
        self.allocation = allocation
        self.boundary = boundary
        self.order = get_order(allocation)
        self.offsets = pool_block_offsets(self.size, allocation, boundary)
        self._index = {o: i for i, o in enumerate(self.offsets)}
        self.pages: dict[int, PoolPage] = {}
        self.partial: dict[int, PoolPage] = {}
        self.cur: PoolPage | None = None
        self.destroyed = False
        self.poison_free = bytes([POOL_POISON_FREED]) * self.size
        self.poison_alloc = bytes([POOL_POISON_ALLOCATED]) * self.size

    def block_index_at(self, offset: int) -> int | None:
        """Index of the block starting at `offset` in a page, or None."""
        return self._index.get(offset)

    def block_index_containing(self, offset: int) -> int | None:
        """Index of the block whose bytes include `offset`, or None."""
        i = bisect.bisect_right(self.offsets, offset) - 1
        if i >= 0 and offset < self.offsets[i] + self.size:
            return i
        return None

    def active_blocks(self) -> int:
        return sum(p.inuse for p in self.pages.values())

    def __repr__(self) -> str:
        return f"DmaPool({self.name!r}, size={self.size}, align={self.align}, boundary={self.boundary})"


class DmaPools:
    """The DMA pools of one allocator: by handle (live ones) and in creation order."""

    def __init__(self) -> None:
        self.by_handle: dict[int, DmaPool] = {}
        self.all_pools: list[DmaPool] = []
        self.next_handle = 1


class DmaApi:
    """dma_alloc_coherent and dma_pool_* (mixed into Kalloc)."""

    # ---------------------------------------------------------------- coherent

    def dma_alloc_coherent(
        self: Kalloc, size: int, gfp: int, caller: Caller = TASK
    ) -> tuple[int, int] | None:
        """A zeroed buffer from ZONE_DMA, aligned to its page order; returns (cpu, dma) or None.

        Pair with dma_free_coherent(size, cpu, dma). Context: GFP_ATOMIC from
        interrupts. Raises BadArgumentError for size 0 or unknown GFP bits.
        """
        self._check_gfp(gfp, caller)
        self._check_size(size, caller)
        if size == 0:
            raise BadArgumentError("dma_alloc_coherent() of 0 bytes", site=caller.site)
        if gfp & G.DIRECT_RECLAIM and caller.context is not Context.TASK:
            self._invalid_context(gfp, caller, "dma_alloc_coherent")
        pfn = self._alloc_block(gfp | G.DMA, get_order(size), caller, size)
        if pfn is None:
            return None
        addr = self._commit_pages(pfn, gfp, size, KIND_DMA_COHERENT, caller)
        return addr, addr

    def dma_free_coherent(self: Kalloc, size: int, cpu: int, dma: int, caller: Caller = TASK) -> None:
        """Free a coherent buffer: the same size and both addresses dma_alloc_coherent returned.

        cpu 0 is a no-op. Context: task only; from an interrupt or with
        interrupts disabled it is reported (Linux: WARN_ON(irqs_disabled()) in
        dma_free_attrs, since freeing may unmap) and still done.
        """
        self._check_size(size, caller)
        if cpu == 0:
            return
        rec = self.live.get(cpu)
        if rec is None or rec[1] != KIND_DMA_COHERENT:
            raise self._diagnose_free(cpu, "dma_free_coherent", caller)
        if dma != cpu:
            raise InvalidFreeError(
                f"dma_free_coherent() with DMA address {dma:#x} for the buffer at {cpu:#x}",
                addr=cpu,
                site=caller.site,
                object=self._object_dict(cpu, rec),
                alloc_site=rec[2],
            )
        if size != rec[0]:
            raise InvalidFreeError(
                f"dma_free_coherent() of {size} bytes, but {rec[0]} bytes were allocated",
                addr=cpu,
                site=caller.site,
                object=self._object_dict(cpu, rec),
                alloc_site=rec[2],
            )
        if caller.context is not Context.TASK:
            where = "from interrupt context" if caller.context is Context.IRQ else "with interrupts disabled"
            self.reports.append(
                InvalidContextError(
                    f"dma_free_coherent() {where}",
                    addr=cpu,
                    site=caller.site,
                    api="dma_free_coherent",
                    context=caller.context.name.lower(),
                    depth=caller.depth,
                )
            )
        self._release_pages(cpu, rec, caller)

    # ---------------------------------------------------------------- pools

    def dma_pool_create(self: Kalloc, name: str, size: int, align: int, boundary: int) -> DmaPool:
        """Create a pool of `size`-byte blocks aligned to `align`, never crossing `boundary`.

        align 0 means 1; boundary 0 means the pool page size. Follows
        dma_pool_create()'s rules, raising BadArgumentError where Linux
        returns NULL: size 0, align or boundary not a power of two, boundary
        smaller than the (aligned) block. Pair with dma_pool_destroy().
        """
        if not isinstance(name, str) or not name:
            raise BadArgumentError("dma_pool_create() needs a non-empty name")
        for what, v in (("size", size), ("align", align), ("boundary", boundary)):
            self._check_size(v, TASK, what)
        if size == 0:
            raise BadArgumentError(f"dma_pool_create({name!r}) of 0-byte blocks")
        align = align or 1
        if align & (align - 1):
            raise BadArgumentError(f"dma_pool_create({name!r}): align {align} is not a power of two")
        block = -(-max(size, DMA_BLOCK_MIN) // align) * align
        allocation = max(block, PAGE_SIZE)
        if get_order(allocation) > self.config.max_order:
            raise BadArgumentError(f"dma_pool_create({name!r}): {block}-byte blocks exceed the largest block")
        if boundary == 0:
            boundary = allocation
        elif boundary < block or boundary & (boundary - 1):
            raise BadArgumentError(
                f"dma_pool_create({name!r}): boundary {boundary} is not a power of two"
                f" >= the {block}-byte block"
            )
        pool = DmaPool(name, self.pools.next_handle, size, align, min(boundary, allocation), allocation)
        self.pools.next_handle += 1
        self.pools.by_handle[pool.handle] = pool
        self.pools.all_pools.append(pool)
        return pool

    def pool_by_handle(self: Kalloc, handle: int) -> DmaPool | None:
        """The live pool with this handle, or None."""
        return self.pools.by_handle.get(handle)

    def _check_pool(self: Kalloc, pool: DmaPool, api: str) -> None:
        if not isinstance(pool, DmaPool):
            raise BadArgumentError(f"{api}(): {pool!r} is not a DMA pool")
        if pool.destroyed:
            raise BadArgumentError(f"{api}() on destroyed pool {pool.name!r}")

    def dma_pool_alloc(
        self: Kalloc, pool: DmaPool, gfp: int, caller: Caller = TASK
    ) -> tuple[int, int] | None:
        """A block of `pool`; returns (cpu, dma) or None. Pair with dma_pool_free().

        Not zeroed unless __GFP_ZERO. Context: GFP_ATOMIC from interrupts.
        """
        self._check_pool(pool, "dma_pool_alloc")
        self._check_gfp(gfp, caller)
        if gfp & G.DIRECT_RECLAIM and caller.context is not Context.TASK:
            self._invalid_context(gfp, caller, "dma_pool_alloc")
        page = self._pool_page_with_room(pool, gfp, caller)
        if page is None:
            return None
        idx = page.free.pop()
        off = pool.offsets[idx]
        addr = page.base + off
        if self.debug:
            self._pool_check_poison(pool, page, idx, caller)
        if gfp & G.ZERO:
            page.mv[off : off + pool.size] = bytes(pool.size)
        elif self.debug:
            page.mv[off : off + pool.size] = pool.poison_alloc
        page.obj[idx] = OBJ_LIVE
        page.inuse += 1
        page.alloc_site[idx] = caller.site
        self.live[addr] = (pool.object_size, KIND_DMA_POOL, caller.site, gfp)
        self._freed.pop(addr, None)
        if self.listeners:
            self._notify("alloc", addr, pool.object_size, pool.size)
        return addr, addr

    def _pool_page_with_room(self: Kalloc, pool: DmaPool, gfp: int, caller: Caller) -> PoolPage | None:
        page = pool.cur
        if page is not None and page.free:
            return page
        if pool.partial:
            page = pool.partial.popitem()[1]
        else:
            pfn = self._alloc_block((gfp & ~G.ZERO) | G.DMA, pool.order, caller, pool.size)
            if pfn is None:
                return None
            page = PoolPage(pool, pfn, self.phys.view(pfn << PAGE_SHIFT, PAGE_SIZE << pool.order))
            if self.debug:
                page.mv[:] = bytes([POOL_POISON_FREED]) * len(page.mv)
            for p in range(pfn, pfn + (1 << pool.order)):
                self.page_owner[p] = page
            pool.pages[pfn] = page
        pool.cur = page
        return page

    def _pool_check_poison(self: Kalloc, pool: DmaPool, page: PoolPage, idx: int, caller: Caller) -> None:
        """pool_check_block(): a free block must still read 0xa7."""
        off = pool.offsets[idx]
        got = page.mv[off : off + pool.size].tobytes()
        damage = find_damage(got, pool.poison_free, 0)
        if damage is None:
            return
        addr = page.base + off
        if not page.free_site[idx]:  # never handed out: an overflow from the block before it
            self._pool_report_overflow(pool, page, idx, damage, caller)
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

    def _pool_report_overflow(
        self: Kalloc, pool: DmaPool, page: PoolPage, idx: int, damage: dict, caller: Caller
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

    def dma_pool_free(self: Kalloc, pool: DmaPool, cpu: int, dma: int, caller: Caller = TASK) -> None:
        """Return a block to `pool`; cpu 0 is a no-op. Context: any.

        Raises InvalidFreeError (another pool's block, another API's memory,
        an interior pointer, a DMA address that does not match) or DoubleFreeError.
        """
        self._check_pool(pool, "dma_pool_free")
        if cpu == 0:
            return
        rec = self.live.get(cpu)
        page = self.page_owner.get(cpu >> PAGE_SHIFT)
        if rec is None or rec[1] != KIND_DMA_POOL or not isinstance(page, PoolPage) or page.pool is not pool:
            raise self._diagnose_free(cpu, "dma_pool_free", caller, pool=pool)
        if dma != cpu:
            raise InvalidFreeError(
                f"dma_pool_free() with DMA address {dma:#x} for the block at {cpu:#x}",
                addr=cpu,
                site=caller.site,
                object=self._object_dict(cpu, rec),
                alloc_site=rec[2],
            )
        idx = pool.block_index_at(cpu - page.base)
        assert idx is not None, "a live pool block is not at a block offset"
        self._forget_live(cpu, rec)
        if self.debug:
            off = pool.offsets[idx]
            page.mv[off : off + pool.size] = pool.poison_free
        page.obj[idx] = OBJ_FREE
        page.free.append(idx)
        page.inuse -= 1
        page.free_site[idx] = caller.site
        if page is not pool.cur and len(page.free) == 1:
            pool.partial[page.pfn] = page

    def dma_pool_destroy(self: Kalloc, pool: DmaPool) -> None:
        """Free every page of an empty pool. With blocks in use: raises LeakError, keeps the pool."""
        self._check_pool(pool, "dma_pool_destroy")
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
                        self._pool_check_poison(pool, page, idx, TASK)
            for p in range(pfn, pfn + (1 << pool.order)):
                del self.page_owner[p]
            self.buddy.free(pfn)
        pool.pages.clear()
        pool.partial.clear()
        pool.cur = None
        pool.destroyed = True
        del self.pools.by_handle[pool.handle]
        self.pools.all_pools.remove(pool)
