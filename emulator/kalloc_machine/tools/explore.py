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
wins, then smaller numbers. Every run is a fresh `kalloc run` (emulator/run.py
Session), so what the search saw is exactly what the printed command does.

Like kalloc/cli.py, this module composes the allocator and the machine.

    python -m kalloc_machine.tools.explore firmware/build/tests/irq_race.elf [--fail] [--examples N]
"""

from __future__ import annotations

import dataclasses
import random
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalloc_machine.session import RunOptions, RunOutcome, Session

_DEFAULTS = RunOptions()


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


def run_args(options: RunOptions) -> list[str]:
    """The `kalloc run` arguments for `options` (only those that differ from the defaults)."""
    out = [options.firmware] if options.firmware else []
    simple = (("board", "--board"), ("seed", "--seed"), ("sanitize", "--sanitize"), ("heap", "--heap"),
              ("quantum", "--quantum"), ("max_instructions", "--max-instructions"),
              ("irq_every", "--irq-every"), ("irq_jitter", "--irq-jitter"), ("quarantine", "--quarantine"),
              ("fail_prob", "--fail-prob"), ("fail_site", "--fail-site"), ("fail_context", "--fail-context"),
              ("fail_cache", "--fail-cache"))  # fmt: skip
    for field, flag in simple:
        value = getattr(options, field)
        if value != getattr(_DEFAULTS, field) and value is not None:
            out += [flag, str(value)]
    if options.irq_at:
        out += ["--irq-at", ",".join(map(str, options.irq_at))]
    if options.fail_nth:
        out += ["--fail-nth", ",".join(map(str, options.fail_nth))]
    return out


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
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample

    if not irq and not fail:
        raise ValueError("nothing to explore: pass irq=True and/or fail=True")
    options = dataclasses.replace(base or RunOptions(), firmware=str(firmware), irq_at=(), fail_nth=())
    clean = Session(options).run()
    if failing is None:
        status = clean.exit_status

        def failing(outcome: RunOutcome) -> bool:
            return outcome.exit_status != status

    if failing(clean):
        raise ValueError(f"{Path(firmware).name} fails without any interrupt or injected failure "
                         f"(status {clean.exit_status})")  # fmt: skip
    end = horizon or clean.report["instructions"]
    allocs = max(1, sum(clean.report["interrupts"]["context_allocations"].values()))
    allocs = max(allocs, sum(v for k, v in clean.report["hypercalls"].items() if "ALLOC" in k or k in
                             ("MALLOC", "CALLOC", "REALLOC", "KREALLOC", "KCALLOC")))  # fmt: skip
    times = st.lists(st.integers(1, end), max_size=max_irqs) if irq else st.just([])
    nths = st.lists(st.integers(1, allocs), max_size=max_fails) if fail else st.just([])
    runs = 0
    last: dict[str, Any] = {}

    def schedule(example: tuple[list[int], list[int]]) -> RunOptions:
        at, nth = example
        return dataclasses.replace(options, irq_at=tuple(sorted(set(at))), fail_nth=tuple(sorted(set(nth))))

    def fails(example: tuple[list[int], list[int]]) -> bool:
        nonlocal runs
        runs += 1
        opts = schedule(example)
        outcome = Session(opts).run()
        if failing(outcome):
            last[opts.irq_at, opts.fail_nth] = outcome
            return True
        return False

    cfg = settings(max_examples=max_examples, database=None, deadline=None,
                   phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    try:
        example = find(st.tuples(times, nths), fails, settings=cfg, random=random.Random(seed))
    except NoSuchExample:
        return None
    opts = schedule(example)
    outcome = last.get((opts.irq_at, opts.fail_nth)) or Session(opts).run()
    return Finding(opts, outcome, runs)


def main(argv: list[str] | None = None) -> int:
    """python -m kalloc_machine.tools.explore FIRMWARE [--board B] [--fail] [--no-irq] [--examples N] [--seed S]"""  # noqa: E501
    import argparse

    p = argparse.ArgumentParser(prog="python -m kalloc_machine.tools.explore", description=__doc__.split("\n\n")[0])  # noqa: E501
    p.add_argument("firmware")
    p.add_argument("--board", default="default")
    p.add_argument("--sanitize", default="poison", choices=("poison", "kasan", "off"))
    p.add_argument("--fail", action="store_true", help="also explore --fail-nth points")
    p.add_argument("--no-irq", action="store_true", help="do not explore interrupt schedules")
    p.add_argument("--examples", type=int, default=300, help="runs to try before giving up")
    p.add_argument("--seed", type=int, default=0, help="the search's seed")
    a = p.parse_args(argv)
    base = RunOptions(board=a.board, sanitize=a.sanitize)
    found = explore(a.firmware, base=base, irq=not a.no_irq, fail=a.fail, max_examples=a.examples,
                    seed=a.seed)  # fmt: skip
    if found is None:
        print(f"no failing run in {a.examples} examples")
        return 0
    counts: dict[str, int] = {}
    for kind in found.kinds():
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items()) or "no errors"
    print(f"minimal failing run after {found.runs} runs: status {found.outcome.exit_status}, {kinds}")
    print(found.command())
    return 1


if __name__ == "__main__":
    sys.exit(main())
