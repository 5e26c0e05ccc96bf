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
status is not 0, as the clean run's is (by default; pass `failing=` to decide yourself).
Hypothesis's `find` stops at the first failing example and shrinks it: a shorter list
wins, then smaller numbers. Every run is a fresh `kalloc run` (kalloc_machine.session
Session), so what the search saw is exactly what the printed command does.

The command is `kalloc explore` (kalloc.cli.explore); this module is the search.

Invariants:
 1. `Finding.command()` reproduces `Finding.outcome` byte for byte (one Session per run,
    nothing carried between runs).
 2. The clean run (no interrupt, no injection) does not fail: explore refuses to start
    otherwise (AlreadyFails, a ValueError, carrying that run).
 3. `Baseline.handled` is the machine's fact, not a guess: the firmware enabled the
    test line in the interrupt controller (devices.Intc.ever_enabled) during the run.
"""

from __future__ import annotations

import dataclasses
import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalloc_machine.session import BadInput, RunOptions, RunOutcome, Session
from kalloc_machine.tools.options import run_args

__all__ = ["AlreadyFails", "Baseline", "Finding", "baseline", "explore", "run_args"]

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


@dataclass(slots=True)
class Baseline:
    """The unperturbed run (no interrupt, no injected failure) every search starts from.

    `test_line` is the board's test line (what --irq-at raises; None: the board has no
    interrupt controller), `handled` whether the firmware enabled that line in the
    interrupt controller at some time during the run (request_irq does; an interrupt on
    a line never enabled is never taken, so schedules of it change nothing).
    """

    options: RunOptions
    outcome: RunOutcome
    test_line: int | None
    handled: bool

    def command(self) -> str:
        """The `kalloc run …` line of this run."""
        return shlex.join(["kalloc", "run", *run_args(self.options)])

    def failure(self) -> str:
        """What went wrong, in a few words: the first error's kind and place, else the end and status."""
        report = self.outcome.report
        errors = [e for e in report["errors"] if e.get("severity") == "error"] or report["errors"]
        if errors:
            return f"{errors[0]['kind']} at {_place(errors[0])}"
        return f"end {report['end']!r}, exit status {self.outcome.exit_status}"


class AlreadyFails(ValueError):
    """The unperturbed run already fails: there is nothing to search for (`baseline` is that run)."""

    def __init__(self, baseline: Baseline) -> None:
        super().__init__(f"the firmware already fails without any perturbation: {baseline.failure()}")
        self.baseline = baseline


def _place(entry: dict[str, Any]) -> str:
    """`symbol (file:line)` of a report's error entry (its allocation site for a leak)."""
    where = entry if "location" in entry or "symbol" in entry else entry.get("alloc_site") or {}
    loc = where.get("location") or {}
    symbol = where.get("symbol") or (f"{where['pc']:#x}" if where.get("pc") is not None else "?")
    return f"{symbol} ({loc['file']}:{loc['line']})" if loc.get("file") else symbol


def baseline(firmware: str | Path, base: RunOptions | None = None) -> Baseline:
    """Run the firmware once, unperturbed; note whether it handles the board's test line."""
    options = dataclasses.replace(base or RunOptions(), firmware=str(firmware), irq_at=(), fail_nth=())
    session = Session(options)
    outcome = session.run()
    line, intc = session.board.test_irq, session.machine.intc
    handled = line is not None and intc is not None and bool(intc.ever_enabled >> line & 1)
    return Baseline(options, outcome, line if intc is not None else None, handled)


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
    clean: Baseline | None = None,
    progress: Callable[[int, bool], None] | None = None,
) -> Finding | None:
    """Search interrupt schedules (and fault-injection points) for a failing run; shrink it.

    Args:
      firmware: the ELF. base: other options (board, sanitize, ...), kept in every run.
      irq / fail: explore --irq-at schedules / --fail-nth points.
      max_examples: runs Hypothesis may try before giving up (shrinking runs come on top).
      max_irqs, max_fails: the longest lists drawn. horizon: the latest interrupt time
      (default: the clean run's length). seed: the search's own seed (same seed, same search).
      failing: the failure predicate (default: the exit status is not 0).
      clean: the unperturbed run, when the caller already made it (`baseline()`).
      progress: called after each run with (runs so far, shrinking a failure found).
    Returns:
      the minimal Finding, or None when no example failed.
    Raises:
      AlreadyFails (a ValueError) when the unperturbed run already fails the predicate;
      BadInput for a board or ELF that cannot be used, or no test line to perturb.
    """
    from hypothesis import strategies as st

    if not irq and not fail:
        raise ValueError("nothing to explore: pass irq=True and/or fail=True")
    clean = clean or baseline(firmware, base)
    predicate = failing or _status_differs(0)
    if predicate(clean.outcome):
        raise AlreadyFails(clean)
    if irq and clean.test_line is None:
        raise BadInput(f"board {clean.options.board}: no interrupt controller, so no test line to raise "
                       "(explore failure points only: --fail --no-irq)")  # fmt: skip
    end = horizon or clean.outcome.report["instructions"]
    times = st.lists(st.integers(1, end), max_size=max_irqs) if irq else st.just([])
    allocs = allocation_requests(clean.outcome.report)
    nths = st.lists(st.integers(1, allocs), max_size=max_fails) if fail else st.just([])
    return _Search(clean.options, predicate, progress).find(st.tuples(times, nths), max_examples, seed)


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

    def __init__(self, options: RunOptions, failing: Callable[[RunOutcome], bool],
                 progress: Callable[[int, bool], None] | None = None) -> None:  # fmt: skip
        self.options, self.failing, self.progress = options, failing, progress
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
        failed = self.failing(outcome)
        if failed:
            self.failed[opts.irq_at, opts.fail_nth] = outcome
        if self.progress is not None:
            self.progress(self.runs, bool(self.failed))
        return failed

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
