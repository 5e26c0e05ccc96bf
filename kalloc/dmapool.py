"""DMA pool structures (struct dma_pool, mm/dmapool.c): pool pages cut into blocks.

kalloc.dma holds the paths over them (dma_pool_create/alloc/free/destroy), as
kalloc.slub does for kalloc.slab.

A DmaPool carves small blocks out of pool pages:

    pool page (allocation bytes, >= one page)
    | blk | blk | blk | pad | blk | blk | blk | pad |      boundary = 2 blocks + pad
    0                     boundary                   2*boundary

Blocks are `size` bytes (the request rounded up to `align`) and never cross
a multiple of `boundary` inside a page; a block that would is moved to the
next boundary, exactly as pool_initialise_page() lays them out. With the
sanitizer on, free blocks hold 0xa7 and fresh blocks 0xa9 (Linux's
CONFIG_DMAPOOL_DEBUG bytes).

Invariants:
 1. Every block offset o satisfies o % align == 0 and o // boundary ==
    (o + size - 1) // boundary, and o + size <= allocation.
 2. A pool page's inuse == its LIVE blocks; its free list holds exactly its FREE
    blocks; it is listed in pool.partial only if it has a free block and is not
    the current page.
"""

from __future__ import annotations

import bisect

from kalloc.debug import POOL_POISON_ALLOCATED, POOL_POISON_FREED
from kalloc.page import PAGE_SHIFT, get_order
from kalloc.slab import OBJ_FREE

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
        self.poison_free = self.poison_alloc = b""  # built with the first pool page (build_poison)

    def build_poison(self) -> None:
        """The block-size poison patterns; made with the first page so host bytes follow guest RAM."""
        if not self.poison_free:
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
