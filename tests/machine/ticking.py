"""Test support: tests/bench.elf's compute loop with the timer ticking, its emu_starts counted.

`ticking(board, **options)` runs the loop (4,000 iterations, the timer every 100k instructions)
with `--sanitize off` and returns (session, outcome, slices): how many `emu_start`s the run took.
Shared by the tests of slices per tick (test_mret_emulation.py, test_armv7m_it_slices.py,
test_armv7m_scs_port.py).
"""

from __future__ import annotations

from typing import Any

from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.tools.benchkit import MODES, bench_elf, poke


def ticking(board: str, **options: Any) -> tuple[Session, RunOutcome, int]:
    """bench.elf's compute loop with the timer every 100k instructions: (session, outcome, slices)."""
    s = Session(RunOptions(firmware=bench_elf(board), board=board, sanitize="off", **options))
    poke(s, "bench_mode", MODES["compute_irq"])
    poke(s, "bench_iters", 4000)
    poke(s, "bench_timer_period", 100_000)
    uc, slices = s.machine.uc, [0]
    start = uc.emu_start

    def counted(begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        slices[0] += 1
        start(begin, until, timeout, count)

    uc.emu_start = counted  # type: ignore[method-assign]
    return s, s.run(), slices[0]
