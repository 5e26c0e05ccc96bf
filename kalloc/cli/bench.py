"""`kalloc bench`: the performance figures, each a side-by-side ratio, as a table (and JSON).

    kalloc bench [--board B] [--reps N] [--quick] [--only PART ...] [--json FILE]

The measurements are kalloc_machine.tools.bench's (SUITE: allocation, emulation,
sanitizers, scale, machine, utilization); this command runs them with a progress
bar and prints the figures beside their targets (docs/performance.md).

Invariants:
 1. The bench never fails a run for a missed target: it marks it MISSED; exit status 0.
    A board that cannot be loaded is one line, status 3, before anything is measured.
 2. `--json -` writes only the JSON to stdout (the table goes to stderr).
 3. A timed figure's value is on this process's CPU clock (time.thread_time), its wall-clock
    value in the column (and JSON key) beside it: kalloc_machine.tools.benchkit `Span`.
"""

from __future__ import annotations

import click
from kalloc_machine.tools.bench import SUITE, BenchSettings, run_suite, to_json
from rich.table import Table

from kalloc.cli.options import color_option, console, fail, json_option, run_option, stderr, write_json
from kalloc.cli.progress import steps


@click.command("bench")
@run_option("board", help="Board the workloads run on.")
@click.option("--reps", default=5, show_default=True, type=click.IntRange(min=1), help="Interleaved runs.")
@click.option("--quick", is_flag=True, help="Few runs and iterations: checks that every figure is produced.")
@click.option("--only", multiple=True, type=click.Choice(list(SUITE)), help="Run only these parts.")
@json_option("Write the figures as JSON ('-' for stdout).")
@color_option()
def bench_cmd(board: str, reps: int, quick: bool, only: tuple[str, ...], json_path: str | None,
              color: bool | None) -> None:  # fmt: skip
    """Measure the performance figures, each as a side-by-side ratio (docs/performance.md).

    Exit status: 0 measured (a missed target included); 3 bad board; 2 usage.
    """
    from kalloc_machine.board import BoardError, load_board

    try:
        load_board(board)  # before minutes of measurement, and one line when it is bad
    except BoardError as exc:
        fail(exc)
    settings = BenchSettings(board=board, reps=2 if quick else reps)
    if quick:
        settings.iters, settings.compute_iters = (50, 550), 2000
        settings.floor_iters = (50, 550)
    err = stderr(color)
    parts = [p for p in SUITE if not only or p in only]
    with steps("benchmarking: steps", color=color) as bar:  # on a terminal only (kalloc.cli.progress)
        figures = run_suite(settings, list(parts), tick=bar.done)
    table = Table(title=f"kalloc bench (board {board}, {settings.reps} interleaved repetitions, medians)")
    for col in ("figure", "value (CPU time)", "target", "", "wall clock", "note"):
        table.add_column(col)
    for f in figures:
        value = "n/a" if f.value is None else f"{f.value:.3g} {f.unit}"
        mark = "" if f.ok is None else ("ok" if f.ok else "MISSED")
        wall = "" if f.wall is None else f"{f.wall:.3g}"
        table.add_row(f.name, value, f.target, mark, wall, f.note)
    out = err if json_path == "-" else console(color)  # piped: the table whole, one line a row
    out.print(table)
    if json_path:
        write_json(json_path, to_json(settings))
