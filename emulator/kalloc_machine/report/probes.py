"""`kalloc run --probe SIZE[@ZONE],...`: would these contiguous requests have succeeded during the run?

A `ProbeWatch` listens to the allocator (`ka.listeners`: every allocation, free and
resize of a live object, whichever API made it) and after each event asks every
probe (kalloc.replay.probe: one free buddy block of the probe's order in one of its
zones, watermarks aside; nothing is allocated). It keeps, per probe:

    cliff            the first event at which the probe would fail although a zone of
                     the probe had that many free pages (external fragmentation)
    out_of_memory    the first event at which it would fail for lack of free pages
    worst            the event at which the largest free block of the probe's zones was
                     smallest (the first such), and whether the probe would have
                     succeeded there
    at_end           whether it would succeed when the run ended

An event is located by its ordinal (the n-th allocator event of the run, from 1), what
it was (`alloc`, `free`, `resize`; address and size) and the machine time at the start
of its slice (`slice_start_instructions`: a lower bound; the exact count inside a slice
would cost a hook on every instruction). Measured
cost: a few microseconds per event against ~100+ microseconds per hypercall
(docs/user-guide.md, "Probes on a live run").

Invariants:
 1. Watching changes nothing the firmware or the allocator sees.
 2. Same run, same answers (events are ordered by the run, not by time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kalloc.page import PAGE_SIZE
from kalloc.replay.probe import Probe, check, zones_of

if TYPE_CHECKING:
    from rich.console import Console

    from kalloc import Kalloc


class _State:
    __slots__ = ("cliff", "oom", "probe", "worst", "worst_ok")

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.cliff: dict[str, Any] | None = None
        self.oom: dict[str, Any] | None = None
        self.worst: dict[str, Any] | None = None
        self.worst_ok = True


class ProbeWatch:
    """Answers the probes after every allocator event (module docstring)."""

    def __init__(self, ka: Kalloc, probes: list[Probe], clock: Callable[[], int]) -> None:
        self.ka, self.clock = ka, clock
        self.states = [_State(p) for p in probes]
        self.events = 0
        self.zones = ka.buddy.populated_zones
        self.last: dict[str, Any] = {}
        ka.listeners.append(self._listen)

    def _where(self) -> dict[str, Any]:
        free = self.ka.buddy.free_pages * PAGE_SIZE
        return {"event": self.events, **self.last, "slice_start_instructions": self.clock(),
                "free_bytes": free}  # fmt: skip

    def _largest(self, st: _State) -> int:
        top = max((z.largest_free_order() for z in zones_of(st.probe, self.ka)), default=-1)
        return PAGE_SIZE << top if top >= 0 else 0

    def _listen(self, event: str, addr: int, size: int, usable: int) -> None:
        self.events += 1
        self.last = {"what": event, "addr": addr, "size": size}
        tops = {z.idx: z.largest_free_order() for z in self.zones}  # once per event (hot: every allocation)
        free = {z.idx: z.nr_free for z in self.zones}
        top_any, free_any = max(tops.values(), default=-1), max(free.values(), default=0)
        for st in self.states:
            want, order = st.probe.zone, st.probe.order
            top = top_any if want is None else tops.get(want, -1)
            ok = top >= order
            covered = ok or (free_any if want is None else free.get(want, 0)) >= (1 << order)
            largest = PAGE_SIZE << top if top >= 0 else 0
            if st.worst is None or largest < st.worst["largest_free_block"]:
                st.worst = {**self._where(), "largest_free_block": largest}
                st.worst_ok = ok
            if ok:
                continue
            if covered and st.cliff is None:
                st.cliff = {**self._where(), "largest_free_block": largest}
            elif not covered and st.oom is None:
                st.oom = self._where()

    def result(self) -> list[dict[str, Any]]:
        """The report's "probes" (docs/abi.md)."""
        out = []
        for st in self.states:
            p = st.probe
            ok, covered = check(p, self.ka)
            out.append({
                "probe": p.text, "size": p.size, "order": p.order,
                "zone": None if p.zone is None else self.ka.buddy.zones[p.zone].name,
                "at_end": {"ok": ok, "free_pages_cover_it": covered, "largest_free_block": self._largest(st)},
                "worst": None if st.worst is None else {**st.worst, "ok": st.worst_ok},
                "cliff": st.cliff, "out_of_memory": st.oom,
            })  # fmt: skip
        return out


def render_probes(report: dict[str, Any], out: Console) -> None:
    """The text report's probe lines (only when the run had --probe)."""
    from rich.text import Text

    for p in report.get("probes") or ():
        end = "would succeed" if p["at_end"]["ok"] else "would FAIL"
        largest = p["at_end"]["largest_free_block"]
        line = f"probe {p['probe']}: at the end {end} (largest free block {largest:,} B)"
        w = p["worst"]
        if w is not None:
            verdict = "would succeed" if w["ok"] else "would FAIL"
            line += f"; worst moment: allocator event {w['event']} ({w['what']} of {w['size']:,} B at"
            line += f" {w['addr']:#x}), largest free block {w['largest_free_block']:,} B, {verdict}"
        if p["cliff"] is not None:
            line += (f"; fragmentation cliff at event {p['cliff']['event']}"
                     f" with {p['cliff']['free_bytes']:,} B free")  # fmt: skip
        out.print(Text(line), soft_wrap=True)
