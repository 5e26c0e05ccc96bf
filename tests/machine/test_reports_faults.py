"""Fault reports state exact facts (issue 13, "Exact facts"): the instruction count and the firmware's state.

Every way a run can end without the firmware exiting — a fetch from a device, the
doorbells or data, a null dereference, an illegal instruction, a stack overflow (task,
handler, wild pointer), a page fault, a fatal hypercall, the budget, wfi with nothing to
wake it, the wall clock, Ctrl-C — reports:

- `instructions`: the real number of instructions executed up to and including the
  faulting one, never 0, and exact: the same whatever the slice length (`quantum`),
  which was not the case when a fault mid-slice reported the clock at the slice's start;
- the firmware's state in words in the text ("firmware did not exit (CPU fault)"), never
  "firmware exit code None" (the JSON's `firmware_exit_code` is null: docs/user-guide.md);
- the fault named exactly (a fetch from the UART's registers is an instruction fetch from
  non-executable memory, not Unicorn's "UC_ERR_EXCEPTION").
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from kalloc_machine.report.render import render_text
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session
from rich.console import Console


def run(name: str, **options: Any) -> RunOutcome:
    options.setdefault("timeout_s", 60)
    return Session(RunOptions(firmware=str(prebuilt(f"tests/{name}")), **options)).run()


def text_of(report: dict[str, Any]) -> str:
    out = io.StringIO()
    render_text(report, Console(file=out, width=200, color_system=None), quiet=True)
    return out.getvalue()


# (firmware, end, kind, words the message must hold)
FAULTS = [
    ("hostile_jump_mmio", "fault", "cpu-fault",
     "instruction fetch from 0x10000000 in the uart0 device's MMIO registers: not executable memory"),
    ("hostile_jump_doorbell", "fault", "cpu-fault",
     "instruction fetch from 0x11000000 in the hypercall doorbells (MMIO): not executable memory"),
    ("hostile_jump_data", "fault", "cpu-fault", "illegal instruction: c.unimp"),
    ("null_deref", "fault", "cpu-fault", "read of 4 bytes at unmapped address 0x0"),
    ("illegal", "fault", "cpu-fault", "illegal instruction"),
    ("hostile_stack_task", "fault", "stack-overflow", "stack overflow in runaway"),
    ("hostile_stack_irq", "fault", "stack-overflow", "(interrupt handler)"),
    ("hostile_stack_wild", "fault", "stack-overflow", "a wild pointer below the stack"),
    ("vmalloc_overflow", "fault", "page-fault", "the guard page after a vmalloc area"),
    ("vmalloc_uaf", "fault", "page-fault", "freed with vfree()"),
    ("hostile_time_wfi", "wfi", "timeout", "wfi with nothing to wake it"),
]  # fmt: skip

STATE = {"fault": "firmware did not exit (CPU fault)", "wfi": "firmware did not exit (asleep in wfi",
         "budget": "firmware did not exit (instruction budget exhausted)",
         "timeout": "firmware did not exit (wall-clock limit reached)",
         "interrupted": "firmware did not exit (interrupted by Ctrl-C)",
         "fatal": "firmware did not exit (a fatal error ended the run)"}  # fmt: skip


def assert_states_it(report: dict[str, Any]) -> None:
    text = text_of(report)
    assert report["firmware_exit_code"] is None
    assert STATE[report["end"]] in text, text
    assert "exit code None" not in text and " 0 instructions" not in text and "UC_ERR" not in text
    assert f"{report['instructions']:,} instructions" in text


@pytest.mark.parametrize(("name", "end", "kind", "words"), FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_reports_the_exact_instruction_count_and_names_the_fault(
    name: str, end: str, kind: str, words: str
) -> None:
    outs = [run(name, quantum=q) for q in (100_000, 1_000, 97)]
    counts = [o.report["instructions"] for o in outs]
    assert counts[0] > 0 and len(set(counts)) == 1, counts  # exact: the slicing does not show
    assert all(o.result.exact for o in outs)
    report = outs[0].report
    assert report["end"] == end
    (err,) = [e for e in report["errors"] if e["severity"] == "error"]
    assert err["kind"] == kind and words in err["message"], err["message"]
    assert_states_it(report)


def test_a_jump_into_device_memory_is_a_fetch_fault_with_its_call_site() -> None:
    report = run("hostile_jump_mmio").report
    (err,) = report["errors"]
    assert err["pc"] == 0x1000_0000
    assert err["access"] == {"type": "fetch", "addr": 0x1000_0000}
    assert [f["symbol"] for f in err["backtrace"][1:3]] == ["call_at", "main"]


def test_a_jump_into_bss_says_it_is_not_code() -> None:
    (err,) = run("hostile_jump_data").report["errors"]
    assert "is not code but RAM" in err["message"] and "blob+0x0" in err["message"]


def test_the_budget_ends_at_exactly_the_budget() -> None:
    out = run("spin", max_instructions=1_234_567, quantum=10_000)
    assert out.report["end"] == "budget" and out.report["instructions"] == 1_234_567
    assert_states_it(out.report)


def test_the_wall_clock_reports_the_instructions_run() -> None:
    out = run("hostile_time_hcloop", timeout_s=0.5, max_instructions=10**12)
    assert out.report["end"] == "timeout" and out.report["instructions"] > 0
    assert_states_it(out.report)


def _stop_after(s: Session, calls: int, stop: Any) -> None:
    """Call `stop(machine)` from inside the doorbell callback of the calls-th hypercall (where a
    Ctrl-C most often lands: hostile_time_hcloop does nothing but hypercalls)."""
    bridge, seen = s.machine.on_hypercall, [0]

    def hook(service: int, block: int) -> None:
        bridge(service, block)
        seen[0] += 1
        if seen[0] == calls:
            stop(s.machine)

    s.machine.on_hypercall = hook


def test_ctrl_c_inside_a_callback_counts_exactly() -> None:
    def interrupted(quantum: int) -> RunOutcome:
        s = Session(RunOptions(firmware=str(prebuilt("tests/hostile_time_hcloop")), quantum=quantum,
                               max_instructions=10**9))  # fmt: skip
        s.report_interrupts = True
        _stop_after(s, 300, lambda m: m.interrupt())  # what the SIGINT handler calls
        return s.run()

    a, b = interrupted(100_000), interrupted(333)
    assert a.report["end"] == "interrupted" and a.exit_status == 130
    assert a.result.exact and a.report["instructions"] > 0
    assert a.report["instructions"] == b.report["instructions"]
    assert_states_it(a.report)


def test_a_fatal_report_from_a_callback_counts_exactly() -> None:
    from kalloc.errors import BadArgumentError

    def fatal(quantum: int) -> RunOutcome:
        s = Session(RunOptions(firmware=str(prebuilt("tests/hostile_time_hcloop")), quantum=quantum))
        _stop_after(s, 50, lambda m: m.fatal(BadArgumentError("stop here")))
        return s.run()

    a, b = fatal(100_000), fatal(61)
    assert a.report["end"] == "fatal" and a.result.exact
    assert a.report["instructions"] == b.report["instructions"] > 0
    assert_states_it(a.report)


def test_the_machine_keeps_running_normally_after_a_fault_elsewhere() -> None:
    """The scratch page and the TLB entries a fault used do not outlive its slice: the next run
    of the same (restored) machine faults again at the same place (harness snapshots)."""
    from kalloc_machine.tools.harness import Target

    t = Target(RunOptions(firmware=str(prebuilt("tests/null_deref"))))
    snap = t.snapshot()
    first = t.finish().report
    t.restore(snap)
    again = t.finish().report
    assert first["instructions"] == again["instructions"] > 0
    assert [e["message"] for e in first["errors"]] == [e["message"] for e in again["errors"]]


def test_a_run_that_stopped_does_not_claim_no_leaks() -> None:
    """Leaks are judged only when the firmware exits: an interrupted run with no error says
    what it found and that leaks were not checked, never "no errors, no leaks"."""
    s = Session(RunOptions(firmware=str(prebuilt("tests/hostile_time_hcloop")), max_instructions=10**9))
    s.report_interrupts = True
    _stop_after(s, 100, lambda m: m.interrupt())
    out = s.run()
    assert out.exit_status == 130 and out.report["errors"] == []
    text = text_of(out.report)
    assert "no errors, no leaks" not in text
    assert "no errors found before the run stopped; leaks not checked" in text
    clean = text_of(run("hello").report)  # the firmware exited: leaks were judged
    assert "no errors, no leaks" in clean and "leaks not checked" not in clean


# -- the registers line comes from the ISA (a Cortex-M port is a new ISA module) -------------------


def test_the_registers_line_is_the_isas(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from kalloc_machine import isa

    report = run("null_deref").report
    assert report["isa"] == "rv32imac"
    assert "registers: ra=0x" in text_of(report)
    line = next(ln for ln in text_of(report).splitlines() if "registers:" in ln)
    assert [w.split("=")[0] for w in line.split()[1:]] == list(isa.isa_for("rv32imac").report_registers)

    fake = types.ModuleType("fake_isa")
    fake.Cpu = type("Cpu", (), {"report_registers": ("r0", "r1", "sp", "lr")})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_isa", fake)
    monkeypatch.setitem(isa.ISAS, "armv7m-fake", "fake_isa")
    err = dict(report["errors"][0], registers={"pc": 1, "r0": 1, "r1": 2, "sp": 3, "lr": 4, "ra": 5})
    text = text_of(dict(report, isa="armv7m-fake", errors=[err]))
    assert "registers: r0=0x1 r1=0x2 sp=0x3 lr=0x4\n" in text


def test_the_session_reads_the_elf_for_the_boards_isa(monkeypatch: pytest.MonkeyPatch) -> None:
    from kalloc_machine import session

    seen: list[Any] = []
    real = session.load_firmware

    def spy(path: Any, isa: str = "none") -> Any:
        seen.append(isa)
        return real(path, isa)

    monkeypatch.setattr(session, "load_firmware", spy)
    Session(RunOptions(firmware=str(prebuilt("tests/exit7"))))
    assert seen == ["rv32imac"]


def test_misaligned_loads_and_stores_are_legal() -> None:
    """Not a fault path: a misaligned 32-bit store and load (heap and stack) run clean."""
    out = run("misaligned")
    assert out.exit_status == 0 and out.report["errors"] == []
    assert out.report["uart"] == "misaligned 11223344 55667788\n"
