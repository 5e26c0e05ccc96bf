"""Hostile firmware against the fast path's fifth-session listener points and inline replay:
the ring replayed before an interrupt entry and at each return (IrqState.watchers), before an
error is filed (Machine.before_error), inline (fastreplay.py).

The firmware is firmware/tests/hostile_raw_fastpath.c (`--fastpath on --sanitize off`): the
task mallocs through the blob and hands the object to the timer handler with no hypercall in
between, so the handler frees an object whose record is still in the ring (mode 0); the task
scribbles the newest record just before the interrupt comes (mode 1); a fault is filed while
the ring holds a record (mode 2). firmware/tests/hostile_raw_fastpath_unpatch.c lands ticks on
every instruction of an unpatched prologue (mode 0, F2), or one between the patch's two
instructions as the ring is found corrupt (mode 1, F5). /work/notes/D_findings.md has
findings F1 and F2; F5 is /work/notes/C18_findings.md's (all three fixed: their tests fail
without the fixes).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from kalloc_machine.session import RunOutcome, Session

from tests.machine import hostile
from tests.machine.hostile import QUANTA, allocator_serves, report_bytes

ELF = "tests/hostile_raw_fastpath"
UNPATCH_ELF = "tests/hostile_raw_fastpath_unpatch"
DELTAS = range(1, 49)  # hostile_raw_fastpath_unpatch mode 1: the timer deltas tried, one run each


def run(mode: int, fastpath: str = "on", **options: Any) -> tuple[Session, RunOutcome]:
    return hostile.run(ELF, {"mode": mode}, sanitize="off", fastpath=fastpath, **options)


def test_a_handler_frees_an_object_whose_record_is_still_in_the_ring() -> None:
    """The drain before the entry replays the blob's malloc first: the handler's free is of a live
    object. Clean, like the run without the fast path, and the same bytes twice."""
    s, out = run(0)
    assert out.exit_status == 0 and out.report["end"] == "exit" and out.report["errors"] == []
    # (served was > 1000 while a tick deferred in the blob waited up to a quantum: F1, fixed)
    # (and a tick deferred in the blob is retried every 16 instructions: 237 served with the fifth
    # session's blob, 50 with the sixth's shorter one, ~1 task malloc per tick)
    assert out.report["fastpath"]["served"] > 40 and out.report["fastpath"]["corrupt"] is None
    assert out.report["interrupts"]["lines"] == {"0": 40}
    assert out.report["allocator"]["totals"]["live_objects"] == 0 and out.report["leaks"]["count"] == 0
    allocator_serves(s)
    assert report_bytes(run(0)[1]) == report_bytes(out)
    _, off = run(0, fastpath="off")
    assert off.report["errors"] == [] and off.report["leaks"] == out.report["leaks"]


def test_a_fault_filed_while_the_ring_holds_a_record() -> None:
    """Machine.before_error drains first: the allocator the report shows holds the blob's objects,
    as the run without the fast path does; the same bytes twice."""
    s, out = run(2)
    assert out.exit_status == 65 and out.report["end"] == "fault"
    [err] = out.report["errors"]
    assert err["kind"] == "cpu-fault" and "unmapped address 0x0" in err["message"] and err["symbol"] == "main"
    _, off = run(2, fastpath="off")
    live = out.report["allocator"]["totals"]["live_objects"]
    assert live == off.report["allocator"]["totals"]["live_objects"]
    allocator_serves(s)
    assert report_bytes(run(2)[1]) == report_bytes(out)


def test_a_ring_scribbled_at_an_interrupt_is_one_report_and_no_traceback() -> None:
    s, out = run(1)
    corrupt = [e for e in out.report["errors"] if "fast path's ring is corrupt" in e["message"]]
    assert len(corrupt) == 1 and corrupt[0]["kind"] == "bad-hypercall"
    assert not [e for e in out.report["errors"] if e["kind"] == "internal"]
    assert out.exit_status in (64, 65)
    allocator_serves(s)
    assert report_bytes(run(1)[1]) == report_bytes(out)


class EntryPcs:
    """An IrqState watcher: the task's PC at each interrupt entry (mepc, written before the watchers
    are told), as an offset from `base`. It is told first, before the fast path's drain (which may
    unpatch and move a PC between a patch's two instructions back to its entry)."""

    def __init__(self, s: Session, base: int) -> None:
        self.machine, self.base = s.machine, base
        self.pcs: set[int] = set()
        s.machine.irq_state.watchers.insert(0, self)

    def before_switch(self) -> None:
        m = self.machine
        if m.irq_state.depth == 0:  # an entry from the task (a return is told at depth 1)
            self.pcs.add(m.isa.read_csrs(m.uc)["mepc"] - self.base)

    def after_switch(self) -> None:
        pass


