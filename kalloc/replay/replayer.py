"""Trace replay: run an allocation trace through a heap policy, without firmware, and measure it.

`replay(trace, ka, heap)` performs every request of a `kalloc.replay.trace.Trace` on
the heap's C library face over the allocator `ka`, and returns a
`ReplayResult` with the figures malloc-lab and Linux use:

    payload         live requested bytes (what the program asked for)
    committed       pages held from the buddy allocator (slabs, heap regions,
                    arena pages, page tables: everything the replay allocated),
                    in bytes. Without demand paging, committed is what memory costs.
    utilization     peak payload / peak committed (malloc-lab's definition: the
                    two peaks may come at different steps)
    free pages per order, largest free block, unusable free space index per
    order (Mel Gorman's, kalloc.stats.unusable_index), failed requests.

The replay checks itself as it goes (verify=True): every object gets an 8-byte
signature at its start and end, checked when it is resized (realloc must keep
the prefix) and freed (another object overlapping it would have overwritten
it); calloc memory must read zero; aligned_alloc must return an aligned
pointer; every `check_every` steps and at the end, live objects must not
overlap and ka.check() and heap.check() must pass. A failure raises
ReplayError naming the step and the object.

Trace semantics (kalloc.replay.trace): ids name objects; `r` of an id that is not live
is realloc(NULL, n), i.e. a malloc; `f` of an id that is not live (its
allocation failed, or the trace frees twice) is counted in `skipped` and not
sent to the heap, so a trace error never becomes an allocator error.

Invariants:
 1. The result is a function of (trace, allocator config, RAM banks, heap):
    nothing random, no wall-clock time in it.
 2. The allocator is left as the trace leaves it (live objects stay live).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kalloc.errors import KallocError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.replay.trace import ALLOC, CALLOC, FREE, MEMALIGN, REALLOC, Op, Trace
from kalloc.stats import unusable_index

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.heaps.base import Heap

SIG = 8  # signature bytes at each end of an object


class ReplayError(Exception):
    """The replay found the heap broke its contract (overlap, lost data, bad alignment, invariant)."""


def _signature(ident: int) -> bytes:
    return ((ident * 0x9E3779B97F4A7C15 + 0x5A5A) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")


@dataclass(slots=True)
class Sample:
    """The state after one step (kept for every step; per-order counts only when sampled)."""

    step: int
    payload: int
    committed: int
    largest_free: int
    free_pages: int
    free_blocks: list[int] | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "step": self.step,
            "payload_bytes": self.payload,
            "committed_bytes": self.committed,
            "largest_free_block": self.largest_free,
            "free_pages": self.free_pages,
        }
        if self.free_blocks is not None:
            d["free_blocks_per_order"] = list(self.free_blocks)
            d["unusable_index"] = [round(v / 1000, 3) for v in unusable_index(self.free_blocks)]
        return d


@dataclass(slots=True)
class ReplayResult:
    trace: str
    format: str
    heap: str
    ops: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    peak_payload: int = 0
    peak_payload_step: int = 0
    peak_committed: int = 0
    peak_committed_step: int = 0
    checks: int = 0
    samples: list[Sample] = field(default_factory=list)
    end: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def utilization(self) -> float:
        return self.peak_payload / self.peak_committed if self.peak_committed else 1.0

    def summary(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "format": self.format,
            "heap": self.heap,
            "ops": self.ops,
            "counts": dict(self.counts),
            "failed_requests": len(self.failed),
            "failures": self.failed[:20],
            "skipped": self.skipped,
            "peak_payload_bytes": self.peak_payload,
            "peak_payload_step": self.peak_payload_step,
            "peak_committed_bytes": self.peak_committed,
            "peak_committed_step": self.peak_committed_step,
            "utilization": round(self.utilization, 4),
            "invariant_checks": self.checks,
            "at_peak": self.snapshots.get(self.peak_committed_step, {}),
            "end": self.end,
        }


def free_blocks(ka: Kalloc) -> list[int]:
    """Free block counts per order, all zones together."""
    out = [0] * (ka.config.max_order + 1)
    for z in ka.buddy.populated_zones:
        for o, n in enumerate(z.nr_free_blocks()):
            out[o] += n
    return out


def largest_free_block(ka: Kalloc) -> int:
    best = -1
    for z in ka.buddy.populated_zones:
        best = max(best, z.largest_free_order())
    return PAGE_SIZE << best if best >= 0 else 0


def fragmentation(ka: Kalloc) -> dict[str, Any]:
    """Free pages per order, largest free block and unusable index, all zones together and per zone."""
    blocks = free_blocks(ka)
    return {
        "free_pages": ka.buddy.free_pages,
        "free_blocks_per_order": blocks,
        "largest_free_block": largest_free_block(ka),
        "unusable_index": [round(v / 1000, 3) for v in unusable_index(blocks)],
        "zones": ka.stats()["fragmentation"],
    }


class Replayer:
    """One replay in progress (use `replay()`)."""

    def __init__(self, trace: Trace, ka: Kalloc, heap: Heap, *, verify: bool, check_every: int,
                 sample_every: int, on_step: Callable[[int, Replayer], None] | None) -> None:  # fmt: skip
        self.trace, self.ka, self.heap = trace, ka, heap
        self.verify, self.check_every, self.sample_every = verify, check_every, max(1, sample_every)
        self.on_step = on_step
        self.live: dict[int, tuple[int, int]] = {}  # id -> (addr, size)
        self.payload = 0
        self.base_pages = ka.buddy.used_pages
        self.res = ReplayResult(trace.name, trace.format, heap.name)

    @property
    def committed(self) -> int:
        return (self.ka.buddy.used_pages - self.base_pages) << PAGE_SHIFT

    # -- signatures --------------------------------------------------------------------------------
    def _sign(self, ident: int, addr: int, size: int) -> None:
        if not self.verify or size == 0:
            return
        sig = _signature(ident)
        self.heap.write(addr, sig[: min(size, SIG)])
        if size > SIG:
            self.heap.write(addr + size - min(SIG, size - SIG), sig[: min(SIG, size - SIG)])

    def _verify(self, ident: int, addr: int, size: int, step: int, what: str) -> None:
        if not self.verify or size == 0:
            return
        sig = _signature(ident)
        n = min(size, SIG)
        if self.heap.read(addr, n) != sig[:n]:
            raise ReplayError(f"step {step}: object {ident} at {addr:#x}: its first bytes changed ({what})")
        if size > SIG:
            k = min(SIG, size - SIG)
            if self.heap.read(addr + size - k, k) != sig[:k]:
                raise ReplayError(
                    f"step {step}: object {ident} at {addr:#x}: its last bytes changed ({what})"
                )

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        res = self.res
        counts: dict[str, int] = {}
        grouping = self.ka.buddy.grouping  # --antifrag tag-arenas: pages by the step's @tag
        for step, op in enumerate(self.trace.ops):
            counts[op.kind] = counts.get(op.kind, 0) + 1
            if grouping is not None:
                grouping.current_tag = op.tag
            try:
                self._do(step, op)
            except KallocError as err:
                raise ReplayError(f"step {step}: the heap rejected {op}: {err}") from err
            self._measure(step)
            if self.check_every and (step + 1) % self.check_every == 0:
                self.check(step)
            if self.on_step is not None:
                self.on_step(step, self)
        res.ops = len(self.trace.ops)
        res.counts = counts
        self.check(len(self.trace.ops))
        res.end = self.snapshot()
        return res

    def _fail(self, step: int, op: Op) -> None:
        self.res.failed.append({"step": step, "op": op.kind, "id": op.id, "size": op.nbytes})

    def _do(self, step: int, op: Op) -> None:
        if op.kind == FREE:
            self._free(step, op)
        elif op.kind == REALLOC and op.id in self.live:
            self._resize(step, op)
        elif op.id in self.live:  # an id allocated twice: a trace error, not the heap's
            self.res.skipped += 1
        else:
            self._allocate(step, op)

    def _free(self, step: int, op: Op) -> None:
        got = self.live.pop(op.id, None)
        if got is None:
            self.res.skipped += 1
            return
        self._verify(op.id, got[0], got[1], step, "before free")
        self.heap.free(got[0])
        self.payload -= got[1]

    def _resize(self, step: int, op: Op) -> None:
        addr, old = self.live[op.id]
        self._verify(op.id, addr, old, step, "before realloc")
        new = self.heap.realloc(addr, op.size)
        if new is None:
            if op.size:
                self._fail(step, op)
            return
        keep = min(old, op.size, SIG)
        if self.verify and keep and self.heap.read(new, keep) != _signature(op.id)[:keep]:
            raise ReplayError(f"step {step}: realloc of object {op.id} lost its contents")
        self.live[op.id] = (new, op.size)
        self.payload += op.size - old
        self._sign(op.id, new, op.size)

    def _allocate(self, step: int, op: Op) -> None:
        """malloc, calloc, aligned_alloc, or realloc of an id that is not live: realloc(NULL, n)."""
        heap, kind, n = self.heap, op.kind, op.nbytes
        if kind == CALLOC:
            addr = heap.calloc(op.arg, op.size)
        elif kind == MEMALIGN:
            addr = heap.aligned_alloc(op.arg, op.size)
        else:
            assert kind in (ALLOC, REALLOC)
            addr = heap.malloc(n)
        if addr is None:
            self._fail(step, op)
            return
        if self.verify:
            if kind == CALLOC and n and heap.read(addr, min(n, 64)) != bytes(min(n, 64)):
                raise ReplayError(f"step {step}: calloc object {op.id} at {addr:#x} is not zeroed")
            if kind == MEMALIGN and addr % op.arg:
                raise ReplayError(f"step {step}: aligned_alloc({op.arg}) returned {addr:#x}")
        self.live[op.id] = (addr, n)
        self.payload += n
        self._sign(op.id, addr, n)

    def _measure(self, step: int) -> None:
        res, ka = self.res, self.ka
        committed = self.committed
        if self.payload > res.peak_payload:
            res.peak_payload, res.peak_payload_step = self.payload, step
        if committed > res.peak_committed:
            res.peak_committed, res.peak_committed_step = committed, step
        sampled = step % self.sample_every == 0 or step == len(self.trace.ops) - 1
        res.samples.append(
            Sample(
                step,
                self.payload,
                committed,
                largest_free_block(ka),
                ka.buddy.free_pages,
                free_blocks(ka) if sampled else None,
            )
        )

    def check(self, step: int) -> None:
        """Full checks: live objects do not overlap, allocator and heap invariants hold."""
        spans = sorted((a, s, i) for i, (a, s) in self.live.items())
        for (a, s, i), (b, _t, j) in itertools.pairwise(spans):
            if a + s > b:
                raise ReplayError(f"step {step}: objects {i} at {a:#x} (+{s}) and {j} at {b:#x} overlap")
        try:
            self.ka.check()
            self.heap.check()
        except KallocError as err:
            raise ReplayError(f"step {step}: invariant broken: {err}") from err
        self.res.checks += 1

    def snapshot(self) -> dict[str, Any]:
        d = fragmentation(self.ka)
        d["payload_bytes"] = self.payload
        d["committed_bytes"] = self.committed
        d["live_objects"] = len(self.live)
        d["heap"] = self.heap.stats()
        return d


def replay(
    trace: Trace,
    ka: Kalloc,
    heap: Heap,
    *,
    verify: bool = True,
    check_every: int = 0,
    sample_every: int | None = None,
    snapshot_steps: frozenset[int] | set[int] = frozenset(),
    on_step: Callable[[int, Replayer], None] | None = None,
) -> ReplayResult:
    """Replay `trace` through `heap` over `ka`; see the module docstring.

    check_every: run the full checks every N steps (0: only at the end).
    sample_every: record free blocks per order every N steps (default: about
    500 samples). snapshot_steps: steps after which a fragmentation snapshot is
    kept in result.snapshots. on_step(step, replayer) runs after every step
    (memory maps). Raises ReplayError when the heap or the allocator breaks a rule.
    """
    if sample_every is None:
        sample_every = max(1, len(trace.ops) // 500)
    r = Replayer(trace, ka, heap, verify=verify, check_every=check_every, sample_every=sample_every,
                 on_step=None)  # fmt: skip

    def at_step(step: int, rp: Replayer) -> None:
        if step in snapshot_steps:
            rp.res.snapshots[step] = rp.snapshot()
        if on_step is not None:
            on_step(step, rp)

    r.on_step = at_step if (snapshot_steps or on_step) else None
    return r.run()


def find_peak(trace: Trace, ka: Kalloc, heap: Heap) -> int:
    """The step after which committed memory peaks (a fast pass without checks; replay is deterministic)."""
    return replay(trace, ka, heap, verify=False, sample_every=len(trace.ops) + 1).peak_committed_step
