"""Cortex-M exceptions with real firmware on the stm32f4 board (firmware/arm/tests/armv7m_*.c,
committed ELFs in firmware/build/armv7m/tests/): priorities and nesting with allocating
handlers, the task on the process stack, SysTick behind kalloc_timer_set, and hostile
firmware against the exception model (each a clear cpu-fault report, never a traceback).
The rules are the ARMv7-M ARM's (B1.5.4 priorities, B1.5.6-8 entry and return, B3.3 SysTick,
B3.4 NVIC); tests/machine/test_armv7m_scs.py checks them on a bare engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.session import RunOptions, RunOutcome, Session

ARM_TESTS = Path(__file__).resolve().parents[2] / "firmware" / "build" / "armv7m" / "tests"


def run(name: str, mode_symbol: str | None = None, mode: int = 0,
        **options: Any) -> tuple[RunOutcome, Session]:  # fmt: skip
    session = Session(RunOptions(firmware=str(ARM_TESTS / f"{name}.elf"), board="stm32f4", **options))
    if mode_symbol is not None:
        addr = session.firmware.symbol_addr(mode_symbol)
        assert addr is not None
        session.machine.phys.write_u32(addr, 0x100 | mode)
    return session.run(), session


def test_handlers_nest_exactly_as_the_priorities_say_and_the_allocator_stays_consistent() -> None:
    out, session = run("armv7m_nesting")
    r = out.result
    assert (r.reason, r.exit_code, r.errors, out.exit_status) == ("exit", 0, [], 0)
    phases = dict(re.findall(r"^(\w+) nested=(\d) depth=\d$", r.uart, re.M))
    assert phases == {"equal": "0", "priority": "1", "basepri": "0", "primask": "0", "subprio": "0",
                      "group": "1", "reverse": "0"}  # fmt: skip
    assert "priority nested=1 depth=2" in r.uart and "group nested=1 depth=2" in r.uart  # kalloc_irq_depth
    irq = session.machine.irq_state
    assert irq.max_depth == 2 and irq.depth == 0 and irq.entries == irq.returns == 14
    # every handler allocation was checked by main and freed: no leak, no error, nothing live
    assert out.report["errors"] == [] and out.report["leaks"]["count"] == 0


def test_the_same_firmware_is_deterministic_to_the_byte() -> None:
    a, _ = run("armv7m_nesting", seed=3)
    b, _ = run("armv7m_nesting", seed=3, quantum=997)
    assert a.result.instructions == b.result.instructions and a.result.uart == b.result.uart


def test_the_task_runs_on_psp_and_handlers_on_msp() -> None:
    out, _ = run("armv7m_psp", "psp_mode", 0)
    r = out.result
    assert (r.reason, r.exit_code, r.errors) == ("exit", 0, [])
    assert "task control=2 sp_on_task_stack=1" in r.uart  # CONTROL.SPSEL set by crt0
    # the handler: CONTROL.SPSEL clear, MSP in the top 4 KiB, PSP on the frame that holds main's pc
    assert "handler control=0 msp_on_handler_stack=1 psp_below=1 frame_pc_in_main=1" in r.uart


def test_a_handler_report_unwinds_across_the_frame_on_the_process_stack() -> None:
    out, _ = run("armv7m_psp", "psp_mode", 1)
    (err,) = out.report["errors"]
    assert err["kind"] == "invalid-context" and err["symbol"] == "on_tick"
    assert [f["symbol"] for f in err["backtrace"]] == ["on_tick", "__kalloc_trap", "kalloc_trap_vector"]
    assert err["interrupted"]["symbol"] == "main"  # the stacked pc, read from PSP (EXC_RETURN 0xFFFFFFFD)
    assert [f["symbol"] for f in err["interrupted"]["backtrace"]] == ["main", "_start"]


def test_the_stack_guard_catches_a_task_overflowing_its_process_stack() -> None:
    out, _ = run("armv7m_psp", "psp_mode", 2)
    (err,) = out.report["errors"]
    assert err["kind"] == "stack-overflow" and err["symbol"] == "recurse"
    assert err["stack"]["context"] == "task" and err["stack"]["repeated"]["symbol"] == "recurse"
    assert out.exit_status == 65


def test_kalloc_timer_set_runs_on_systick_short_long_and_cancelled() -> None:
    out, _ = run("armv7m_systick")
    r = out.result
    assert (r.reason, r.exit_code, r.errors) == ("exit", 0, [])
    took = {int(d): (int(t), int(f)) for d, t, f in re.findall(r"delay (\d+) took (\d+) fired (\d+)", r.uart)}
    assert set(took) == {1000, 40_000_000}
    for delay, (elapsed, fired) in took.items():  # time = executed instructions; the handler ran once
        assert fired == 1 and delay <= elapsed < delay + 200, (delay, elapsed)
    assert "cancelled fired 0" in r.uart
    assert r.idle > 39_000_000  # the long wait was skipped, not emulated
    assert out.report["interrupts"]["lines"] == {"0": 4}  # 1 + 3 periods of 2^24 for the long delay


@pytest.mark.parametrize("mode, message", [
    (1, "illegal exception return: EXC_RETURN 0xfffffff5 is not 0xfffffff1, 0xfffffff9 or 0xfffffffd"),
    (2, "illegal exception return: EXC_RETURN 0xfffffff1 returns to handler mode, but no other exception"),
    (3, "finds exception number 5 in the stacked xPSR"),
    (4, "finds the Thumb bit clear in the stacked xPSR"),
    (5, "a write to SHCSR (0xe000ed24) in the System Control Space: not modelled"),
    (6, "a write to AIRCR (0xe000ed0c) in the System Control Space: not modelled"),
    (7, "exception 15 entry: its vector at"),
    (8, "a 2-byte write to NVIC_ISER0 (0xe000e100)"),
    (9, "exception 17 (IRQ 1) pending and enabled, but the vector table at VTOR 0x80000000"),
])  # fmt: skip
def test_hostile_firmware_against_the_exception_model_gets_a_clear_report(mode: int, message: str) -> None:
    out, _ = run("armv7m_hostile_exc", "hostile_mode", mode)
    (err,) = out.report["errors"]
    assert err["kind"] == "cpu-fault" and message in err["message"], err["message"]
    assert out.result.reason == "fault" and out.exit_status == 65
    if mode in (5, 6, 8):  # in the task: the store's own pc and line
        assert (err["symbol"], err["location"]["file"]) == ("main", "firmware/arm/tests/armv7m_hostile_exc.c")


def test_the_arena_heap_stops_below_the_system_control_space() -> None:
    # The arena window starts at 0xE000_0000: on Cortex-M its 15th page is the SCS (0xE000_E000),
    # identity-mapped by the MMU; the arena fails cleanly there instead of writing into the NVIC.
    out, session = run("arena_heap", heap="arena")
    (oom,) = out.report["errors"]
    assert (oom["kind"], oom["severity"]) == ("oom", "warning") and "arena window is full" in oom["message"]
    assert session.heap.end == 0xE000_E000  # type: ignore[attr-defined]