@pytest.mark.parametrize("quantum", [100_000, 333])
def test_a_tick_inside_an_unpatched_prologue_runs_the_wrappers_own_code(quantum: int) -> None:
    """D_findings.md F2, deterministic (hostile_raw_fastpath_unpatch.c mode 0): free ran patched (Unicorn
    translated `auipc t0; jalr` as one block), the ring is found corrupt and unpatched, then ticks land
    on every instruction of free's prologue. uc_mem_write keeps translated blocks, so without
    unpatch's ctl_remove_cache the tick after the stale `auipc` resumes at free+4 in free's own code,
    `add sp,sp,-64` never ran, and main returns to 0 (cpu-fault, 65). The leak is the corrupt ring's:
    its records are dropped, the first object's free among them."""
    s = hostile.session(UNPATCH_ELF, {"mode": 0}, sanitize="off", fastpath="on", quantum=quantum)
    free = s.firmware.symbol_addr("free")
    assert free is not None
    entries = EntryPcs(s, free)
    out = s.run()
    assert [e["kind"] for e in out.report["errors"]] == ["bad-hypercall", "leak"]
    assert "header, class table or magazine addresses changed" in out.report["fastpath"]["corrupt"]
    assert (out.exit_status, out.report["end"]) == (64, "exit")
    assert out.report["interrupts"]["lines"] == {"0": 64}
    assert 4 in entries.pcs  # a tick at free+4, where the stale block's `auipc` ends: the sweep reaches it
    allocator_serves(s)


def unpatch_pcs(s: Session, base: int) -> set[int]:
    """The task's PC and mepc, as offsets from `base`, each time the fast path unpatches (seen
    before FastPath.unpatch moves a PC between a patch's two instructions back to its entry)."""
    fp, seen = s.fastpath, set()
    assert fp is not None
    unpatch = fp.unpatch

    def watched() -> None:
        csrs, pc = s.machine.isa.read_csrs(s.machine.uc), s.machine.isa.pc(s.machine.uc)
        seen.update((pc - base, csrs["mepc"] - base))
        unpatch()

    fp.unpatch = watched  # type: ignore[method-assign]
    return seen


@functools.cache
def midpatch_runs() -> dict[int, tuple[set[int], RunOutcome]]:
    """hostile_raw_fastpath_unpatch mode 1 for each delta: (the PCs at the unpatch - free, the outcome)."""
    runs = {}
    for delta in DELTAS:
        s = hostile.session(UNPATCH_ELF, {"mode": 1, "delta": delta}, sanitize="off", fastpath="on")
        free = s.firmware.symbol_addr("free")
        assert free is not None
        seen = unpatch_pcs(s, free)
        out = s.run()
        runs[delta] = (seen, out)
    return runs


def test_one_delta_lands_the_tick_between_the_patchs_two_instructions() -> None:
    """The F5 firmware reaches its point: a tick at free+4 (after the patch's `auipc`, before its
    `jalr`), with the ring corrupt; every tick, that one too (F5, below), goes on slow as the docs say."""
    runs = midpatch_runs()
    assert any(4 in seen for seen, _ in runs.values())
    for seen, out in runs.values():
        assert out.report["fastpath"]["corrupt"] is not None
        assert (out.exit_status, out.report["end"]) == (64, "exit"), seen


def test_a_ring_found_corrupt_with_the_task_between_the_patchs_instructions_goes_on_slow() -> None:
    """F5 (helper C, session 18): the ring is found corrupt, and unpatched, while the task stands
    at free+4 (the slice boundary at the tick's time ends there; the tick's entry would save it in
    mepc). The old unpatch left it there: the task ran free's own code from free+4, `add
    sp,sp,-64` never ran and main returned to 0 (cpu-fault, 65). Now unpatch sends such a PC
    (the PC, or mepc) back to the entry, whose own bytes it has just written back."""
    for seen, out in midpatch_runs().values():
        assert not [e for e in out.report["errors"] if e["kind"] == "cpu-fault"], seen
        assert out.report["end"] == "exit"


def test_the_fast_path_report_is_the_same_for_every_quantum() -> None:
    """D_findings.md F1: a timer interrupt deferred while the PC is in the blob (RunLoop.defer) waited
    for a boundary outside the window, in slices doubling up to the quantum: 3,703,468 instructions
    at quantum 100000, 208,965 at 333, 23,681 at 100. Now DEFER_BURST steps: one report."""
    reports = {report_bytes(run(0, quantum=q)[1]) for q in QUANTA}
    assert len(reports) == 1
