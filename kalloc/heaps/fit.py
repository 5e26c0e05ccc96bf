"""Boundary-tag blocks in one contiguous range: address-ordered first fit with coalescing.

The engine under the `firstfit` and `arena` heaps (FreeRTOS heap_4, K&R's
malloc, dlmalloc without bins): a region [start, end) is cut into blocks; each
block starts with an 8-byte header (its size and an in-use bit, the boundary
tag) and its payload follows. Free blocks are kept in address order; a request
takes the *first* free block that fits (lowest address), splits off the rest
when the rest can hold a block of its own, and a free merges the block with
both free neighbours at once, so no two free blocks are ever adjacent.

    block:  | header (8) | payload ...                     | (next block)
            ^ block start, 8-aligned; size multiple of 8, >= MIN_BLOCK

Where kalloc differs from a C implementation: the tags are kept by Python
beside the region (`used`, `free_size`), not written into the guest's bytes,
so firmware cannot corrupt them; their 8 bytes are still reserved in every
block, so the space accounting is the same as a C heap's.

Alignment: a payload is 16-aligned when the request is 16 bytes or more (RV32's
max_align_t), 8-aligned below, or aligned to an explicit power of two; a gap in
front of an aligned payload becomes a free block of its own (or, when too small
for one, the search moves one alignment step on).

Invariants (check() proves them):
 1. Blocks tile the region exactly: used and free blocks, sorted, each ending
    where the next begins, the last ending at `end`.
 2. No two free blocks are adjacent (coalescing is eager).
 3. Every block is 8-aligned, a multiple of 8 and at least MIN_BLOCK bytes.
"""

from __future__ import annotations

import bisect

HDR = 8  # boundary tag: size | in-use bit (heap_4's BlockLink_t on a 32-bit CPU is 8 bytes)
MIN_BLOCK = 16  # a header and the smallest payload worth a free-list entry
GRAIN = 8


def block_size_for(size: int) -> int:
    """Bytes of block a `size`-byte request needs (header included, rounded to 8)."""
    return max(MIN_BLOCK, (size + HDR + GRAIN - 1) & ~(GRAIN - 1))


def grow_need(size: int, align: int) -> int:
    """Free bytes that always hold an `align`-aligned block for `size` (worst front gap included)."""
    return block_size_for(size) + 2 * align + MIN_BLOCK


def payload_align(size: int) -> int:
    """The alignment a request of `size` bytes gets: 16 from 16 bytes on, 8 below."""
    return 16 if size >= 16 else 8


