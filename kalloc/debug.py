"""Red zones, poison and the quarantine: SLUB debug and KASAN's freed-object delay.

Byte values are Linux's (include/linux/poison.h), so a hex dump reads the
same as a kernel oops, and each value says what the memory is:

    0x5a  POISON_INUSE   fresh: allocated but not yet written (reading it is
                         a use of uninitialised memory; 0x5a5a5a5a is no
                         plausible pointer, length or flag word)
    0x6b  POISON_FREE    freed: the object is free; a write here after the
                         free is a use-after-free, found when the object is
                         handed out again or at check_poison()
    0xa5  POISON_END     last byte of a freed object, so a free object's
                         extent is visible in a dump
    0xcc  RED_ACTIVE     red zone: bytes around (and the tail after) every
                         slab object; writing them is an out-of-bounds write
    0xa7  POOL_FREED     a free DMA pool block (mm/dmapool.c)
    0xa9  POOL_ALLOC     an allocated, not yet written DMA pool block

Fresh and freed bytes differ on purpose: a report (and a test) can tell
"read before written" (0x5a) from "read after freed" (0x6b).

A slab slot of `stride` bytes, object at offset `left` (kalloc.slab):

    | red zone 0xcc | object: data, or 0x6b..0x6b 0xa5 when free | 0xcc ... |
    0             left                          left+req  left+size  stride

FillViews keeps, per cache, the slices of its fresh|red-zone pattern that allocations of each
size write (the slab paths' hot store under poison).

Invariants (sanitize != "off"):
 1. Every byte of a slot outside [left, left+req) of a live object is 0xcc.
 2. A free (or quarantined) object of a cache without constructor holds
    0x6b * (size - 1) + 0xa5.
 3. The quarantine's byte count equals the sum of its entries' sizes, and it
    never holds more than its budget after a push returns.
"""

from __future__ import annotations

from collections import deque
from typing import Any

POISON_INUSE = 0x5A
POISON_FREE = 0x6B
POISON_END = 0xA5
RED_ACTIVE = 0xCC
POOL_POISON_FREED = 0xA7
POOL_POISON_ALLOCATED = 0xA9

MAX_CHANGED_LISTED = 16  # a report lists at most this many damaged bytes


def free_pattern(size: int) -> bytes:
    """The bytes of a free object of `size`: 0x6b..., ending in 0xa5."""
    if size <= 0:
        return b""
    return bytes([POISON_FREE]) * (size - 1) + bytes([POISON_END])


def find_damage(actual: bytes, expected: bytes, base: int) -> dict[str, Any] | None:
    """Compare a guarded range to what it should hold.

    Args:
        actual: the bytes read from memory.
        expected: what they should be (same length).
        base: offset of actual[0] relative to the object start (negative for a
            left red zone).

    Returns:
        None when intact; else {"offset": first damaged offset, "length": span
        from first to last damaged byte, "count": damaged bytes, "changed":
        [{"offset", "value", "expected"}...] (at most MAX_CHANGED_LISTED)}.
    """
    if actual == expected:
        return None
    diffs = [i for i in range(len(actual)) if actual[i] != expected[i]]
    first, last = diffs[0], diffs[-1]
    return {
        "offset": base + first,
        "length": last - first + 1,
        "count": len(diffs),
        "changed": [
            {"offset": base + i, "value": actual[i], "expected": expected[i]}
            for i in diffs[:MAX_CHANGED_LISTED]
        ],
    }


def default_quarantine_bytes(ram_bytes: int) -> int:
    """KASAN's quarantine budget, scaled: min(256 KiB, RAM / 32).

    Linux sizes the quarantine at 1/32 of RAM (QUARANTINE_FRACTION); kalloc
    caps it at 256 KiB, enough to hold a few thousand small objects, so a
    stale pointer stays detectable for that many frees.
    """
    return min(256 << 10, ram_bytes // 32)


class Quarantine:
    """FIFO of freed objects waiting before their memory can be reused (KASAN).

    Entries are opaque tuples whose first item is the object address and last
    item its size in bytes; the owner decides what an entry means.
    """

    __slots__ = ("_fifo", "budget", "nbytes")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.nbytes = 0
        self._fifo: deque[tuple[Any, ...]] = deque()

    def __len__(self) -> int:
        return len(self._fifo)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._fifo)

    def push(self, entry: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Queue `entry`; returns the oldest entries evicted to stay within budget."""
        self._fifo.append(entry)
        self.nbytes += entry[-1]
        evicted = []
        while self.nbytes > self.budget and self._fifo:
            old = self._fifo.popleft()
            self.nbytes -= old[-1]
            evicted.append(old)
        return evicted

    def drain(self, keep: Any = None) -> list[tuple[Any, ...]]:
        """Remove and return every entry, or only those for which keep(entry) is False."""
        out: list[tuple[Any, ...]]
        if keep is None:
            out = list(self._fifo)
            self._fifo.clear()
            self.nbytes = 0
            return out
        out = []
        kept: deque[tuple[Any, ...]] = deque()
        for e in self._fifo:
            (kept if keep(e) else out).append(e)
        self._fifo = kept
        self.nbytes = sum(e[-1] for e in kept)
        return out


class FillViews(dict[int, memoryview]):
    """views[n]: the `size` bytes an allocation of n bytes writes under poison with red zones (its
    fresh fill, then its tail red zone), a slice of the cache's pat_fresh_rz made on first use and
    kept: a dict hit costs less than slicing a memoryview. At most `size` entries; they go with the
    cache's patterns (KmemCache.drop_patterns)."""

    __slots__ = ("pattern", "size")

    def __init__(self, pattern: memoryview, size: int) -> None:
        super().__init__()
        self.pattern = pattern
        self.size = size

    def __missing__(self, n: int) -> memoryview:
        v = self[n] = self.pattern[self.size - n : 2 * self.size - n]
        return v
