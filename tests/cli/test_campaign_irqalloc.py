"""`kalloc campaign --irq-allocs` (issue 15): every allocation from task context pre-empted once by
the handler the firmware registered, at the exact instruction after the allocation's hypercall.

firmware/tests/campaign_irq_alloc.c: log_value() reads the log's head, allocates, then links; the
test line's handler allocates an entry and links it too. Pre-empted inside the allocation, the
handler's entry is lost (a leak allocated in the handler). The window is the allocation itself:
40 points spread over the run miss it; the 8 allocation points all hit it.
"""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.campaign_irqalloc import alloc_times

from kalloc.cli import main

IRQ_ALLOC = str(prebuilt("tests/campaign_irq_alloc"))


def campaign_json(*args: str) -> tuple[int, dict[str, Any]]:
    res = CliRunner().invoke(main, ["campaign", IRQ_ALLOC, "--workers", "1", *args, "--json", "-"],
                             catch_exceptions=False)  # fmt: skip
    return res.exit_code, json.loads(res.stdout)


def _interrupted(report: dict[str, Any]) -> dict[str, Any]:
    """The frame of the code the leaked entry's handler interrupted (after the trap entry's frames)."""
    [leak] = [e for e in report["errors"] if e["kind"] == "leak"]
    trace = leak["alloc_site"]["backtrace"] if "alloc_site" in leak else leak["backtrace"]
    names = [f["symbol"] for f in trace]
    assert names[:3] == ["on_test_irq", "__kalloc_trap", "kalloc_trap_vector"]
    return trace[3]


def test_points_spread_over_the_run_miss_the_race_and_every_allocation_pre_empted_finds_it():
    status, doc = campaign_json("--irq-points", "40")
    assert status == 0 and doc["runs"]["done"] == 40 and doc["bugs"] == []
    status, doc = campaign_json("--irq-allocs")
    assert status == 1
    base = doc["firmware"][0]["baseline"]
    assert (base["task_allocations"], doc["runs"]["done"], doc["sweep"]["irq_allocs"]) == (8, 8, True)
    [bug] = doc["bugs"]
    assert (bug["kind"], bug["frames"], bug["dimension"], bug["runs"]) == (
        "leak", ["on_test_irq", "__kalloc_trap", "kalloc_trap_vector"], "irq-alloc", 8)
    args = bug["reproducer"]["args"]
    assert args[1] == "--irq-at" and len(args) == 3 and bug["reproducer"]["reproduced"] is True
    assert int(args[2]) == alloc_times(RunOptions(firmware=IRQ_ALLOC))[0]  # the first allocation's point


def test_each_point_is_the_instruction_right_after_the_allocations_hypercall():
    times = alloc_times(RunOptions(firmware=IRQ_ALLOC))
    assert len(times) == 8 and times == sorted(set(times))  # task allocations only, in order
    for t in times[:2]:
        at = _interrupted(Session(RunOptions(firmware=IRQ_ALLOC, irq_at=(t,))).run().report)
        before = _interrupted(Session(RunOptions(firmware=IRQ_ALLOC, irq_at=(t - 1,))).run().report)
        # one instruction earlier the handler interrupts the doorbell store itself (it has not run);
        # at t, the instruction after it: the allocation returned, log_value has not linked it yet
        assert at["symbol"] == before["symbol"] == "kmalloc"
        assert at["pc"] == before["pc"] + 4


def test_the_handlers_own_allocations_are_not_points():
    """timer_atomic.c allocates 3 times, each in its timer handler: no task allocation, no point."""
    timer_atomic = str(prebuilt("tests/timer_atomic"))
    report = Session(RunOptions(firmware=timer_atomic)).run().report
    assert report["hypercalls"]["KMALLOC"] == report["interrupts"]["context_allocations"]["allocs"] == 3
    assert alloc_times(RunOptions(firmware=timer_atomic)) == []