class FitRegion:
    """One contiguous range of blocks (see the module docstring)."""

    __slots__ = ("end", "free_size", "free_starts", "start", "used")

    def __init__(self, start: int, end: int) -> None:
        assert start % GRAIN == 0 and end % GRAIN == 0 and end - start >= MIN_BLOCK, "region is not 8-aligned"
        self.start = start
        self.end = end
        self.free_starts: list[int] = [start]  # sorted block starts of free blocks
        self.free_size: dict[int, int] = {start: end - start}
        self.used: dict[int, int] = {}  # block start -> block size

    # ------------------------------------------------------------------ queries

    def is_empty(self) -> bool:
        """True when the whole region is one free block."""
        return not self.used

    def largest_free(self) -> int:
        return max(self.free_size.values(), default=0)

    def top_free(self) -> int:
        """Size of the free block that ends at `end` (0 if the last block is in use)."""
        if self.free_starts:
            last = self.free_starts[-1]
            if last + self.free_size[last] == self.end:
                return self.free_size[last]
        return 0

    def free_bytes(self) -> int:
        return sum(self.free_size.values())

    # ------------------------------------------------------------------ alloc

    def fit(self, size: int, align: int) -> int | None:
        """First fit: the payload address for a `size`-byte request, or None. Marks the block used."""
        need = block_size_for(size)
        for b in self.free_starts:
            bsize = self.free_size[b]
            if bsize < need:
                continue
            p = self._aligned_payload(b, align)
            if p - HDR + need <= b + bsize:
                self.carve(b, bsize, p - HDR, need)
                return p
        return None

    def best(self, size: int, align: int, avoid: frozenset[int] | set[int] = frozenset()
             ) -> tuple[int, int, int] | None:  # fmt: skip
        """Best fit: (free block size, block start, payload) of the smallest free block that holds
        the request (the lowest address among equals; blocks starting in `avoid` skipped), or None.
        Marks nothing: `take` does."""
        need = block_size_for(size)
        found: tuple[int, int, int] | None = None
        for b in self.free_starts:
            bsize = self.free_size[b]
            if bsize < need or (found is not None and bsize >= found[0]) or b in avoid:
                continue
            p = self._aligned_payload(b, align)
            if p - HDR + need <= b + bsize:
                found = (bsize, b, p)
                if bsize - need < MIN_BLOCK:
                    break  # nothing fits closer
        return found

    def payload_in(self, b: int, size: int, align: int) -> int | None:
        """The payload address the request would get in free block `b`, or None when it does not fit."""
        p = self._aligned_payload(b, align)
        return p if p - HDR + block_size_for(size) <= b + self.free_size[b] else None

    def take_at(self, b: int, size: int, align: int) -> int | None:
        """Place the request at the start of free block `b` (marked used), or None when it does not fit."""
        bsize = self.free_size[b]
        p = self._aligned_payload(b, align)
        need = block_size_for(size)
        if p - HDR + need > b + bsize:
            return None
        self.carve(b, bsize, p - HDR, need)
        return p

    def take(self, b: int, payload: int, size: int) -> None:
        """Mark the request `best()` placed at `payload` in free block `b` used."""
        self.carve(b, self.free_size[b], payload - HDR, block_size_for(size))

    @staticmethod
    def _aligned_payload(b: int, align: int) -> int:
        p = -(-(b + HDR) // align) * align
        while 0 < p - HDR - b < MIN_BLOCK:  # a front gap too small to be a free block
            p += align
        return p

    def carve(self, b: int, bsize: int, start: int, need: int) -> None:
        """Take [start, start+need) out of free block [b, b+bsize): front gap and tail stay free."""
        self._unlist(b)
        if start > b:
            self._list(b, start - b)
        tail = b + bsize - (start + need)
        if tail >= MIN_BLOCK:
            self._list(start + need, tail)
        else:
            need += tail  # a sliver too small for a block stays with this one
        self.used[start] = need

    def _list(self, b: int, size: int) -> None:
        bisect.insort(self.free_starts, b)
        self.free_size[b] = size

    def _unlist(self, b: int) -> None:
        i = bisect.bisect_left(self.free_starts, b)
        del self.free_starts[i]
        del self.free_size[b]

    # ------------------------------------------------------------------ free

    def release(self, payload: int) -> int:
        """Free the block of `payload`, merging with free neighbours; returns the block's size."""
        b = payload - HDR
        size = self.used.pop(b)
        start, total = b, size
        starts = self.free_starts
        i = bisect.bisect_left(starts, b)
        if i < len(starts) and starts[i] == b + size:  # merge the next block
            nxt = starts[i]
            total += self.free_size.pop(nxt)
            del starts[i]
        if i > 0:
            prev = starts[i - 1]
            if prev + self.free_size[prev] == b:  # merge the previous block
                start = prev
                total += self.free_size[prev]
                del starts[i - 1]
                del self.free_size[prev]
        self._list(start, total)
        return size

    def usable(self, payload: int) -> int:
        """Payload bytes of the live block at `payload`."""
        return self.used[payload - HDR] - HDR

    def resize_in_place(self, payload: int, size: int) -> bool:
        """Grow or shrink a live block without moving it (absorbing or returning the next free block)."""
        b = payload - HDR
        cur = self.used[b]
        need = block_size_for(size)
        nxt = b + cur
        avail = cur + (self.free_size.get(nxt, 0))
        if need > avail:
            return False
        if nxt in self.free_size:
            self._unlist(nxt)
        tail = avail - need
        if tail >= MIN_BLOCK:
            self._list(b + need, tail)
            self.used[b] = need
        else:
            self.used[b] = avail
        return True

    # ------------------------------------------------------------------ grow and shrink

    def grow(self, new_end: int) -> None:
        """Extend the region to `new_end`; the new bytes join the top free block."""
        add = new_end - self.end
        assert add > 0 and new_end % GRAIN == 0
        top = self.top_free()
        if top:
            last = self.free_starts[-1]
            self.free_size[last] += add
        else:
            self._list(self.end, add)
        self.end = new_end

    def shrink(self, new_end: int) -> None:
        """Cut the region at `new_end`, which must lie in the top free block (leaving >= MIN_BLOCK or 0)."""
        last = self.free_starts[-1]
        assert last + self.free_size[last] == self.end and new_end >= last, "shrink below the top free block"
        if new_end - last < MIN_BLOCK:
            assert new_end == last, "shrink would leave a sliver"
            self._unlist(last)
        else:
            self.free_size[last] = new_end - last
        self.end = new_end

    # ------------------------------------------------------------------ checks

    def check(self) -> str | None:
        """The first broken invariant, in words, or None."""
        blocks = sorted(
            [(b, s, True) for b, s in self.used.items()] + [(b, s, False) for b, s in self.free_size.items()]
        )
        pos, prev_free = self.start, False
        if self.free_starts != sorted(self.free_size):
            return "the free list is not in address order"
        for b, s, used in blocks:
            if b != pos:
                return f"blocks do not tile the region at {pos:#x}"
            if b % GRAIN or s % GRAIN or s < MIN_BLOCK:
                return f"block {b:#x} of {s} bytes is misaligned or too small"
            if not used and prev_free:
                return f"free block {b:#x} was not merged with the free block before it"
            prev_free = not used
            pos = b + s
        if pos != self.end:
            return f"blocks end at {pos:#x}, the region at {self.end:#x}"
        return None
