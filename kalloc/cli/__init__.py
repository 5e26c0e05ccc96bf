"""The `kalloc` command line: the one place that composes the allocator and the machine.

Commands: `run` (boot a board, run firmware, report), `boards` (list shipped
boards), `sdk` (where the firmware SDK is installed). Options, report format and
exit codes are contracts (DESIGN.md, docs/abi.md, docs/user-guide.md).

Invariants:
 1. No Python traceback for bad input or misbehaving firmware: bad board/ELF →
    one line on stderr and status 3; usage errors → status 2 (click's own).
 2. `--json -` writes only the JSON to stdout (the text report goes to stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from kalloc_machine.report.model import dumps
from kalloc_machine.report.text import render_text
from kalloc_machine.session import EXIT_BAD_INPUT, BadInput, RunOptions, Session
from rich.console import Console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="kalloc")
def main() -> None:
    """kalloc: a kernel-style allocator for firmware on an emulated RISC-V machine."""


@main.command()
@click.argument("firmware", required=False, type=click.Path(dir_okay=False))
@click.option("--board", default="default", show_default=True, help="Shipped board name or path to a .toml.")
@click.option("--json", "json_path", metavar="FILE", help="Write the JSON report to FILE ('-' for stdout).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for every random choice.")
@click.option(
    "--sanitize",
    type=click.Choice(["poison", "kasan", "off"]),
    default="poison",
    show_default=True,
    help="Memory-error detection mode.",
)
@click.option(
    "--max-instructions",
    default=500_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Instruction budget; exhausting it ends the run (status 66).",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Wall-clock limit in seconds (status 66).",
)
@click.option(
    "--quantum",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Instructions per emulation slice (devices and interrupts are serviced between slices).",
)
@click.option(
    "--irq-every",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Raise the board's test interrupt line every N instructions (0: never).",
)
@click.option(
    "--irq-jitter",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Add 0..N instructions (drawn from --seed) to each --irq-every time.",
)
@click.option(
    "--irq-at",
    default="",
    metavar="N,N,...",
    callback=lambda _ctx, _param, value: _parse_irq_at(value),
    help="Also raise the test line at these instruction counts.",
)
@click.option(
    "--quarantine",
    type=click.IntRange(min=0),
    metavar="BYTES",
    help="KASAN quarantine size (default: min(256 KiB, RAM/32)); freed objects wait there before reuse.",
)
@click.option(
    "--fail-nth",
    default="",
    metavar="N,N,...",
    callback=lambda _ctx, _param, value: _parse_counts(value, "--fail-nth"),
    help="Fail these allocation requests (1-based, counting the requests that match the --fail-* filters).",
)
@click.option(
    "--fail-prob",
    default=0.0,
    type=click.FloatRange(0.0, 1.0),
    metavar="P",
    help="Fail each matching allocation request with probability P (drawn from --seed).",
)
@click.option("--fail-site", metavar="SYMBOL", help="Inject only into allocations made by this function.")
@click.option(
    "--fail-context",
    type=click.Choice(["task", "irq", "any"]),
    default="any",
    show_default=True,
    help="Inject only into allocations from this context.",
)
@click.option("--fail-cache", metavar="NAME", help="Inject only into this slab cache or DMA pool.")
@click.option(
    "--heap",
    type=click.Choice(["kmalloc", "slab", "firstfit", "arena"]),
    default="kmalloc",
    show_default=True,
    help="Policy behind malloc/free (kalloc replay compares them; docs/allocator.md).",
)
@click.option("--record", "record_path", metavar="PATH", help="Record the allocation trace (kalloc replay).")
@click.option("-q", "--quiet", is_flag=True, help="No text report; the UART output and errors only.")
def run(
    firmware: str | None,
    board: str,
    json_path: str | None,
    seed: int,
    sanitize: str,
    max_instructions: int,
    timeout_s: float,
    quantum: int,
    irq_every: int,
    irq_jitter: int,
    irq_at: tuple[int, ...],
    quarantine: int | None,
    fail_nth: tuple[int, ...],
    fail_prob: float,
    fail_site: str | None,
    fail_context: str,
    fail_cache: str | None,
    heap: str,
    record_path: str | None,
    quiet: bool,
) -> None:
    """Boot BOARD, run FIRMWARE (default: the shipped demo) and report.

    Exit status: 0 clean; 1-63 the firmware's exit code; 64 kalloc found an
    error; 65 CPU fault; 66 budget or timeout; 2 usage; 3 bad ELF or board.
    """
    options = RunOptions(
        firmware=firmware,
        board=board,
        seed=seed,
        sanitize=sanitize,
        max_instructions=max_instructions,
        timeout_s=timeout_s,
        quantum=quantum,
        irq_every=irq_every,
        irq_jitter=irq_jitter,
        irq_at=irq_at,
        quarantine=quarantine,
        fail_nth=fail_nth,
        fail_prob=fail_prob,
        fail_site=fail_site,
        fail_context=fail_context,
        fail_cache=fail_cache,
        heap=heap,
    )
    err = Console(stderr=True, highlight=False)
    try:
        session = Session(options)
    except BadInput as exc:
        err.print(f"kalloc: error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    recorder = None
    if record_path:
        from kalloc_machine.bridge.record import attach

        recorder = attach(session)
    outcome = session.run()
    if recorder is not None:
        recorder.write(record_path, (f"firmware {session.firmware_name}, board {board}, heap {heap}",))
    to_stdout = json_path == "-"
    out = err if to_stdout else Console(highlight=False)
    render_text(outcome.report, out, wall_s=outcome.wall_s, quiet=quiet)
    if json_path:
        text = dumps(outcome.report)
        if to_stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            Path(json_path).write_text(text)
    sys.exit(outcome.exit_status)


@main.command()
@click.option("--board", default="default", show_default=True, help="Board the workloads run on.")
@click.option("--reps", default=5, show_default=True, type=click.IntRange(min=1), help="Interleaved runs.")
@click.option("--quick", is_flag=True, help="Few runs and iterations: checks that every figure is produced.")
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(["allocation", "emulation", "sanitizers", "scale", "machine", "utilization"]),
    help="Run only these parts.",
)
@click.option("--json", "json_path", metavar="FILE", help="Write the figures as JSON ('-' for stdout).")
def bench(board: str, reps: int, quick: bool, only: tuple[str, ...], json_path: str | None) -> None:
    """Measure the performance figures, each as a side-by-side ratio (docs/performance.md)."""
    from kalloc_machine.tools.bench import SUITE, BenchSettings, run_suite, to_json
    from rich.progress import Progress
    from rich.table import Table

    settings = BenchSettings(board=board, reps=2 if quick else reps)
    if quick:
        settings.iters, settings.compute_iters = (50, 550), 2000
    err = Console(stderr=True, highlight=False)
    parts = [p for p in SUITE if not only or p in only]
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        figures = run_suite(settings, list(parts), tick=lambda: progress.advance(task))
    table = Table(title=f"kalloc bench (board {board}, {settings.reps} interleaved repetitions, medians)")
    for col in ("figure", "value", "target", "", "note"):
        table.add_column(col)
    for f in figures:
        value = "n/a" if f.value is None else f"{f.value:.3g} {f.unit}"
        mark = "" if f.ok is None else ("ok" if f.ok else "MISSED")
        table.add_row(f.name, value, f.target, mark, f.note)
    out = err if json_path == "-" else Console(highlight=False)
    out.print(table)
    if json_path:
        text = to_json(settings)
        if json_path == "-":
            sys.stdout.write(text)
        else:
            Path(json_path).write_text(text)


def _parse_irq_at(value: str) -> tuple[int, ...]:
    """--irq-at "1000,25000" -> (1000, 25000); a usage error (status 2) otherwise."""
    try:
        times = tuple(int(v, 0) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of instruction counts") from None
    if any(t < 0 for t in times):
        raise click.BadParameter("instruction counts must be non-negative")
    return times


def _parse_counts(value: str, option: str) -> tuple[int, ...]:
    """'3,7' -> (3, 7): positive request numbers (usage error otherwise)."""
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        msg = f"{value!r} is not a comma-separated list of numbers"
        raise click.BadParameter(msg, param_hint=option) from None
    if any(n < 1 for n in counts):
        raise click.BadParameter("requests are counted from 1", param_hint=option)
    return counts


from kalloc.cli.replay import replay_cmd  # noqa: E402 - `kalloc replay` lives in its own module

main.add_command(replay_cmd)


@main.command()
@click.argument("firmware", type=click.Path(dir_okay=False))
@click.option("--board", default="default", show_default=True, help="Shipped board name or path to a .toml.")
@click.option(
    "--sanitize", type=click.Choice(["poison", "kasan", "off"]), default="poison", show_default=True
)
@click.option("--fail", is_flag=True, help="Also explore fault-injection points (--fail-nth).")
@click.option("--no-irq", is_flag=True, help="Do not explore interrupt schedules (--irq-at).")
@click.option("--examples", default=300, show_default=True, type=click.IntRange(min=1), help="Runs to try.")
@click.option("--seed", default=0, show_default=True, type=int, help="The search's seed.")
def explore(
    firmware: str, board: str, sanitize: str, fail: bool, no_irq: bool, examples: int, seed: int
) -> None:
    """Search interrupt schedules (and failure points) for a run of FIRMWARE that fails; shrink it.

    Prints a one-line `kalloc run ...` that reproduces the minimal failing run.
    Exit status: 0 no failing run found; 1 found and printed; 3 bad ELF or board.
    """
    from kalloc_machine.session import BadInput
    from kalloc_machine.tools.explore import main as explore_main

    argv = [
        firmware,
        "--board",
        board,
        "--sanitize",
        sanitize,
        "--examples",
        str(examples),
        "--seed",
        str(seed),
    ]
    argv += ["--fail"] if fail else []
    argv += ["--no-irq"] if no_irq else []
    try:
        status = explore_main(argv)
    except BadInput as exc:
        Console(stderr=True, highlight=False).print(f"kalloc: error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(status)


@main.command()
def boards() -> None:
    """List the shipped boards."""
    from kalloc_machine.board import list_boards

    console = Console(highlight=False)
    for name, description in list_boards():
        console.print(f"{name:<10} {description}", markup=False)


@main.command()
def sdk() -> None:
    """Print the firmware SDK directory (for `make -C "$(kalloc sdk)" APP=... OUT=...`)."""
    from kalloc_machine.sdk import sdk_dir

    click.echo(str(sdk_dir()))


if __name__ == "__main__":
    main()
