"""Firmware end-to-end tests on both machines, parametrized by board: RV32 (default), Cortex-M4 (stm32f4).

Each case is one C program of firmware/tests/, built for each ISA from the same source
(firmware/build/tests/NAME.elf and firmware/build/armv7m/tests/NAME.elf): the run must end the
same way (exit status) and report the same kinds, each at the same function and line, with the
allocation site at the same line, on both. A line may differ only where the two compilers
place the same C statement differently (LINES_BY_BOARD: the instruction the budget stopped in a
spinning loop, an `asm` inserted raw). Memory errors run under poison, the KASAN hook and
compiled KASAN; interrupts and DMA, fault injection, bad hypercalls, leaks and the determinism
of the JSON bytes too. tests/machine/test_boards_harness.py does the same for the harness and
the pytest plugin; the rest of the suite runs on RV32, as before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

BOARDS = {"default": None, "stm32f4": "armv7m"}  # board -> the ISA of its shipped ELFs
Facts = tuple[str, str, str | None, int | None, int | None]  # severity, kind, symbol, line, alloc line

# (firmware, options, exit status, the reports as Facts, in order)
# fmt: off
CASES: list[tuple[str, dict[str, Any], int, list[Facts]]] = [
    ("tests/hello", {}, 0, []),
    ("tests/exit7", {}, 7, []),
    ("tests/double_free", {}, 64, [("error", "double-free", "main", 16, 9)]),
    ("tests/invalid_free", {}, 64, [("error", "invalid-free", "main", 20, 14),
                                    ("error", "invalid-free", "main", 22, None)]),
    ("tests/leak", {}, 64, [("error", "leak", "make_leaks", 13, None)]),
    ("tests/null_deref", {}, 65, [("error", "cpu-fault", "do_null_deref", 12, None)]),
    ("tests/illegal", {}, 65, [("error", "cpu-fault", "do_illegal", 6, None)]),
    ("tests/spin", {"max_instructions": 2_000_000}, 66, [("error", "timeout", "spin_forever", 10, None)]),
    ("tests/bad_hypercall", {}, 64, [("error", "bad-hypercall", "main", 37, None),
                                     ("error", "bad-hypercall", None, None, None)]),
    ("tests/irqs_off", {}, 64, [("error", "invalid-context", "main", 13, None)]),
    ("tests/irq_kernel", {}, 64, [("error", "invalid-context", "on_timer", 17, None)]),
    ("tests/irq_dma", {}, 0, []),
    ("tests/irq_race", {"irq_every": 5000}, 0, []),
    ("tests/mallocs", {}, 0, [("warning", "oom", "main", 50, None)]),
    ("tests/null_check", {"fail_site": "make_name", "fail_nth": (3,)}, 65,
     [("warning", "oom", "make_name", 12, None), ("error", "cpu-fault", "make_name", 16, None)]),
    ("tests/uaf_then_double_free", {}, 64, [("error", "double-free", "free_again", 19, 24),
                                            ("error", "use-after-free", None, None, 24)]),
]
# fmt: on
# (firmware, board) -> {reported line: the line on that board}: the same statement, compiled differently
LINES_BY_BOARD = {
    ("tests/spin", "stm32f4"): {10: 9},  # `for (;;) counter++;`: the budget ends in the loop's other line
    ("tests/illegal", "stm32f4"): {6: 7},  # RV32 names the asm's function entry line, Thumb the asm's own
}
# name, kind, faulting function, allocation line: under the KASAN hook (NAME) and compiled (kasan_NAME)
SHADOW_CASES = [
    ("oob_one", "out-of-bounds", "write_past_end", 16),
    ("underflow", "out-of-bounds", "write_before_start", 15),
    ("uaf_read", "use-after-free", "read_after_free", 18),
    ("uaf_write", "use-after-free", "write_after_free", 18),
    ("cache_oob", "out-of-bounds", "fill_items", 22),
    ("pool_oob", "out-of-bounds", "fill_descriptor", 20),
]


@pytest.fixture(params=sorted(BOARDS))
def board(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(board: str, name: str, **options: Any) -> tuple[dict[str, Any], Session]:
    """A shipped firmware on the board, as `kalloc run NAME --board BOARD` loads it."""
    elf = prebuilt(name, BOARDS[board])
    assert elf.is_file(), f"{elf} is not built: make -C firmware ARCH=armv7m {elf}"
    session = Session(RunOptions(firmware=name, board=board, **options))
    return session.run().report, session


def facts(report: dict[str, Any]) -> list[Facts]:
    out = []
    for e in report["errors"]:
        site = (e.get("alloc_site") or {}).get("location") or {}
        out.append((e["severity"], e["kind"], e.get("symbol"), (e.get("location") or {}).get("line"),
                    site.get("line")))  # fmt: skip
    return out


@pytest.mark.parametrize(("name", "options", "status", "expected"), CASES, ids=[c[0][6:] for c in CASES])
def test_same_reports_on_both_machines(board: str, name: str, options: dict[str, Any], status: int,
                                       expected: list[Facts]) -> None:  # fmt: skip
    report, session = run(board, name, **options)
    moved = LINES_BY_BOARD.get((name, board), {})
    want = [(sev, kind, sym, moved.get(line, line) if line else line, alloc)
            for sev, kind, sym, line, alloc in expected]  # fmt: skip
    assert facts(report) == want
    assert report["exit_code"] == status
    assert report["isa"] == (BOARDS[board] or "rv32imac") and session.machine.isa.name == report["isa"]
    files = {(e.get("location") or {}).get("file") for e in report["errors"]} - {None}
    assert all(f.startswith("firmware/") for f in files)  # the firmware's own sources, on both


@pytest.mark.parametrize("variant", ["hook", "compiled"])
@pytest.mark.parametrize(("name", "kind", "func", "line"), SHADOW_CASES, ids=[c[0] for c in SHADOW_CASES])
def test_kasan_names_the_access_on_both_machines(board: str, name: str, kind: str, func: str, line: int,
                                                 variant: str) -> None:  # fmt: skip
    report, session = run(board, f"tests/{'kasan_' if variant == 'compiled' else ''}{name}", sanitize="kasan")
    assert session.kasan_mode == variant
    first = next(e for e in report["errors"] if e["severity"] == "error")
    assert (first["kind"], first["symbol"]) == (kind, func)
    assert first["location"]["file"] == f"firmware/tests/{name}.c"
    assert first["alloc_site"]["location"] == {"file": f"firmware/tests/{name}.c", "line": line}
    store = first["access"]["type"] == "write"
    mnemonic = first["instruction"].split()[0].removeprefix("c.")
    assert mnemonic in (("sb", "sw", "strb", "str", "str.w", "strb.w") if store else
                        ("lw", "lbu", "lb", "ldr", "ldrb", "ldr.w", "ldrb.w"))  # fmt: skip
    assert report["exit_code"] == 64


def test_same_seed_same_json_bytes_on_each_machine(board: str) -> None:
    a, _ = run(board, "tests/irq_race", irq_every=3000, seed=5)  # on stm32f4 this schedule hits the race
    b, _ = run(board, "tests/irq_race", irq_every=3000, seed=5)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["interrupts"] != {}


def test_explore_finds_the_interrupt_race_on_cortex_m() -> None:  # RV32's: tests/machine/test_explore.py
    from kalloc_machine.tools.explore import explore

    found = explore("tests/irq_race", base=RunOptions(board="stm32f4"), max_examples=200, seed=0)
    assert found is not None and "double-free" in found.kinds()
    assert len(found.irq_at) == 1 and found.outcome.exit_status == 64
    (err,) = [e for e in found.outcome.report["errors"] if e["kind"] == "double-free"][:1]
    assert (err["symbol"], err["location"]["file"]) == ("drain", "firmware/tests/irq_race.c")
    assert found.command().startswith("kalloc run ") and "--board stm32f4" in found.command()
