"""Interrupt-timing and fault-injection exploration: find a failing schedule, shrink it.

`explore(firmware)` reruns a firmware under many interrupt schedules (explicit
instruction counts at which the board's test line fires, `kalloc run --irq-at`) and,
with `fail=True`, fault-injection points (`--fail-nth`), stops at the first run that
fails, and shrinks it with Hypothesis to a minimal reproducer: fewest interrupts and
injected failures, each as early as Hypothesis can move it. The result prints as one
`kalloc run …` command line that reproduces the failure byte for byte (runs are
deterministic: same ELF, board, options and seed, same report).

The search: Hypothesis draws lists of instruction counts in [1, horizon] (horizon: the
length of a clean run) and lists of allocation numbers; a run *fails* when its exit
status differs from the clean run's (by default; pass `failing=` to decide yourself).
Hypothesis's `find` stops at the first failing example and shrinks it: a shorter list
wins, then smaller numbers. Every run is a fresh `kalloc run` (kalloc_machine.session
Session), so what the search saw is exactly what the printed command does.

The command is `kalloc explore` (kalloc.cli.explore); this module is the search.

Invariants:
 1. `Finding.command()` reproduces `Finding.outcome` byte for byte (one Session per run,
    nothing carried between runs).
 2. The clean run (no interrupt, no injection) does not fail: explore refuses to start
    otherwise (ValueError).
"""

from __future__ import annotations

import dataclasses
import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.tools.options import run_args

__all__ = ["Finding", "explore", "run_args"]

Example = tuple[list[int], list[int]]  # (interrupt times, allocation numbers to fail), as drawn
Schedule = tuple[tuple[int, ...], tuple[int, ...]]  # the same, sorted and without repeats


@dataclass(slots=True)
class Finding:
    """A minimal failing run: its options, its outcome, and how many runs the search took."""

    options: RunOptions
    outcome: RunOutcome
    runs: int

    @property
    def irq_at(self) -> tuple[int, ...]:
        return self.options.irq_at

    @property
    def fail_nth(self) -> tuple[int, ...]:
        return self.options.fail_nth

    def args(self) -> list[str]:
        """`kalloc run`'s arguments that reproduce the failure."""
        return run_args(self.options)

    def command(self) -> str:
        """The one-line `kalloc run …` reproducer."""
        return shlex.join(["kalloc", "run", *self.args()])

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.outcome.report["errors"]]


def explore(
    firmware: str | Path,
    *,
    base: RunOptions | None = None,
    irq: bool = True,
    fail: bool = False,
    max_examples: int = 300,
    max_irqs: int = 16,
    max_fails: int = 4,
    horizon: int | None = None,
    seed: int = 0,
    failing: Callable[[RunOutcome], bool] | None = None,
) -> Finding | None:
    """Search interrupt schedules (and fault-injection points) for a failing run; shrink it.

    Args:
      firmware: the ELF. base: other options (board, sanitize, ...), kept in every run.
      irq / fail: explore --irq-at schedules / --fail-nth points.
      max_examples: runs Hypothesis may try before giving up (shrinking runs come on top).
      max_irqs, max_fails: the longest lists drawn. horizon: the latest interrupt time
      (default: the clean run's length). seed: the search's own seed (same seed, same search).
      failing: the failure predicate (default: the exit status differs from the clean run's).
    Returns:
      the minimal Finding, or None when no example failed.
    Raises:
      ValueError when the clean run (no interrupts, no injection) already fails the predicate.
    """
    from hypothesis import strategies as st

    if not irq and not fail:
        raise ValueError("nothing to explore: pass irq=True and/or fail=True")
    options = dataclasses.replace(base or RunOptions(), firmware=str(firmware), irq_at=(), fail_nth=())
    clean = Session(options).run()
    predicate = failing or _status_differs(clean.exit_status)
    if predicate(clean):
        raise ValueError(f"{Path(firmware).name} fails without any interrupt or injected failure "
                         f"(status {clean.exit_status})")  # fmt: skip
    end = horizon or clean.report["instructions"]
    times = st.lists(st.integers(1, end), max_size=max_irqs) if irq else st.just([])
    allocs = allocation_requests(clean.report)
    nths = st.lists(st.integers(1, allocs), max_size=max_fails) if fail else st.just([])
    return _Search(options, predicate).find(st.tuples(times, nths), max_examples, seed)


def _status_differs(status: int) -> Callable[[RunOutcome], bool]:
    """The default failure predicate: the exit status is not the clean run's."""
    return lambda outcome: outcome.exit_status != status


def allocation_requests(report: dict[str, Any]) -> int:
    """How many allocation requests a run's report counts (at least 1): the --fail-nth range."""
    allocs = max(1, sum(report["interrupts"]["context_allocations"].values()))
    return max(allocs, sum(v for k, v in report["hypercalls"].items() if "ALLOC" in k or k in
                           ("MALLOC", "CALLOC", "REALLOC", "KREALLOC", "KCALLOC")))  # fmt: skip


class _Search:
    """The runs of one search: each example a fresh Session, the failing outcomes kept by schedule."""

    def __init__(self, options: RunOptions, failing: Callable[[RunOutcome], bool]) -> None:
        self.options, self.failing = options, failing
        self.runs = 0
        self.failed: dict[Schedule, RunOutcome] = {}

    def schedule(self, example: Example) -> RunOptions:
        at, nth = example
        return dataclasses.replace(self.options, irq_at=tuple(sorted(set(at))),
                                   fail_nth=tuple(sorted(set(nth))))  # fmt: skip

    def fails(self, example: Example) -> bool:
        self.runs += 1
        opts = self.schedule(example)
        outcome = Session(opts).run()
        if self.failing(outcome):
            self.failed[opts.irq_at, opts.fail_nth] = outcome
            return True
        return False

    def find(self, space: Any, max_examples: int, seed: int) -> Finding | None:
        """Hypothesis's find over `space` (a strategy of Examples), then the shrunk example's Finding."""
        from hypothesis import HealthCheck, Phase, find, settings
        from hypothesis.errors import NoSuchExample

        cfg = settings(max_examples=max_examples, database=None, deadline=None,
                       phases=[Phase.generate, Phase.shrink],
                       suppress_health_check=list(HealthCheck))  # fmt: skip
        try:
            example = find(space, self.fails, settings=cfg, random=random.Random(seed))
        except NoSuchExample:
            return None
        opts = self.schedule(example)
        outcome = self.failed.get((opts.irq_at, opts.fail_nth)) or Session(opts).run()
        return Finding(opts, outcome, self.runs)
