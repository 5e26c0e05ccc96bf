"""What a run produced: `RunResult`, built from the machine at the run's end (runloop.py).

Invariant: a RunResult holds copies (lists, dicts), never the machine's live containers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kalloc.errors import KallocError

if TYPE_CHECKING:
    from kalloc_machine.machine import Machine


@dataclass(slots=True)
class RunResult:
    """How a run ended and what it produced."""

    exit_code: int | None
    reason: str
    instructions: int
    uart: str
    errors: list[KallocError]
    irq_counts: dict[int, int]  # line -> interrupts taken (timer: entries; intc lines: claims)
    wall_s: float
    idle: int = 0  # of `instructions`, the idle time skipped in wfi
    exact: bool = True  # False: `instructions` is the start of the slice the run stopped in
    irq_raised: dict[int, int] = field(default_factory=dict)  # intc line -> times raised
    dma_transfers: list[dict[str, Any]] = field(default_factory=list)


def run_result(m: Machine, reason: str, wall: float, *, exit_code: int | None, exact: bool, timer_taken: int,
               idle: int) -> RunResult:  # fmt: skip
    """The result of `m`'s run that ended for `reason` (exit_code kept only for "exit")."""
    counts: dict[int, int] = {}
    if m.clint is not None and timer_taken:
        counts[m.clint.irq if m.clint.irq is not None else 0] = timer_taken
    if m.intc is not None:
        counts.update(m.intc.claimed)
    return RunResult(
        exit_code=exit_code if reason == "exit" else None,
        reason=reason,
        instructions=m.clock.now,
        uart=m.uart.text(),
        errors=list(m.errors),
        irq_counts=dict(sorted(counts.items())),
        wall_s=wall,
        idle=idle,
        exact=exact,
        irq_raised=dict(sorted(m.intc.raised.items())) if m.intc else {},
        dma_transfers=[t.as_dict() for t in m.dma.transfers] if m.dma else [],
    )
