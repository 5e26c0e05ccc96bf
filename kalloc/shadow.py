"""KASAN shadow memory: one byte per 8 bytes of RAM, kept current from allocator events.

The shadow says, for every 8-byte granule of a RAM bank, how much of it the
firmware may touch (Linux's generic KASAN encoding, mm/kasan/kasan.h):

    0x00        all 8 bytes accessible
    0x01..0x07  the first k bytes accessible, the rest not (an object's last granule)
    0xFF        KASAN_PAGE_FREE: memory the allocator owns and has not handed out
    0xFC        KASAN_SLAB_REDZONE: past the requested size of a live object
    0xFB        KASAN_SLAB_FREE: a freed object (in the quarantine, or free)

Any negative byte (as int8) is "no access". The shadow does not decide what
kind of error an access is: the reporter asks the allocator (describe()) what
lies at the address; the codes only make a dump readable.

Storage is any writable buffer per bank: a `bytearray` when the emulator checks
accesses in a Python memory hook, or a memoryview of guest RAM (the region
reserved under the label "shadow") when compiled KASAN code checks it inside
the emulated CPU. Either way this module is pure Python and touches no Unicorn.

Invariants (after `attach()`):
 1. Every live object's [addr, addr + size) is accessible, except where a DMA
    pool block shares an 8-byte granule with its neighbour (see 3).
 2. Every other byte of memory the allocator manages reads "no access":
    free pages, slab red zones and padding, freed and quarantined objects,
    the tail between an object's size and its usable size.
 3. Granules shared by two objects (DMA pool blocks whose size or alignment is
    not a multiple of 8) are left accessible while either may be live: no
    false positive, at the cost of missing an overflow into that granule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from kalloc.dmapool import PoolPage
from kalloc.page import PAGE_SHIFT

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc

GRANULE = 8  # bytes per shadow byte (KASAN_GRANULE_SIZE)
SHADOW_SHIFT = 3

PAGE_FREE = 0xFF
SLAB_REDZONE = 0xFC
SLAB_FREE = 0xFB

CODE_NAMES = {PAGE_FREE: "free page", SLAB_REDZONE: "red zone", SLAB_FREE: "freed object"}


class ShadowRegion:
    """The shadow of one RAM bank: byte i covers [base + 8*i, base + 8*i + 8)."""

    __slots__ = ("base", "buf", "end", "size")

    def __init__(self, base: int, size: int, buf: bytearray | memoryview) -> None:
        if base % GRANULE or len(buf) < (size + GRANULE - 1) // GRANULE:
            raise ValueError(f"shadow of [{base:#x}, +{size:#x}) needs an 8-aligned base, {size // 8} bytes")
        self.base = base
        self.size = size
        self.end = base + size
        self.buf = buf


class Shadow:
    """The shadow of every RAM bank, and the rules that keep it current."""

    def __init__(self, regions: Iterable[ShadowRegion]) -> None:
        self.regions = list(regions)
        self._ka: Kalloc | None = None

    # -- raw access --------------------------------------------------------------------

    def region(self, addr: int) -> ShadowRegion | None:
        for r in self.regions:
            if r.base <= addr < r.end:
                return r
        return None

    def code(self, addr: int) -> int:
        """The shadow byte of addr's granule (0 outside every region)."""
        r = self.region(addr)
        return r.buf[(addr - r.base) >> SHADOW_SHIFT] if r else 0

    def _fill(self, lo: int, hi: int, code: int) -> None:
        """Set the shadow of the granules [lo >> 3, hi >> 3) (addresses) to code."""
        for r in self.regions:
            a, b = max(lo, r.base), min(hi, r.end)
            if a < b:
                i, j = (a - r.base) >> SHADOW_SHIFT, (b - r.base) >> SHADOW_SHIFT
                if j > i:
                    r.buf[i:j] = bytes([code]) * (j - i)

    def poison(self, addr: int, n: int, code: int, *, shared_edges: bool = False) -> None:
        """Mark [addr, addr + n) inaccessible with `code`, rounded out to whole granules.

        shared_edges: the first and last granules may hold a neighbour's bytes:
        poison only the granules wholly inside the range.
        """
        if n <= 0:
            return
        end = addr + n
        if shared_edges:
            self._fill(-(-addr // GRANULE) * GRANULE, end & ~(GRANULE - 1), code)
        else:
            self._fill(addr & ~(GRANULE - 1), -(-end // GRANULE) * GRANULE, code)

    def unpoison(self, addr: int, n: int, *, shared_edges: bool = False) -> None:
        """Mark [addr, addr + n) accessible; a partial last granule gets its byte count."""
        if n <= 0:
            return
        end = addr + n
        self._fill(addr & ~(GRANULE - 1), end & ~(GRANULE - 1), 0)
        tail = end & (GRANULE - 1)
        if tail:
            r = self.region(end)
            if r is not None:
                i = (end - r.base) >> SHADOW_SHIFT
                r.buf[i] = 0 if shared_edges else tail

    def check(self, addr: int, n: int) -> int | None:
        """The first inaccessible byte of [addr, addr + n), or None (KASAN's generic rule)."""
        r = self.region(addr)
        if r is None:
            return None
        buf, base = r.buf, r.base
        last = min(addr + n, r.end) - 1
        for g in range((addr - base) >> SHADOW_SHIFT, ((last - base) >> SHADOW_SHIFT) + 1):
            v = buf[g]
            if v == 0:
                continue
            gstart = base + (g << SHADOW_SHIFT)
            first = max(addr, gstart)
            if v >= 0x80:  # negative: nothing in the granule is accessible
                return first
            bad = gstart + v  # bytes from here on are past the object
            if min(last, gstart + GRANULE - 1) >= bad:
                return max(first, bad)
        return None

    # -- allocator events ------------------------------------------------------------------

    def attach(self, ka: Kalloc, accessible: Iterable[tuple[int, int]] = ()) -> None:
        """Start from "everything is the allocator's and free", open `accessible`
        ranges (the firmware image, the shadow region itself), open every live
        object, and follow the allocator from now on (ka.listeners)."""
        self._ka = ka
        for r in self.regions:
            self._fill(r.base, r.end, PAGE_FREE)
        for lo, hi in accessible:
            self._fill(lo & ~(GRANULE - 1), -(-hi // GRANULE) * GRANULE, 0)
        for a in ka.live_allocations():
            self.on_event("alloc", a.addr, a.size, a.usable)
        ka.listeners.append(self.on_event)

    def _shared(self, addr: int, usable: int) -> bool:
        """True for a DMA pool block that may share a granule with its neighbours."""
        if not (addr | usable) & (GRANULE - 1):
            return False
        ka = self._ka
        if ka is None:
            return True
        return isinstance(ka.page_owner.get(addr >> PAGE_SHIFT), PoolPage)

    def on_event(self, event: str, addr: int, size: int, usable: int) -> None:
        """ka.listeners callback: "alloc", "resize" (size = the new size) or "free"."""
        shared = self._shared(addr, usable)
        if event == "free":
            self.poison(addr, max(usable, size), SLAB_FREE, shared_edges=shared)
            return
        self.unpoison(addr, size, shared_edges=shared)
        if usable > size:
            lo = -(-(addr + size) // GRANULE) * GRANULE  # the partial granule is already encoded
            self.poison(lo, addr + usable - lo, SLAB_REDZONE, shared_edges=shared)
