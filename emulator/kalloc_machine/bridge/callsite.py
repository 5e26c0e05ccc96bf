"""RV32's hypercall call site, remembered: `stack_above` (bridge/doorbell.py) without re-walking a chain.

Every RV32 hypercall walks the frame-pointer chain above the stub for its call site
(`doorbell.stack_above(ra, fp, bank)`: [fp-8] of the stub's frame, then the
([fp-8], [fp-4]) pair of each frame up the chain). A loop calls from the same few
states, so `ChainMemo.walk(ra, fp, bank)` keeps each walk by (ra, fp) with the stack
words it read, checks those words with one struct unpack (the gaps between them
skipped) and answers the same stack when they are equal: the walk is a function of
(ra, fp), the bank and the words it reads, each read's address following from the
words before it. Otherwise it walks again (and keeps the new walk).

Also here: `Site`, the bridge's own remembered answer for a walk (its check with the
Caller; bridge/doorbell.py `_sites`, `_by_walk`), the `reads_no_caller` mark of a service
handler that needs no call site (doorbell.py, invariant 6), and `call_site_walker`, the
ISA's fast Cortex-M walker for a machine.

Invariants:
 1. `walk(ra, fp, bank) == stack_above(ra, fp, bank)` for every state of the bank
    (tests/machine/test_callsite_memo.py compares them on random stacks and chains).
 2. What it keeps are answers, not run state: a snapshot (kalloc_machine.snapshot)
    shares it (`__deepcopy__`), and a restore leaves every kept walk checkable.
 3. At most MEMO walks are kept (states come from guest registers): past it, all are
    forgotten at once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

from kalloc.physmem import RamBank

DEPTH = 16  # doorbell.BACKTRACE_DEPTH: frames kept per site
MEMO = 1024
_PAIR = struct.Struct("<II")  # [fp-8], [fp-4]
_NO_CALLER = "kalloc_reads_no_caller"  # the mark's attribute (a bound method reads its function's)
F = TypeVar("F", bound=Callable[..., Any])
# bank, its check (a struct's unpack_from, bound), at, words, stack
_Walk = tuple[RamBank, Callable[..., tuple[int, ...]], int, tuple[int, ...], tuple[int, ...]]


class Site(tuple):  # type: ignore[type-arg]
    """A remembered walk's check with the bridge's answer for it: (bank, unpack, at, words, ctx,
    Caller). The bridge's own memo (bridge/doorbell.py `_sites`, restored with the depot whose
    handle the Caller holds); the entry itself is immutable, so a snapshot shares it."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> Site:
        return self


class ChainMemo:
    """stack_above, remembered by (ra, fp) with the words it read (module docstring)."""

    def __init__(self) -> None:
        self._walks: dict[tuple[int, int], _Walk] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> ChainMemo:
        return self  # invariant 2

    def walk(self, ra: int, fp: int, bank: RamBank) -> tuple[int, ...]:
        """stack_above(ra, fp, bank): [ra, then the saved ra of each frame up the fp chain]."""
        return self.kept(ra, fp, bank)[4]

    def kept(self, ra: int, fp: int, bank: RamBank) -> _Walk:
        """The walk of (ra, fp) as kept, checked or walked now: (bank, unpack, at, words, stack),
        where `unpack(bank.buf, at) == words` holds as long as the walk's answer `stack` does."""
        seen = self._walks.get((ra, fp))
        if seen is not None and seen[0] is bank and seen[1](bank.buf, seen[2]) == seen[3]:
            return seen
        reads: list[int] = []
        stack = chain(ra, fp, bank, reads)
        return self._keep(ra, fp, bank, reads, stack)

    def _keep(self, ra: int, fp: int, bank: RamBank, reads: list[int], stack: tuple[int, ...]) -> _Walk:
        words = sorted(set(reads))  # 4-aligned offsets (chain reads only aligned frames): no overlap
        fmt, last = "<", (words[0] - 4 if words else 0)
        for off in words:
            fmt += f"{off - last - 4}xI" if off > last + 4 else "I"
            last = off
        check = struct.Struct(fmt)
        at = words[0] if words else 0
        if len(self._walks) >= MEMO:
            self._walks.clear()
        kept = self._walks[(ra, fp)] = (bank, check.unpack_from, at, check.unpack_from(bank.buf, at), stack)
        return kept


def chain(ra: int, fp: int, bank: RamBank, reads: list[int]) -> tuple[int, ...]:
    """stack_above's walk, step for step, appending the bank offset of each word it reads to `reads`."""
    lo, hi, buf = bank.base + 8, bank.base + bank.size, bank.buf
    pcs = [ra]
    if fp & 3 or not lo <= fp <= hi:
        return (ra,)
    reads += (fp - lo, fp - lo + 4)
    fp = _PAIR.unpack_from(buf, fp - lo)[0]
    while fp and len(pcs) < DEPTH:
        if fp & 3 or not lo <= fp <= hi:
            break
        reads += (fp - lo, fp - lo + 4)
        nxt, ret = _PAIR.unpack_from(buf, fp - lo)
        if not ret:
            break
        pcs.append(ret)
        if nxt and nxt <= fp:  # frames grow up the stack; anything else is garbage
            break
        fp = nxt
    return tuple(pcs)


def reads_no_caller(handler: F) -> F:
    """Mark a service handler that never reads its `caller` argument (the empty NOP, BOOTINFO, ...):
    the bridge calls it with None and walks no call site unless the call fails (bridge/doorbell.py,
    invariant 6). Only for handlers that also queue no allocator report needing the caller."""
    setattr(handler, _NO_CALLER, True)
    return handler


def reads_caller(handler: Callable[..., Any]) -> bool:
    """False for a handler marked `reads_no_caller` (or a bound method of one)."""
    return not getattr(handler, _NO_CALLER, False)


def call_site_walker(machine: Any, isa: Any) -> Any:
    """The ISA's fast call-site walker (`CallSiteWalker`), or None: the machine's backtrace."""
    make = getattr(getattr(isa, "unwind", None), "call_site_walker", None)
    faults, fw = getattr(machine, "faults", None), getattr(machine, "firmware", None)
    if make is None or faults is None or fw is None:
        return None

    def leaf_rule(pc: int, ra: int) -> bool:  # FaultReporter.backtrace's: ra, when it is not pcs[1]
        if not fw.is_code(ra):
            return False
        here, there = fw.symbol_at(pc), fw.symbol_at(ra - 1)
        return here is None or there is None or here[0] != there[0]

    return make(machine.uc, faults.is_code, leaf_rule, DEPTH + 1)  # the wrapper's pc, then the site
