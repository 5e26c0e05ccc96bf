"""`kalloc bench --board stm32f4`: the bench workloads and the raw-Unicorn baseline on the Cortex-M machine.

tests/bench.elf is built for each ISA (firmware/build/armv7m/tests/bench.elf); `bench_elf` picks
the board's, and `RawCall` builds its bare Unicorn for the board's ISA (Thumb bit on every PC).
The figures themselves are in docs/performance.md, from the command; here only that each
workload runs to its end on both machines.
"""

from __future__ import annotations

import pytest
from kalloc_machine.board import load_board
from kalloc_machine.tools.benchkit import bench_elf, run_bench
from kalloc_machine.tools.benchmachine import RawCall


@pytest.mark.parametrize("board", ["default", "stm32f4"])
def test_the_bench_firmware_and_its_raw_baseline_run_on_both_machines(board: str) -> None:
    isa = load_board(board).cpu.isa
    assert ("armv7m" in bench_elf(board)) == (isa == "armv7m")
    for mode in ("nop", "compute"):
        span, instructions = run_bench(mode, 50, board=board, sanitize="off")
        assert span.positive and instructions > 0
    raw = RawCall(bench_elf(board), board, "bench_compute", load_board(board).cpu.quantum)
    assert raw.call(200).positive and raw.isa.name == isa
    assert raw.isa.pc(raw.uc) == raw.sentinel  # returned to the sentinel: the whole call ran


def test_a_part_the_board_cannot_run_is_a_row_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from kalloc_machine.tools import bench
    from kalloc_machine.tools.benchkit import BenchSettings

    def rv32_only(settings: BenchSettings, tick: object) -> list[bench.Figure]:
        run_bench("nop", 1, board=settings.board, sanitize="off")  # fine on both boards
        raise RuntimeError("churn_kalloc.elf: an ELF for RISC-V (32-bit)\nsecond line")

    monkeypatch.setattr(bench, "SUITE", {"allocation-like": rv32_only})
    (fig,) = bench.run_suite(BenchSettings(board="stm32f4", reps=1))
    assert fig.name == "allocation-like: not measured on board stm32f4" and fig.value is None
    assert fig.note == "churn_kalloc.elf: an ELF for RISC-V (32-bit)"
