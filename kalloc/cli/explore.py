"""`kalloc explore`: search interrupt schedules (and failure points) for a failing run, shrink it.

    kalloc explore FIRMWARE [--board B] [--sanitize MODE] [--fail] [--no-irq] [--examples N] [--seed S]

The search is kalloc_machine.tools.explore's `explore()`; this command first runs the
firmware once unperturbed (`baseline()`), warns when the firmware never enables a
handler on the board's test line (interrupt schedules then change nothing), searches
with a progress line on a terminal, and prints what it found: a summary line (runs,
exit status, error kinds counted) and the one-line `kalloc run ...` that reproduces the
minimal failing run.

Invariants:
 1. Exit status: 0 no failing run found; 1 found and printed; 4 the firmware already
    fails unperturbed (nothing to search; EXIT_ALREADY_FAILS); 3 bad ELF or board;
    2 usage, or Hypothesis not installed (one line naming `pip install 'kalloc[explore]'`).
 2. The printed reproducer reproduces: it is `run_args` of the failing run's options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import click
from kalloc_machine.session import EXIT_USAGE, BadInput, RunOptions
from kalloc_machine.tools.explore import AlreadyFails, Baseline, baseline, explore

from kalloc.cli.options import color_option, console, run_option, stderr
from kalloc.cli.options import fail as fail_input
from kalloc.cli.progress import Steps, steps

EXIT_ALREADY_FAILS = 4  # the unperturbed run already fails (docs/abi.md, "Exit codes of kalloc explore")
INSTALL_HINT = "explore needs Hypothesis, which is not installed: pip install 'kalloc[explore]'"


@click.command("explore")
@click.argument("firmware", type=click.Path(dir_okay=False))
@run_option("board")
@run_option("sanitize", help=None)
@click.option("--fail", is_flag=True, help="Also explore fault-injection points (--fail-nth).")
@click.option("--no-irq", is_flag=True, help="Do not explore interrupt schedules (--irq-at).")
@click.option("--examples", default=300, show_default=True, type=click.IntRange(min=1), help="Runs to try.")
@click.option("--seed", default=0, show_default=True, type=int, help="The search's seed.")
@color_option()
def explore_cmd(
    firmware: str, board: str, sanitize: str, fail: bool, no_irq: bool, examples: int, seed: int,
    color: bool | None = None,
) -> None:
    """Search interrupt schedules (and failure points) for a run of FIRMWARE that fails; shrink it.

    First runs FIRMWARE once unperturbed. Prints a one-line `kalloc run ...` that
    reproduces the minimal failing run.

    \b
    Exit status: 0 no failing run found; 1 found and printed; 4 the firmware
    already fails without any perturbation (fix that first); 3 bad ELF or board;
    2 usage, or Hypothesis not installed (pip install 'kalloc[explore]').
    """
    try:
        import hypothesis  # noqa: F401  (the optional dependency: the `explore` extra)
    except ImportError:
        fail_input(INSTALL_HINT, EXIT_USAGE)

    base = RunOptions(board=board, sanitize=sanitize)
    try:
        clean = baseline(firmware, base)
        if clean.outcome.exit_status != 0:  # nothing to search for (and no warning about it)
            _already_fails(clean)
        if not no_irq:
            _warn_unhandled(clean)
        with steps("exploring: runs", total=None) as bar:
            found = explore(firmware, base=base, irq=not no_irq, fail=fail, max_examples=examples, seed=seed,
                            clean=clean, progress=_reporter(bar, examples))  # fmt: skip
    except BadInput as exc:
        fail_input(exc)
    except AlreadyFails as exc:
        _already_fails(exc.baseline)
    if found is None:
        click.echo(f"no failing run in {examples} examples")
        sys.exit(0)
    counts: dict[str, int] = {}
    for kind in found.kinds():
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items()) or "no errors"
    out = console(color)  # one line each, even piped (kalloc_machine.report.console)
    out.print(f"minimal failing run after {found.runs} runs: status {found.outcome.exit_status}, {kinds}",
              style="bold red", markup=False)  # fmt: skip
    out.print(found.command(), markup=False)
    sys.exit(1)


def _reporter(bar: Steps, examples: int) -> Callable[[int, bool], None]:
    """explore()'s progress callback: one step per run, and what the search is doing."""

    def ran(_runs: int, shrinking: bool) -> None:
        bar.done()
        bar.doing("shrinking the failing run" if shrinking else f"searching ({examples} examples at most)")

    return ran


def _warn_unhandled(clean: Baseline) -> None:
    """One warning line when the firmware never enabled its board's test line (nothing to perturb)."""
    if clean.test_line is None or clean.handled:
        return
    stderr().print(f"kalloc: warning: the firmware never enabled a handler on interrupt line "
                   f"{clean.test_line}, the board's test line that --irq-at raises: injected interrupts are "
                   "never taken, so interrupt schedules cannot change the run "
                   "(request_irq(kalloc_bootinfo.test_irq, ...) registers one; --fail --no-irq explores "
                   "failure points only)",
                   markup=False, soft_wrap=True)  # fmt: skip


def _already_fails(clean: Baseline) -> NoReturn:
    """The unperturbed run fails: say what and how to see it, exit EXIT_ALREADY_FAILS."""
    stderr().print(f"kalloc explore: the firmware already fails without any perturbation: {clean.failure()}; "
                   f"fix that first, or run `{clean.command()}` to see its report",
                   markup=False, soft_wrap=True)  # fmt: skip
    sys.exit(EXIT_ALREADY_FAILS)
