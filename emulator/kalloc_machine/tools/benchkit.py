"""What every `kalloc bench` figure is made of: the settings, a figure, a timed span on two
clocks, one timed run of the bench firmware (firmware/tests/bench.c), and interleaved medians.

Two clocks time every span (`Span`): the wall clock (`time.perf_counter`) and the CPU time of
this thread (`time.thread_time`), which does not count the time the OS gave other processes.
A figure's value is taken on the CPU clock and its wall-clock value is kept beside it
(`Figure.wall`); at rest the two agree, under load the CPU clock moves far less
(docs/performance.md, "Issue 14, seventh session: the bench").

Invariants:
 1. No figure is a single timing: `interleaved` takes the median over `reps` rounds,
    the samplers interleaved within each round (A B A B ...): machines are shared and noisy.
 2. `run_bench` times the machine's run only (`timed_run`: `Machine.run`, both clocks around the
    same call): boot and report are not in it.
 3. Both sides of a ratio are measured the same way: the same span, the same clock; a `Span`'s
    arithmetic is per clock, so a figure computed from Spans is that figure on each clock.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from kalloc_machine.memlayout import DOORBELL_BASE, DOORBELL_SIZE
from kalloc_machine.runresult import RunResult
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


@dataclass(frozen=True, slots=True)
class Span:
    """A quantity on both clocks: seconds of a timed span, or anything computed from such spans
    (a difference, a rate, a ratio), each clock's value computed from that clock's spans only."""

    wall: float  # time.perf_counter
    cpu: float  # time.thread_time: this thread's CPU time

    @staticmethod
    def _pair(other: Span | float) -> tuple[float, float]:
        return (other.wall, other.cpu) if isinstance(other, Span) else (other, other)

    def __add__(self, other: Span | float) -> Span:
        w, c = self._pair(other)
        return Span(self.wall + w, self.cpu + c)

    def __sub__(self, other: Span | float) -> Span:
        w, c = self._pair(other)
        return Span(self.wall - w, self.cpu - c)

    def __mul__(self, other: Span | float) -> Span:
        w, c = self._pair(other)
        return Span(self.wall * w, self.cpu * c)

    __rmul__ = __mul__

    def __truediv__(self, other: Span | float) -> Span:
        w, c = self._pair(other)
        return Span(self.wall / w, self.cpu / c)

    def __rtruediv__(self, other: float) -> Span:
        return Span(other / self.wall, other / self.cpu)

    @property
    def positive(self) -> bool:
        """Both clocks above zero (a difference of two runs that rose above the noise on both)."""
        return self.wall > 0 and self.cpu > 0


def median_span(values: Sequence[Span]) -> Span:
    """The median of each clock separately."""
    return Span(statistics.median(v.wall for v in values), statistics.median(v.cpu for v in values))


class Stopwatch:
    """Both clocks started together: `elapsed()` is the span since (the same span on each)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def elapsed(self) -> Span:
        cpu, wall = time.thread_time(), time.perf_counter()
        return Span(wall - self.wall, cpu - self.cpu)


def timed_run(session: Session) -> tuple[Span, RunResult]:
    """The machine's run of `session` on both clocks (emulation only: the Session is built). As
    `timeit` does, the garbage collector is off during the span (a collection first, outside it):
    a full collection the process's earlier work made due (tens of ms in a pytest process) would
    otherwise land in one run of a pair at random, and the difference of two runs can go negative."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        watch = Stopwatch()
        result = session.machine.run()
        return watch.elapsed(), result
    finally:
        if enabled:
            gc.enable()


@dataclass(slots=True)
class Figure:
    name: str
    value: float | None  # on the CPU clock when the figure is a timing (`wall` set)
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""
    wall: float | None = None  # the same figure on the wall clock (None: not a timing, or wall only)

    @classmethod
    def timed(cls, name: str, value: Span | None, unit: str, target: str = "",
              ok: Callable[[float], bool] | None = None, note: str = "") -> Figure:  # fmt: skip
        """A figure measured on both clocks: its value (and target check) on the CPU clock."""
        if value is None:
            return cls(name, None, unit, target, None, note)
        return cls(name, value.cpu, unit, target, None if ok is None else ok(value.cpu), note, value.wall)


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
) -> tuple[Span, int]:
    """(the machine's run time on both clocks, instructions) of one bench run.

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
    span, result = timed_run(session)
    if result.exit_code != 0 or result.errors:
        raise RuntimeError(f"bench mode {mode} failed: {result.reason} {result.errors[:1]}")
    return span, result.instructions


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
) -> Span:
    lo, hi = iters or s.iters
    t_lo, _ = run_bench(mode, lo, board=board or s.board, sanitize=s.sanitize, bare=bare, site=site)
    t_hi, _ = run_bench(mode, hi, board=board or s.board, sanitize=s.sanitize, bare=bare, site=site)
    return (t_hi - t_lo) / (hi - lo)


T = TypeVar("T", float, Span)


def median(values: Sequence[T]) -> T:
    """The median of floats, or of Spans clock by clock."""
    if values and isinstance(values[0], Span):
        return median_span(values)  # type: ignore[arg-type,return-value]
    return statistics.median(values)  # type: ignore[return-value,type-var]


def interleaved(samplers: dict[str, Callable[[], T]], reps: int, tick: Callable[[], None]) -> dict[str, T]:
    """Median of each sampler over `reps` rounds, the samplers interleaved within each round."""
    return {k: median(v) for k, v in rounds(samplers, reps, tick).items()}


def rounds(samplers: dict[str, Callable[[], T]], reps: int, tick: Callable[[], None]) -> dict[str, list[T]]:
    """Each sampler's samples over `reps` rounds, the samplers interleaved within each round (the
    i-th samples of all samplers were taken one after the other: a ratio can be taken per round)."""
    samples: dict[str, list[T]] = {k: [] for k in samplers}
    for _ in range(reps):
        for key, fn in samplers.items():
            samples[key].append(fn())
            tick()
    return samples
