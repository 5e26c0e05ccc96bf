"""The bridge's remembered call sites (bridge/doorbell.py `_site_caller`, bridge/callsite.py `Site`).

RV32 remembers each site's Caller by (ra, fp) with the words its walk read; Cortex-M by the
identity of the walker's remembered answer. A loop's call site is walked once; the reports are
the ones the memo-less path gives (the memo defeated: every call walks and looks its Caller up),
on both ISAs, and a snapshot restored mid-run reports what the whole run reports.
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.bridge.callsite import ChainMemo
from kalloc_machine.isa.armv7m_unwind import CallSiteWalker
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools import benchkit

FIRMWARES = ["mallocs", "leak", "double_free", "uaf_then_double_free", "deep_site", "irq_kernel", "irqs_off"]
MACHINES = [("default", None), ("stm32f4", "armv7m")]


def _report(name: str, board: str, isa: str | None) -> dict[str, Any]:
    out = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}", isa)), board=board)).run().report
    return {k: v for k, v in out.items() if k not in ("wall_s", "host")}


def _defeated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every remembered site misses: RV32's walks answer words that never match (so each call walks
    and looks its Caller up), Cortex-M's walker answers a fresh tuple (no identity to remember)."""
    kept, walk = ChainMemo.kept, CallSiteWalker.walk

    def unmatched(self: ChainMemo, *args: Any) -> Any:
        bank, unpack, at, words, stack = kept(self, *args)
        return bank, unpack, at, (*words, -1), stack

    def fresh(self: CallSiteWalker, *args: Any) -> Any:
        pcs = walk(self, *args)
        return None if pcs is None else tuple(list(pcs))

    monkeypatch.setattr(ChainMemo, "kept", unmatched)
    monkeypatch.setattr(CallSiteWalker, "walk", fresh)


@pytest.mark.parametrize(("board", "isa"), MACHINES)
@pytest.mark.parametrize("name", FIRMWARES)
def test_remembered_sites_report_what_walking_every_call_reports(
    name: str, board: str, isa: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    remembered = _report(name, board, isa)
    _defeated(monkeypatch)
    assert _report(name, board, isa) == remembered


def test_a_loop_walks_its_sites_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/bench.elf's kmalloc mode, 200 iterations (400 hypercalls from two sites): a handful of
    walks, not one per call (before, ChainMemo answered every call and the bridge then hashed the
    stack and looked its handle and Caller up)."""
    walks = [0]
    kept = ChainMemo.kept

    def counted(self: ChainMemo, *args: Any) -> Any:
        walks[0] += 1
        return kept(self, *args)

    monkeypatch.setattr(ChainMemo, "kept", counted)
    session = Session(RunOptions(firmware=benchkit.bench_elf("default"), board="default", sanitize="off"))
    benchkit.poke(session, "bench_mode", benchkit.MODES["kmalloc"])
    benchkit.poke(session, "bench_iters", 200)
    report = session.run().report
    assert report["hypercalls"]["KMALLOC"] == 200 and report["hypercalls"]["KFREE"] == 200
    assert walks[0] < 20


@pytest.mark.parametrize(("board", "isa"), MACHINES)
def test_a_restored_snapshot_reports_the_whole_runs_sites(board: str, isa: str | None) -> None:
    """Stopped at main after boot's calls were remembered, snapshotted, restored twice: the sites
    remembered after the snapshot are forgotten with the depot's handles they name."""
    from kalloc_machine.tools.harness import Target

    options = RunOptions(firmware=str(prebuilt("tests/uaf_then_double_free", isa)), board=board)
    whole = Session(options).run().report
    target = Target(options)
    target.run_to("main")
    snap = target.snapshot()
    for _ in range(2):
        target.restore(snap)
        got = target.finish().report
        assert [(e["kind"], e.get("backtrace")) for e in got["errors"]] == [
            (e["kind"], e.get("backtrace")) for e in whole["errors"]
        ]
