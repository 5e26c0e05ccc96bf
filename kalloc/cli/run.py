"""`kalloc run`: boot a board, run a firmware on it, report what the allocator and the machine saw.

    kalloc run [FIRMWARE] [--board B] [--sanitize MODE] [--irq-*] [--fail-*] [--json FILE] ...

The run options come from kalloc_machine.tools.options (kalloc.cli.options makes
them click options); the run itself is a kalloc_machine.session.Session, the text
report kalloc_machine.report.render's, the JSON report kalloc_machine.report.json_report's.

Invariants:
 1. The exit status is the Session's (0 clean; 1-63 the firmware's; 64 error; 65 CPU
    fault; 66 budget or timeout; 130 interrupted), 3 for a bad ELF or board, 2 for usage.
 3. Ctrl-C during the run ends it with the report so far (`end: interrupted`, status 130;
    kalloc_machine.hostlimits); a Ctrl-C anywhere else is one line on stderr, status 130.
 2. `--json -` writes only the JSON to stdout (the text report goes to stderr).
 4. The text report is one line per fact when its stream is not a terminal (never
    wrapped at a width), coloured per --color/--no-color, NO_COLOR, FORCE_COLOR
    (kalloc_machine.report.console), and ends with the `summary:` line (report/summary.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from kalloc_machine.hostlimits import EXIT_INTERRUPTED
from kalloc_machine.report.json_report import dumps
from kalloc_machine.report.probes import ProbeWatch
from kalloc_machine.report.render import render_text
from kalloc_machine.report.runplot import RunPlot
from kalloc_machine.report.tags import BudgetError, load_budgets
from kalloc_machine.session import BadInput, RunOptions, Session

from kalloc.antifrag import MODES
from kalloc.antifrag import install as install_grouping
from kalloc.cli.options import (
    color_option,
    console,
    fail,
    json_option,
    output_file,
    quiet_option,
    run_options,
    stderr,
    write_json,
)
from kalloc.cli.progress import run_progress
from kalloc.config import Config
from kalloc.replay.probe import Probe, ProbeError, parse_probes

# The run options in `kalloc run --help` order (--json comes after --board).
_FIRST = ("board",)
_REST = ("seed", "sanitize", "max_instructions", "timeout_s", "quantum", "irq_every", "irq_jitter",
         "irq_at", "quarantine", "fail_nth", "fail_prob", "fail_site", "fail_context", "fail_cache",
         "heap", "max_errors", "suppress", "percpu_cache", "fastpath")  # fmt: skip


@click.command("run")
@click.argument("firmware", required=False, type=click.Path(dir_okay=False))
@run_options(*_FIRST)
@json_option("Write the JSON report to FILE ('-' for stdout).")
@run_options(*_REST)
@click.option("--record", "record_path", metavar="PATH", callback=output_file,
              help="Record the allocation trace (kalloc replay).")  # fmt: skip
@click.option("--probe", "probe_text", default=None, metavar="SIZE[@ZONE],...",
              help="Would these contiguous requests succeed at the end and at the worst moment "
                   "(e.g. 4MiB,64KiB@dma)?")  # fmt: skip
@click.option("--budgets", "budgets_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Memory budgets per tag (TOML: audio = \"2MiB\", net = 0.125 of RAM).")  # fmt: skip
@click.option("--budgets-strict", is_flag=True, help="An allocation over its tag's budget is an error.")
@click.option("--antifrag", type=click.Choice(MODES), default="off", show_default=True,
              help="Group pages in pageblocks by mobility or by tag, as Linux's migratetypes.")
@click.option("--plot", "plot_path", metavar="FILE", callback=output_file,
              help="Write a PNG: live bytes by tag over the run, the page grid near the peak and at the end.")
@quiet_option("No text report; the UART output, errors and the summary line only.")
@color_option()
def run_cmd(firmware: str | None, json_path: str | None, record_path: str | None, quiet: bool,
            color: bool | None, probe_text: str | None = None, budgets_path: str | None = None,
            budgets_strict: bool = False, antifrag: str = "off", plot_path: str | None = None,
            **run_kw: Any) -> None:  # fmt: skip
    """Boot BOARD, run FIRMWARE (a path, or a shipped name such as tests/double_free;
    default: the shipped demo) and report.

    Exit status: 0 clean; 1-63 the firmware's exit code; 64 kalloc found an
    error; 65 CPU fault; 66 budget or timeout; 130 interrupted; 2 usage; 3 bad
    ELF or board.
    """
    try:
        probes = _probes(probe_text)
        if plot_path:
            _need_matplotlib()
        _run(firmware, json_path, record_path, quiet, color, run_kw, probes, (budgets_path, budgets_strict),
             antifrag, plot_path)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the run (invariant 3)
        fail("interrupted", EXIT_INTERRUPTED)


def _need_matplotlib() -> None:
    """--plot without matplotlib: one line, status 3, before the run."""
    from kalloc.replay.plot import PlotUnavailable, require

    try:
        require()
    except PlotUnavailable as exc:
        fail(exc)


def _probes(probe_text: str | None) -> list[Probe]:
    """--probe's list (a usage error when it does not parse)."""
    if probe_text is None:
        return []
    try:
        return parse_probes(probe_text, Config().max_order)
    except ProbeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--probe'") from None


