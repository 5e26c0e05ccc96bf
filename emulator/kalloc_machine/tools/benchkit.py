"""What every `kalloc bench` figure is made of: the settings, a figure, one timed run of the
bench firmware (firmware/tests/bench.c), and interleaved medians.

Invariants:
 1. No figure is a single timing: `interleaved` takes the median over `reps` rounds,
    the samplers interleaved within each round (A B A B ...): machines are shared and noisy.
 2. `run_bench` times the machine's run only (RunResult.wall_s): boot and report are not in it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kalloc_machine.memlayout import DOORBELL_BASE, DOORBELL_SIZE
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

MODES = {
    "empty": 0,
    "nop": 1,
    "kmalloc": 2,
    "cache": 3,
    "pages": 4,
    "malloc": 5,
    "compute": 6,
    "compute_irq": 7,
}
# hypercalls per iteration of each allocation workload (bench.c)
CALLS_PER_ITER = {"kmalloc": 2, "cache": 2, "pages": 2, "malloc": 3}


@dataclass(slots=True)
class Figure:
    name: str
    value: float | None
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass(slots=True)
class BenchSettings:
    board: str = "default"
    sanitize: str = "off"
    reps: int = 5
    # Two iteration counts whose difference is timed: large enough that the measured
    # work (~10k hypercalls) dwarfs a run's fixed cost and its noise (tens of ms).
    iters: tuple[int, int] = (1000, 11000)
    # The floor's runs (empty, NOP, bare doorbell, NOP with its call site): 50k calls between the
    # two counts, ~0.1 s a run, so that a scheduler hiccup of a few ms is a few % of a sample
    # (at 10k calls a bare run was ~15 ms: one hiccup moved the floor ratio by 10-30%).
    floor_iters: tuple[int, int] = (2000, 52000)
    compute_iters: int = 20_000
    # The timer's default rate: Linux's HZ=1000 on the boards' nominal 100 MIPS clock
    # (CpuSpec.timer_hz), i.e. a tick every 100,000 instructions.
    timer_period: int = 100_000
    # The allocation-heavy workload (tools/benchchurn.py): 100k iterations between the two counts.
    churn_iters: tuple[int, int] = (10_000, 110_000)
    figures: list[Figure] = field(default_factory=list)


def bench_elf(board: str) -> str:
    """tests/bench.elf built for the board's ISA (build/armv7m/ for a Cortex-M board)."""
    from kalloc_machine.board import load_board

    return str(prebuilt("tests/bench", load_board(board).cpu.isa))


def poke(session: Session, symbol: str, value: int) -> None:
    addr = session.firmware.symbol_addr(symbol)
    if addr is None:
        raise RuntimeError(f"bench firmware has no symbol {symbol}")
    session.machine.phys.write_u32(addr, value)


def run_bench(
    mode: str, iters: int, *, board: str, sanitize: str, period: int = 100_000, bare: bool = False,
    site: bool = False,
) -> tuple[float, int]:
    """(machine wall seconds, instructions) of one bench run.

    bare: the doorbell page is mapped again through the Unicorn binding's own `mmio_map`,
    with a Python callback that does nothing for the NOP (the other services still reach
    the machine): what a bare Unicorn MMIO callback costs, the reference under the bridge.
    site: NOP is served by an unmarked wrapper of itself, so the bridge walks and keeps its
    call site as for every allocation service (NOP itself reads no caller: no walk).
    """
    session = Session(RunOptions(firmware=bench_elf(board), board=board, sanitize=sanitize))
    if bare:
        bare_doorbell(session)
    if site:
        nop: Any = session.bridge.handler("NOP")  # a bound method, marked reads_no_caller
        session.bridge.register("NOP", partial(nop.__func__, nop.__self__))  # unmarked: walked; no frame more
    poke(session, "bench_mode", MODES[mode])
    poke(session, "bench_iters", iters)
    poke(session, "bench_timer_period", period)
    result = session.machine.run()
    if result.exit_code != 0 or result.errors:
        raise RuntimeError(f"bench mode {mode} failed: {result.reason} {result.errors[:1]}")
    return result.wall_s, result.instructions


def bare_doorbell(session: Session) -> None:
    """Serve the doorbell through a bare Unicorn MMIO callback: NOP does nothing (run_bench's bare)."""
    uc, on_hypercall = session.machine.uc, session.machine.on_hypercall

    def write(_uc: Any, offset: int, size: int, value: int, _ud: Any) -> None:
        if offset:  # service 0 (NOP) is the bare callback; the rest boot and end the firmware
            on_hypercall(offset >> 2, value & 0xFFFF_FFFF)

    uc.mem_unmap(DOORBELL_BASE, DOORBELL_SIZE)
    uc.mmio_map(DOORBELL_BASE, DOORBELL_SIZE, None, None, write, None)


def per_iter(
    mode: str, s: BenchSettings, board: str | None = None, bare: bool = False, site: bool = False,
    iters: tuple[int, int] | None = None,
) -> float:
    lo, hi = iters or s.iters
    t_lo, _ = run_bench(mode, lo, board=board or s.board, sanitize=s.sanitize, bare=bare, site=site)
    t_hi, _ = run_bench(mode, hi, board=board or s.board, sanitize=s.sanitize, bare=bare, site=site)
    return (t_hi - t_lo) / (hi - lo)


def interleaved(
    samplers: dict[str, Callable[[], float]], reps: int, tick: Callable[[], None]
) -> dict[str, float]:
    """Median of each sampler over `reps` rounds, the samplers interleaved within each round."""
    return {k: statistics.median(v) for k, v in rounds(samplers, reps, tick).items()}


def rounds(
    samplers: dict[str, Callable[[], float]], reps: int, tick: Callable[[], None]
) -> dict[str, list[float]]:
    """Each sampler's samples over `reps` rounds, the samplers interleaved within each round (the
    i-th samples of all samplers were taken one after the other: a ratio can be taken per round)."""
    samples: dict[str, list[float]] = {k: [] for k in samplers}
    for _ in range(reps):
        for key, fn in samplers.items():
            samples[key].append(fn())
            tick()
    return samples
