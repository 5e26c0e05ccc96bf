"""The "tlsf" heap: a TLSF-style good-fit policy, the reference a console allocator is measured against.

TLSF (Masmano et al., "TLSF: a new dynamic memory allocator for real-time
systems", 2004; Matthew Conte's tlsf.c) keeps free blocks in segregated lists
indexed by two levels: the first level is the power of two of the block size,
the second splits each power of two into 32 lists (below 256 bytes: 32 lists of
8 bytes). A request is rounded UP to the start of the next list (mapping_search)
and served from the first non-empty list at or above it — a "good fit" found in
O(1) with two bitmaps, never searching a list. Blocks coalesce immediately with
their physical neighbours. What it trades for its constant time is the rounding:
a request may take a block up to 1/32 larger than the smallest that would fit,
and never looks at a fitting block in its own list.

This reference runs the policy over the same boundary-tag regions and the same
pages as `firstfit` (kalloc.heaps.firstfit: regions of pages from the buddy
allocator, 8-byte tags, an empty region released), so the two differ only in
which free block serves a request. Within one list it takes the lowest address
(tlsf.c takes the list's head, the most recently freed block). The control
structure (bitmaps and list heads, 3 KB in tlsf.c) is static data, as is every
heap's control state here.

Invariants: FirstFitHeap's; and `tlsf_class` is monotonic in the size, with
`search_class(n) >= tlsf_class(n)`.
"""

from __future__ import annotations

from kalloc.config import Caller
from kalloc.heaps.firstfit import FirstFitHeap
from kalloc.heaps.fit import FitRegion, block_size_for

SL_LOG2 = 5  # 32 second-level lists per power of two
SMALL = 256  # below: 32 lists of 8 bytes


def tlsf_class(size: int) -> int:
    """mapping_insert(): the list index of a free block of `size` bytes (fl * 32 + sl)."""
    if size < SMALL:
        return size // (SMALL >> SL_LOG2)
    fl = size.bit_length() - 1
    sl = (size >> (fl - SL_LOG2)) ^ (1 << SL_LOG2)
    return (fl - 7) * (1 << SL_LOG2) + sl


def search_class(size: int) -> int:
    """mapping_search(): the first list whose every block holds `size` bytes (the request rounded up)."""
    if size >= SMALL:
        size += (1 << (size.bit_length() - 1 - SL_LOG2)) - 1
    return tlsf_class(size)


class TlsfRegion(FitRegion):
    """A region whose free blocks are searched the TLSF way (module docstring)."""

    __slots__ = ()

    def good(self, size: int, align: int) -> tuple[int, int, int] | None:
        """(list index, block start, payload) of the block TLSF would take here, or None."""
        need = block_size_for(size) + (align - 8 if align > 8 else 0)
        target = search_class(need)
        found: tuple[int, int, int] | None = None
        for b in self.free_starts:
            c = tlsf_class(self.free_size[b])
            if c < target or (found is not None and c >= found[0]):
                continue
            p = self.payload_in(b, size, align)
            if p is not None:
                found = (c, b, p)
        return found


class TlsfHeap(FirstFitHeap):
    """malloc as TLSF's good fit over firstfit's regions (module docstring)."""

    name = "tlsf"
    region_type = TlsfRegion

    def _grow(self, size: int, align: int, gfp: int, caller: Caller) -> bool:
        """Grow by enough for the request rounded up to its list (TLSF serves nothing smaller)."""
        return super()._grow(size + (size >> SL_LOG2) + 16, align, gfp, caller)

    def _fit(self, size: int, align: int) -> int | None:
        best: tuple[int, int, int] | None = None
        where: TlsfRegion | None = None
        for r in self.regions:
            assert isinstance(r, TlsfRegion)
            got = r.good(size, align)
            if got is not None and (best is None or got[0] < best[0]):
                best, where = got, r
        if best is None or where is None:
            return None
        where.take(best[1], best[2], size)
        return best[2]
