"""`kalloc explore`: search interrupt schedules (and failure points) for a failing run, shrink it.

    kalloc explore FIRMWARE [--board B] [--sanitize MODE] [--fail] [--no-irq] [--examples N] [--seed S]

The search is kalloc_machine.tools.explore's `explore()`; this command prints what
it found: a summary line (runs, exit status, error kinds counted) and the one-line
`kalloc run ...` that reproduces the minimal failing run.

Invariants:
 1. Exit status: 0 no failing run found; 1 found and printed; 3 bad ELF or board; 2 usage.
"""

from __future__ import annotations

import sys

import click
from kalloc_machine.session import BadInput, RunOptions

from kalloc.cli.options import fail as fail_input
from kalloc.cli.options import run_option


@click.command("explore")
@click.argument("firmware", type=click.Path(dir_okay=False))
@run_option("board")
@run_option("sanitize", help=None)
@click.option("--fail", is_flag=True, help="Also explore fault-injection points (--fail-nth).")
@click.option("--no-irq", is_flag=True, help="Do not explore interrupt schedules (--irq-at).")
@click.option("--examples", default=300, show_default=True, type=click.IntRange(min=1), help="Runs to try.")
@click.option("--seed", default=0, show_default=True, type=int, help="The search's seed.")
def explore_cmd(
    firmware: str, board: str, sanitize: str, fail: bool, no_irq: bool, examples: int, seed: int
) -> None:
    """Search interrupt schedules (and failure points) for a run of FIRMWARE that fails; shrink it.

    Prints a one-line `kalloc run ...` that reproduces the minimal failing run.
    Exit status: 0 no failing run found; 1 found and printed; 3 bad ELF or board.
    """
    from kalloc_machine.tools.explore import explore

    base = RunOptions(board=board, sanitize=sanitize)
    try:
        found = explore(firmware, base=base, irq=not no_irq, fail=fail, max_examples=examples, seed=seed)
    except BadInput as exc:
        fail_input(exc)
    if found is None:
        click.echo(f"no failing run in {examples} examples")
        sys.exit(0)
    counts: dict[str, int] = {}
    for kind in found.kinds():
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items()) or "no errors"
    click.echo(f"minimal failing run after {found.runs} runs: status {found.outcome.exit_status}, {kinds}")
    click.echo(found.command())
    sys.exit(1)
