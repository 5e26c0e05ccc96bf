"""Hostile firmware against the fifth session's raw Cortex-M paths: the SCS's raw callbacks
(isa/armv7m_scsport.py, SysTick's start stamped in place) and slices counted exactly through
Thumb IT blocks (rawcount.py, ArmV7M.overrun_reader).

The firmware is firmware/arm/tests/hostile_raw_systick.c on the stm32f4 board; its
`hostile_mode` is poked before the run: SysTick reprogrammed raw from its own handler while
the task runs IT blocks (0), a SysTick storm of a tick every 2 instructions (1), a handler
that never returns (2), SCS accesses of a wrong width, misaligned, or to a reserved word
(3-5). Each report is compared byte for byte across quanta (100, 333, 100000), also with the
budget ending at each of a run of consecutive instructions through the IT blocks. Exit
statuses are docs/abi.md's: 0, 65 (cpu-fault), 66 (budget / wall clock), 130 (interrupted).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kalloc_machine.session import RunOutcome, Session

from tests.machine import hostile
from tests.machine.hostile import QUANTA, allocator_serves, report_bytes

ELF = "armv7m/tests/hostile_raw_systick"


def build(mode: int, **options: Any) -> Session:
    return hostile.session(ELF, {"hostile_mode": mode}, board="stm32f4", **options)


def same_for_every_quantum(mode: int, **options: Any) -> tuple[Session, RunOutcome]:
    return hostile.same_for_every_quantum(ELF, {"hostile_mode": mode}, board="stm32f4", **options)


def test_systick_reprogrammed_from_its_handler_is_quantum_free() -> None:
    s, out = same_for_every_quantum(0)
    assert out.exit_status == 0 and out.report["end"] == "exit" and out.report["errors"] == []
    assert out.report["uart"] == "ticks 150 digest d8a2d104 m 000006fa\n"
    assert out.report["instructions"] == 30_147
    allocator_serves(s)


def test_a_systick_storm_ends_on_the_budget_the_same_every_time() -> None:
    s, out = same_for_every_quantum(1, max_instructions=40_000)
    assert out.exit_status == 66 and out.report["end"] == "budget" and out.report["instructions"] == 40_000
    [err] = out.report["errors"]
    assert err["kind"] == "timeout" and "instruction budget exhausted (40000)" in err["message"]
    allocator_serves(s)


def test_a_handler_that_never_returns_ends_on_the_budget() -> None:
    s, out = same_for_every_quantum(2, max_instructions=300_000)
    assert out.exit_status == 66 and out.report["end"] == "budget"
    [err] = out.report["errors"]
    assert err["kind"] == "timeout" and err["symbol"] == "walk"
    allocator_serves(s)


def test_the_storm_honours_the_wall_clock() -> None:
    s = build(1, max_instructions=10**12, timeout_s=1.0)
    t0 = time.monotonic()
    out = s.run()
    assert time.monotonic() - t0 < 15.0
    assert out.exit_status == 66 and out.report["end"] == "timeout"
    assert "wall-clock limit of 1 s" in out.report["errors"][0]["message"]
    allocator_serves(s)


def test_interrupt_from_another_thread_ends_the_storm_cleanly() -> None:
    """Machine.interrupt() (what Ctrl-C calls) while SysTick fires every 2 instructions: most
    likely inside an exception entry, a return or an SCS callback."""
    s = build(1, max_instructions=10**12, timeout_s=60.0)
    s.report_interrupts = True  # as `kalloc run` does (kalloc/cli/run.py): the report so far, status 130
    timer = threading.Timer(1.0, s.machine.interrupt)
    timer.start()
    t0 = time.monotonic()
    out = s.run()
    timer.join()
    assert time.monotonic() - t0 < 15.0
    assert out.exit_status == 130 and out.report["end"] == "interrupted" and out.report["errors"] == []
    allocator_serves(s)


@pytest.mark.parametrize(("mode", "message"), [
    (3, "a 1-byte read of SYST_CSR (0xe000e010)"),
    (4, "a 1-byte write to SYST_RVR (0xe000e015)"),  # Unicorn splits the misaligned word store into bytes
    (5, "a 4-byte read of a reserved word (0xe000e020)"),
])  # fmt: skip
def test_a_bad_scs_access_is_a_cpu_fault_report(mode: int, message: str) -> None:
    s, out = same_for_every_quantum(mode)
    assert out.exit_status == 65 and out.report["end"] == "fault"
    first = out.report["errors"][0]
    assert first["kind"] == "cpu-fault" and first["message"].startswith(message)
    assert first["symbol"] == "main"
    allocator_serves(s)


def test_a_budget_ending_in_an_it_block_is_quantum_free() -> None:
    """30 consecutive budgets through `walk`'s IT blocks: a budget that runs out inside a block
    ends after the block (Unicorn runs it to its end: rawcount.py), at most 3 past the budget,
    and the report is the same for every quantum."""
    past = 0
    for n in range(20_000, 20_030):
        reports = {report_bytes(build(0, quantum=q, max_instructions=n).run()) for q in QUANTA}
        assert len(reports) == 1, f"budget {n}: the report depends on the quantum"
        report = json.loads(reports.pop())
        assert report["end"] == "budget" and n <= report["instructions"] <= n + 3
        assert report["errors"][0]["symbol"] in ("walk", "main")  # the loop, or its call
        past += report["instructions"] > n
    assert past > 0  # some budgets did run out inside a block
