"""`kalloc campaign`: fail every allocation once, raise the test line at every point, deduplicate the bugs.

    kalloc campaign FIRMWARE... [--fail-each] [--per-site] [--depth 2] [--irq-points K] [--irq-allocs]
                    [--seeds S --irq-every N --irq-jitter N --fail-prob P] [--workers N]
                    [--scheduler ADDRESS | --dask] [--json FILE] [--report FILE] [--max-runs N] [--budget S]

The campaign is kalloc_machine.tools.campaign (the baseline, the plan, the signatures),
its runs go through campaign_exec (here, a process pool, or Dask), its output through
campaign_report. This module reads the command line, shows the progress (on a terminal
only: kalloc.cli.progress), and prints and writes the result.

Invariants:
 1. Exit status: 0 no bug found; 1 bugs found (each signature printed with its
    reproducer); 2 usage, or Dask asked for and not installed (one line naming
    `pip install 'kalloc[cluster]'`); 3 bad ELF, board or --fail-site; 130 Ctrl-C, after
    printing what the runs done so far found, then `kalloc: interrupted` on stderr.
 2. The output (text on stdout and --json) is the same bytes for any --workers
    (campaign invariant 1); progress goes to stderr, on a terminal only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kalloc_machine.hostlimits import EXIT_INTERRUPTED
from kalloc_machine.report.json_report import dumps
from kalloc_machine.session import EXIT_USAGE, BadInput, RunOptions
from kalloc_machine.tools import campaign as cp
from kalloc_machine.tools.campaign_exec import INSTALL_HINT, MissingDask, execute
from kalloc_machine.tools.campaign_irqalloc import alloc_times
from kalloc_machine.tools.campaign_report import Target, html, markdown, render, summary
from kalloc_machine.tools.campaign_shrink import shrink

from kalloc.cli.options import (
    color_option,
    console,
    fail,
    json_option,
    output_file,
    run_options,
    stderr,
    write_json,
)
from kalloc.cli.progress import Steps, steps

EXIT_BUGS = 1  # bugs found (docs/abi.md, "Exit codes of kalloc campaign")
_RUN = ("board", "sanitize", "heap", "max_instructions", "timeout_s", "quantum", "suppress",
        "fail_site", "fail_context", "fail_cache", "irq_every", "irq_jitter", "fail_prob")  # fmt: skip


@click.command("campaign")
@click.argument("firmware", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--fail-each", is_flag=True, help="Rerun with allocation request N failing, for every N "
              "(the default dimension when no other is given).")  # fmt: skip
@click.option("--per-site", is_flag=True, help="fail-each: only the first request of each call site.")
@click.option("--depth", type=click.IntRange(1, 2), default=1, show_default=True,
              help="fail-each: 2 also fails N and N+1 together.")  # fmt: skip
@click.option("--irq-points", type=click.IntRange(min=0), default=0, metavar="K",
              help="Raise the test line once at each of K points over the run (as --irq-at).")  # fmt: skip
@click.option("--irq-allocs", is_flag=True, help="Pre-empt every allocation from task context once: the test "
              "line raised right after its hypercall (as --irq-at), so the firmware's handler runs there.")
@click.option("--seeds", type=click.IntRange(min=0), default=0, metavar="S",
              help="Run the --irq-every/--irq-jitter/--fail-prob schedule under seeds 0..S-1.")  # fmt: skip
@click.option("--no-shrink", is_flag=True, help="Keep a --seeds bug's seeded reproducer as found.")
@click.option("--no-snapshot", is_flag=True, help="Boot every run instead of restoring a snapshot of the "
              "machine booted to main (slower; the output is the same bytes).")  # fmt: skip
@click.option("--frames", type=click.IntRange(min=1), default=3, show_default=True,
              help="Top frames of an error's site in a bug's signature.")  # fmt: skip
@run_options(*_RUN)
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes (default: the CPU count).")  # fmt: skip
@click.option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDRESS",
              help="Run on this Dask scheduler (tcp://host:8786; env DASK_SCHEDULER_ADDRESS).")  # fmt: skip
@click.option("--dask", "local_dask", is_flag=True, help="Run on a Dask LocalCluster of --workers workers.")
@json_option("Write every signature, reproducer and report as JSON to FILE ('-' for stdout).")
@click.option("--report", "report_path", metavar="FILE", callback=output_file,
              help="Write a report to attach to CI: HTML for FILE.html, else Markdown.")  # fmt: skip
@click.option("--max-runs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run at most the first N runs of the plan.")  # fmt: skip
@click.option("--budget", type=click.FloatRange(min=0.01), default=None, metavar="SECONDS",
              help="Wall-clock budget: start no run after it (the result is then incomplete).")  # fmt: skip
@color_option()
def campaign_cmd(firmware: tuple[str, ...], fail_each: bool, per_site: bool, depth: int, irq_points: int,
                 irq_allocs: bool, seeds: int, no_shrink: bool, no_snapshot: bool, frames: int,
                 workers: int | None, scheduler: str | None, local_dask: bool, json_path: str | None,
                 report_path: str | None, max_runs: int | None, budget: float | None, color: bool | None,
                 **run_kw: Any) -> None:  # fmt: skip
    """Rerun each FIRMWARE with every allocation failing in turn (and interrupts at every
    point, and random schedules under many seeds); report each distinct bug once with
    the smallest `kalloc run` line that reproduces it.

    \b
    Exit status: 0 no bug found; 1 bugs found; 2 usage, or Dask not installed
    (pip install 'kalloc[cluster]'); 3 bad ELF, board or --fail-site; 130 interrupted.
    """
    fail_each = fail_each or per_site or depth > 1 or not (irq_points or seeds or irq_allocs)
    if seeds and not (run_kw["irq_every"] or run_kw["fail_prob"]):
        raise click.UsageError("--seeds needs a schedule to seed: --irq-every and/or --fail-prob")
    if not seeds and (run_kw["irq_every"] or run_kw["irq_jitter"] or run_kw["fail_prob"]):
        raise click.UsageError("--irq-every, --irq-jitter and --fail-prob are the --seeds schedule: "
                               "add --seeds S")  # fmt: skip
    if scheduler or local_dask:
        _need_dask()
    sweep = cp.Sweep(fail_each=fail_each, per_site=per_site, depth=depth, irq_points=irq_points, seeds=seeds,
                     frames=frames, irq_allocs=irq_allocs)  # fmt: skip
    deadline = None if budget is None else time.monotonic() + budget
    targets, jobs = _plan(firmware, sweep, run_kw, max_runs, restore=not no_snapshot)
    state = cp.Campaign(jobs)
    interrupted = False
    try:
        complete = _execute(state, workers or os.cpu_count() or 1, scheduler, local_dask, deadline)
    except KeyboardInterrupt:
        complete, interrupted = False, True
    except MissingDask:
        fail(INSTALL_HINT, EXIT_USAGE)
    found = state.found()
    if not interrupted:  # past the --budget, seeded reproducers are checked but not shrunk
        _check(found, run_kw["timeout_s"], shrink_seeds=not no_shrink and complete)
    doc = summary(sweep, targets, found, len(jobs), len(state.results), state.buggy_runs(), complete)
    render(console(color) if json_path != "-" else stderr(color), doc)
    if json_path:
        write_json(json_path, dumps(doc))
    if report_path:
        _write_report(report_path, doc)
    if interrupted:
        fail_line("kalloc: interrupted", EXIT_INTERRUPTED)
    sys.exit(EXIT_BUGS if found else 0)


def _check(found: list[cp.Found], timeout_s: float, shrink_seeds: bool) -> None:
    """Rerun each reproducer (its report kept); a seeds bug first shrunk to explicit times and requests."""
    with steps("campaign: checking reproducers", total=len(found)) as bar:
        for hit in found:
            bar.doing(hit.signature.describe())
            cp.verify(hit, timeout_s)
            seeded = shrink_seeds and hit.job.dimension == "seeds" and hit.report is not None
            if seeded and hit.report is not None and shrink(hit, hit.report, timeout_s=timeout_s):
                cp.verify(hit, timeout_s)
            bar.done()


def _write_report(path: str, doc: dict[str, Any]) -> None:
    """--report FILE: HTML for .html/.htm, else Markdown (one line, status 3, when it cannot be written)."""
    text = html(doc) if Path(path).suffix.lower() in (".html", ".htm") else markdown(doc)
    try:
        Path(path).write_text(text)
    except OSError as exc:  # checked at the start (output_file), but the disk can fill up
        fail(f"--report {path}: cannot write: {exc.strerror or exc}")


def fail_line(line: str, status: int) -> None:
    """One line on stderr, then exit with `status`."""
    stderr().print(line, markup=False, soft_wrap=True)
    sys.exit(status)


def _need_dask() -> None:
    """One line, status 2, when Dask is asked for and not installed (before any run)."""
    try:
        import dask.distributed  # noqa: F401  (the optional dependency: the `cluster` extra)
    except ImportError:
        fail(INSTALL_HINT, EXIT_USAGE)


def _plan(firmware: tuple[str, ...], sweep: cp.Sweep, run_kw: dict[str, Any], max_runs: int | None,
          restore: bool = True) -> tuple[list[Target], list[cp.Job]]:  # fmt: skip
    """The baseline of each firmware and the jobs of all of them (at most max_runs, in plan order)."""
    targets: list[Target] = []
    jobs: list[cp.Job] = []
    with steps("campaign: baselines", total=len(firmware)) as bar:
        for name in firmware:
            bar.doing(name)
            options = RunOptions(firmware=name, **run_kw)
            try:
                clean, requests = cp.baseline(options)
                times = alloc_times(options) if sweep.irq_allocs and clean.test_line is not None else []
                planned = cp.plan(options, sweep, clean, requests, cp.schedule_of(options), start=len(jobs),
                                  alloc_times=times, restore=restore)  # fmt: skip
            except BadInput as exc:
                fail(exc)
            if max_runs is not None:
                planned = planned[: max(0, max_runs - len(jobs))]
            jobs += planned
            points = len(times) if sweep.irq_allocs else None
            targets.append(Target(name, clean, requests, len(planned), points))
            bar.done()
    irq = sweep.irq_points or sweep.irq_allocs or (sweep.seeds and run_kw["irq_every"])
    for target in targets if irq else ():
        if not target.clean.handled:
            stderr().print(f"kalloc: warning: {target.firmware} never enabled a handler on interrupt line "
                           f"{target.clean.test_line}, the board's test line: its interrupt runs cannot find "
                           "anything (request_irq(kalloc_bootinfo.test_irq, ...) registers one)",
                           markup=False, soft_wrap=True)  # fmt: skip
    return targets, jobs


def _execute(state: cp.Campaign, workers: int, scheduler: str | None, local_dask: bool,
             deadline: float | None) -> bool:  # fmt: skip
    """Run the campaign's jobs with a progress bar (runs done, runs per second, bugs found)."""
    with steps("campaign: runs", total=len(state.jobs)) as bar:
        return execute(state.jobs, _reporter(state, bar), workers=workers, scheduler=scheduler,
                       dask=local_dask, deadline=deadline)  # fmt: skip


def _reporter(state: cp.Campaign, bar: Steps) -> Callable[[cp.JobResult], None]:
    started = time.monotonic()
    signatures: set[cp.Signature] = set()

    def done(result: cp.JobResult) -> None:
        state.add(result)
        signatures.update(result.bugs)
        rate = len(state.results) / max(time.monotonic() - started, 1e-6)
        bar.done()
        bar.doing(f"{rate:.1f} runs/s, {len(signatures)} bug(s)")

    return done
