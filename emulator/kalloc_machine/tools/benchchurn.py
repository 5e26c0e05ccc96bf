"""The allocation-heavy workload of `kalloc bench` (issue 14): one program, several allocators.

firmware/bench/churn.c fills 512 slots, then frees and mallocs a block of 1..2000 bytes
(xorshift32, fixed seed) `churn_iters` times. Its one object is linked three ways
(firmware/Makefile, "bench"): bench/churn_kalloc.elf (malloc is a hypercall to kalloc),
bench/churn_tlsf.elf (bench/tlsf.c, an O(1) TLSF allocator inside the firmware) and
bench/churn_picolibc.elf (picolibc's own nano-malloc; the SDK linked with SDK_MALLOC=0).
Each `Churn` is one of those ELFs under one set of run options; `COMPARISONS` turns
the timed churns into figures. A new option set (a fast path on/off, say) is one more
`Churn` and one more comparison: the workload is built once.

Every churn runs at two iteration counts and the difference is taken, so boot, the
initial fill, the final frees, exit and report cancel; an "operation" below is one
iteration (a free and a malloc).

Invariants:
 1. Churns are timed interleaved in the same rounds (benchkit.interleaved): ratios are
    side by side.
 2. A churn that does not exit 0 cleanly is a RuntimeError naming it (the firmware is ours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.benchkit import BenchSettings, Figure, Span, interleaved, poke, timed_run

# picolibc's nano-malloc walks its free list: ~5,000 instructions an iteration, 0.6 G at 110k
MAX_INSTRUCTIONS = 4_000_000_000


@dataclass(frozen=True, slots=True)
class Churn:
    """The workload as one ELF under one set of run options."""

    elf: str  # a shipped name: "bench/churn_kalloc"
    sanitize: str = "off"
    options: dict[str, Any] = field(default_factory=dict)  # more RunOptions fields


CHURNS: dict[str, Churn] = {
    "kalloc": Churn("bench/churn_kalloc"),
    "poison": Churn("bench/churn_kalloc", sanitize="poison"),
    "tlsf": Churn("bench/churn_tlsf"),
    "picolibc": Churn("bench/churn_picolibc"),
    "fastpath": Churn("bench/churn_kalloc", options={"fastpath": "on"}),  # issue 14: the blob + magazines
    "twin": Churn("bench/churn_kalloc", options={"percpu_cache": 32}),  # the same magazines, all in Python
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """A figure: time of `slow` / time of `fast` (a speed ratio of fast to slow)."""

    name: str
    slow: str
    fast: str
    target: str
    ok: Callable[[float], bool]


COMPARISONS = [
    Comparison("allocation-heavy workload, kalloc (sanitize off) speed / TLSF compiled in",
               "tlsf", "kalloc", "≥ 1.0", lambda r: r >= 1.0),
    Comparison("allocation-heavy workload, poison / off (kalloc)", "poison", "kalloc", "≤ 1.2",
               lambda r: r <= 1.2),
    Comparison("allocation-heavy workload, kalloc (sanitize off) speed / picolibc malloc compiled in",
               "picolibc", "kalloc", "> 1.0", lambda r: r > 1.0),
    Comparison("allocation-heavy workload, kalloc --fastpath on speed / TLSF compiled in",
               "tlsf", "fastpath", "≥ 1.0", lambda r: r >= 1.0),
    Comparison("allocation-heavy workload, kalloc --fastpath on speed / off", "kalloc", "fastpath", "> 1.0",
               lambda r: r > 1.0),
    Comparison("allocation-heavy workload, kalloc --percpu-cache 32 (Python twin) speed / off", "kalloc",
               "twin", "(info)", lambda r: True),
]  # fmt: skip


def run_churn(churn: Churn, iters: int, board: str) -> tuple[Span, int]:
    """(the machine's run time on both clocks, instructions) of one run of the workload."""
    opts = RunOptions(firmware=str(prebuilt(churn.elf)), board=board, sanitize=churn.sanitize,
                      max_instructions=MAX_INSTRUCTIONS, timeout_s=600.0, **churn.options)  # fmt: skip
    session = Session(opts)
    poke(session, "churn_iters", iters)
    span, result = timed_run(session)
    if result.exit_code != 0 or result.errors:
        raise RuntimeError(f"{churn.elf} ({churn.sanitize}) failed: {result.reason} {result.errors[:1]}")
    return span, result.instructions


def bench_churn(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    # --quick: 2,000 iterations apart, so that a loaded machine's jitter in one run's wall time
    # (a few ms) cannot make the difference, ~10 ms for TLSF, come out as nothing or negative
    lo, hi = s.churn_iters if s.iters[0] >= 100 else (100, 2100)
    instructions: dict[str, float] = {}

    def per_op(key: str) -> Callable[[], Span]:
        def sample() -> Span:
            t_lo, n_lo = run_churn(CHURNS[key], lo, s.board)
            t_hi, n_hi = run_churn(CHURNS[key], hi, s.board)
            instructions[key] = (n_hi - n_lo) / (hi - lo)
            return (t_hi - t_lo) / (hi - lo)

        return sample

    med = interleaved({key: per_op(key) for key in CHURNS}, s.reps, tick)
    figs = []
    for c in COMPARISONS:
        ratio = med[c.slow] / med[c.fast] if med[c.fast].positive else None
        note = (f"{c.slow} {med[c.slow].cpu * 1e6:.2f} µs, {c.fast} {med[c.fast].cpu * 1e6:.2f} µs per "
                f"iteration (free + malloc); firmware instructions per iteration: {c.slow} "
                f"{instructions[c.slow]:.0f}, {c.fast} {instructions[c.fast]:.0f}")  # fmt: skip
        figs.append(Figure.timed(c.name, ratio, "×", c.target, c.ok, note))
    return figs