def _run(firmware: str | None, json_path: str | None, record_path: str | None, quiet: bool,
         color: bool | None, run_kw: dict[str, Any], probes: list[Probe] | None = None,
         budgets: tuple[str | None, bool] = (None, False), antifrag: str = "off",
         plot_path: str | None = None) -> None:  # fmt: skip
    options = RunOptions(firmware=firmware, **run_kw)
    try:
        session = Session(options)
    except BadInput as exc:
        fail(exc)
    session.report_interrupts = True  # Ctrl-C: the report so far, status 130
    if budgets[0] is not None:  # issue 18: --budgets, --budgets-strict
        try:
            table = load_budgets(budgets[0], session.ka.buddy.ram_bytes)
        except BudgetError as exc:
            fail(exc)
        session.tags.set_budgets(table, budgets[1], Path(budgets[0]).name)
    grouping = install_grouping(session.ka, antifrag, tag=session.tags.current)  # --antifrag
    plot = RunPlot(session.ka, session.heap, session.vm, session.tags) if plot_path else None
    recorder = None
    if record_path:
        recorder = session.record()
    watch = ProbeWatch(session.ka, probes, lambda: session.machine.instructions) if probes else None
    with run_progress(session):  # on a terminal only, after 2 s (kalloc.cli.progress)
        outcome = session.run()
    if watch is not None:
        outcome.report["probes"] = watch.result()  # additive key (docs/abi.md)
    if grouping is not None:
        outcome.report["antifrag"] = grouping.stats()  # additive key, only with --antifrag
    if recorder is not None and record_path:
        try:
            recorder.write(record_path, (f"firmware {session.firmware_name}, board {session.board.label}, "
                                         f"heap {options.heap}",))  # fmt: skip
        except OSError as exc:  # checked before the run; a full disk is still possible
            fail(f"--record {record_path}: cannot write: {exc.strerror or exc}")
    out = stderr(color) if json_path == "-" else console(color)  # invariant 4
    render_text(outcome.report, out, wall_s=outcome.wall_s, quiet=quiet)
    if plot is not None and plot_path:
        try:
            plot.draw(plot_path, f"{session.firmware_name} on {session.board.label}")
        except OSError as exc:
            fail(f"--plot {plot_path}: cannot write: {exc.strerror or exc}")
        out.print(f"wrote {plot_path}", markup=False)
    if json_path:
        write_json(json_path, dumps(outcome.report))
    sys.exit(outcome.exit_status)
