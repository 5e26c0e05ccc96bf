"""Leak classification at exit, as Linux's kmemleak does it: a conservative reachability scan.

Roots are the firmware's writable memory (data, bss, the stack) and the CPU's
registers at exit. Every aligned 32-bit word in a root that points at or into a
live object marks that object referenced ("still reachable"); referenced
objects are scanned in turn (a worklist, so chains of any length are followed).
Objects never marked are "definitely lost": nothing the firmware can still reach
holds their address. Objects marked with kmemleak_not_leak() are left out.

Conservative means a word that merely looks like a pointer keeps an object
alive: the scan can miss a leak, never invent one.

Invariants:
 1. Each live object is scanned at most once (O(words scanned × log objects)).
 2. The result partitions the live objects that are not `not_leak`:
    every one is in exactly one of `lost` and `reachable`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kalloc.physmem import PhysMem


class LiveObject(Protocol):
    addr: int
    size: int
    not_leak: bool


@dataclass(slots=True)
class LeakScan:
    """The outcome: objects nothing reachable points to, and those still referenced."""

    lost: list[LiveObject]
    reachable: list[LiveObject]


def _words(phys: PhysMem, start: int, end: int) -> Iterable[int]:
    start = (start + 3) & ~3
    end &= ~3
    while start < end:
        bank = phys.bank_of(start)
        if bank is None:
            return
        stop = min(end, bank.end)
        yield from phys.view(start, stop - start).cast("I")
        start = stop


def scan(
    phys: PhysMem,
    objects: Sequence[LiveObject],
    root_ranges: Iterable[tuple[int, int]],
    root_values: Iterable[int] = (),
) -> LeakScan:
    """Classify `objects` (sorted by addr) as lost or still reachable from the roots."""
    objs = [o for o in objects if not o.not_leak]
    starts = [o.addr for o in objs]
    ends = [o.addr + max(o.size, 1) for o in objs]
    marked = bytearray(len(objs))
    work: list[int] = []

    def visit(words: Iterable[int]) -> None:
        for w in words:
            i = bisect.bisect_right(starts, w) - 1
            if i >= 0 and w < ends[i] and not marked[i]:
                marked[i] = 1
                work.append(i)

    visit(root_values)
    for lo, hi in root_ranges:
        visit(_words(phys, lo, hi))
    while work:
        i = work.pop()
        visit(_words(phys, starts[i], ends[i]))
    lost = [o for o, m in zip(objs, marked, strict=True) if not m]
    reachable = [o for o, m in zip(objs, marked, strict=True) if m]
    return LeakScan(lost, reachable)
