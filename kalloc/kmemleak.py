"""Leak classification at exit, as Linux's kmemleak does it: a conservative reachability scan.

Roots are the firmware's writable memory (data, bss, the stack) and the CPU's
registers at exit. Every aligned 32-bit word in a root that points at or into a
live object marks that object referenced ("still reachable"); referenced
objects are scanned in turn (a worklist, so chains of any length are followed).
Objects never marked are lost: nothing the firmware can still reach holds their
address. Objects marked with kmemleak_not_leak() are left out.

Lost objects are split as Valgrind's Memcheck splits them
(https://valgrind.org/docs/manual/mc-manual.html#mc-manual.leaks):
"definitely lost" when no pointer to the object is found at all, "indirectly lost"
when the only pointers to it are in other lost objects (the nodes of a leaked list
behind its lost head, the children of a leaked tree's root). A second pass scans
from the lost objects only, in address order, as Memcheck's "clique" pass does: each
lost object not yet reached becomes a leader and every lost object reachable from it
is indirectly lost. A leader later reached from another leader's clique turns
indirect too (its own clique was already marked). So a group of lost objects that
point only at each other (a pure cycle, A <-> B) keeps exactly one definitely-lost
object, its lowest address (Memcheck's clique leader), and the rest are indirect:
fix the definite ones and the indirect ones go with them.

Conservative means a word that merely looks like a pointer keeps an object
alive: the scan can miss a leak, never invent one.

Invariants:
 1. Each live object is scanned at most once per pass, and the second pass scans
    lost objects only (O(words scanned × log objects) in all).
 2. The result partitions the live objects that are not `not_leak`:
    every one is in exactly one of `lost` and `reachable`; `lost` is partitioned
    into `definitely` and `indirectly` (all three lists in address order).
 3. Every indirectly-lost object is pointed to by a lost object; every group of
    lost objects that nothing outside the group points to holds at least one
    definitely-lost object.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kalloc.physmem import PhysMem


class LiveObject(Protocol):
    addr: int
    size: int
    not_leak: bool


@dataclass(slots=True)
class LeakScan:
    """The outcome: objects nothing reachable points to, and those still referenced."""

    lost: list[LiveObject]  # definitely + indirectly lost, in address order
    reachable: list[LiveObject]
    definitely: list[LiveObject] = field(default_factory=list)  # no pointer to them anywhere
    indirectly: list[LiveObject] = field(default_factory=list)  # pointed to only from lost objects


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
    """Classify `objects` (sorted by addr) as lost (definitely or indirectly) or still reachable."""
    objs = [o for o in objects if not o.not_leak]
    starts = [o.addr for o in objs]
    ends = [o.addr + max(o.size, 1) for o in objs]
    marked = bytearray(len(objs))  # REACHABLE, or for lost objects: 0 (definite) / INDIRECT
    work: list[int] = []

    def target(w: int) -> int:
        i = bisect.bisect_right(starts, w) - 1
        return i if i >= 0 and w < ends[i] else -1

    def visit(words: Iterable[int]) -> None:
        for w in words:
            i = target(w)
            if i >= 0 and not marked[i]:
                marked[i] = REACHABLE
                work.append(i)

    visit(root_values)
    for lo, hi in root_ranges:
        visit(_words(phys, lo, hi))
    while work:
        i = work.pop()
        visit(_words(phys, starts[i], ends[i]))
    _split_lost(phys, starts, ends, marked, target)
    lost = [o for o, m in zip(objs, marked, strict=True) if m != REACHABLE]
    reachable = [o for o, m in zip(objs, marked, strict=True) if m == REACHABLE]
    definitely = [o for o, m in zip(objs, marked, strict=True) if m == 0]
    indirectly = [o for o, m in zip(objs, marked, strict=True) if m == INDIRECT]
    return LeakScan(lost, reachable, definitely, indirectly)


REACHABLE, INDIRECT = 1, 2


def _split_lost(phys: PhysMem, starts: list[int], ends: list[int], marked: bytearray,
                target: Callable[[int], int]) -> None:  # fmt: skip
    """The clique pass (module docstring): mark INDIRECT every lost object another lost object reaches."""
    scanned = bytearray(len(starts))
    for leader, m in enumerate(marked):
        if m or scanned[leader]:  # reachable, or already reached from an earlier leader
            continue
        scanned[leader] = 1
        work = [leader]
        while work:
            i = work.pop()
            for w in _words(phys, starts[i], ends[i]):
                j = target(w)
                if j < 0 or j == leader or marked[j] == REACHABLE:
                    continue
                if marked[j] == 0 and scanned[j]:  # an earlier leader: indirect now, its clique done
                    marked[j] = INDIRECT
                elif not scanned[j]:
                    marked[j] = INDIRECT
                    scanned[j] = 1
                    work.append(j)
