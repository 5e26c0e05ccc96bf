"""`kalloc replay`: replay allocation traces through a heap policy, without firmware, and measure them.

    kalloc replay [TRACE ...] [--heap NAME|all] [--board B] [--json FILE] [--plot DIR]

With no TRACE, the traces shipped in kalloc/replay/traces/ (the wee_alloc real-program
traces and the generated malloc-lab-style ones). Each (trace, heap) pair runs
twice — a fast pass finds the step where committed memory peaks, the checked
pass (kalloc.replay.replayer) snapshots fragmentation there — on a fresh allocator over
the board's RAM banks (nothing reserved but the memmap): kalloc.replay.measure. With
--firmware, every request is made by firmware instead (kalloc_machine.tools.fwreplay).

Invariants:
 1. Exit status: 0 every replay ran (failed requests are counted, not errors); 64 a
    replay found the heap or allocator breaking a rule; 3 a trace or board that
    cannot be read; 2 usage.
 2. `--json -` writes only the JSON to stdout (the table goes to stderr).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kalloc_machine.board import load_board
from kalloc_machine.session import EXIT_ERROR, EXIT_USAGE
from kalloc_machine.tools.fwreplay import board_banks, firmware_parts
from rich.table import Table

from kalloc.antifrag import MODES
from kalloc.antifrag import install as install_grouping
from kalloc.cli.options import (
    color_option,
    console,
    fail,
    json_option,
    output_dir,
    quiet_option,
    run_option,
    stderr,
    write_json,
)
from kalloc.cli.progress import steps
from kalloc.config import Config
from kalloc.heaps import HEAPS
from kalloc.replay import DEFAULT_HEAP, shipped_traces
from kalloc.replay.budgets import load_budgets, tag_series, tag_table
from kalloc.replay.forecast import Forecast, forecast_lines, tag_lines
from kalloc.replay.measure import Bank, Parts, build, measure
from kalloc.replay.probe import Probe, ProbeError, parse_probes
from kalloc.replay.replayer import ReplayError
from kalloc.replay.session import Phase, load_session, loop
from kalloc.replay.trace import Trace, TraceError, load


def parse_steps(value: str) -> tuple[int, ...]:
    """--map-at "0,500" -> (0, 500): step numbers (usage error otherwise)."""
    try:
        return tuple(int(v, 0) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of step numbers") from None


@click.command("replay")
@click.argument("traces", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--heap",
    default=DEFAULT_HEAP,
    show_default=True,
    type=click.Choice([*HEAPS, "all"]),
    help="Heap policy behind the C library face ('all': each).",
)
@run_option("board", help="Board whose RAM banks the replay uses.")
@click.option(
    "--sanitize",
    type=click.Choice(["off", "poison", "kasan"]),
    default="off",
    show_default=True,
    help="Allocator debug mode (red zones cost space: utilization is measured with 'off').",
)
@json_option("Write summaries and per-step figures ('-': stdout).")
@click.option(
    "--plot", "plot_dir", metavar="DIR", callback=output_dir,
    help="Write PNGs: memory maps and fragmentation over time.",
)
@click.option(
    "--map-at",
    default="",
    metavar="N,N,...",
    callback=lambda _c, _p, v: parse_steps(v),
    help="Also draw the memory map after these steps (the peak is always drawn).",
)
@click.option(
    "--check-every",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Run the full invariant checks every N steps (always at the end).",
)
@click.option(
    "--firmware",
    is_flag=True,
    help="Perform every operation from firmware (hypercalls through the bridge) instead of from Python.",
)
@click.option("--loop", "loop_n", type=click.IntRange(min=1), default=None, metavar="N",
              help="Replay each trace N times in a row as one long session (a forecast).")  # fmt: skip
@click.option("--session", "session_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Replay the session FILE describes (TOML phases of traces, in rounds).")  # fmt: skip
@click.option("--probe", "probe_text", default=None, metavar="SIZE[@ZONE],...",
              help="Forecast: the first step at which each contiguous request would fail although "
                   "memory is free (e.g. 4MiB,64KiB@dma).")  # fmt: skip
@click.option("--budgets", "budgets_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Budgets per tag (TOML, as kalloc run's): high water and crossings.")  # fmt: skip
@click.option("--antifrag", type=click.Choice(MODES), default="off", show_default=True,
              help="Group pages in pageblocks by mobility or by tag, as Linux's migratetypes.")
@quiet_option("No table.")
@color_option()
def replay_cmd(  # long: one parameter per option; the body is the replay loop
    traces: tuple[str, ...],
    heap: str,
    board: str,
    sanitize: str,
    json_path: str | None,
    plot_dir: str | None,
    map_at: tuple[int, ...],
    check_every: int,
    firmware: bool,
    loop_n: int | None,
    session_file: str | None,
    probe_text: str | None,
    budgets_path: str | None,
    antifrag: str,
    quiet: bool,
    color: bool | None,
) -> None:
    """Replay allocation TRACEs (malloc-lab, wee_alloc or kalloc format) through a heap; measure utilization.

    With no TRACE, the shipped traces. Exit status: 0 done; 64 the heap broke a
    rule; 3 unreadable trace or board; 2 usage.
    """
    err = stderr(color)
    pdir = _plot_dir(plot_dir)
    try:
        label = load_board(board).label  # the JSON names a board file by name@sha256:digest, no host path
        banks = board_banks(board)
        loaded, sessions, probes = _load(traces, loop_n, session_file, probe_text)
        budgets = load_budgets(budgets_path, sum(b[2] for b in banks)) if budgets_path else None
    except (TraceError, ValueError, OSError) as exc:
        fail(exc)
    heaps = list(HEAPS) if heap == "all" else [heap]
    results, status, pngs = [], 0, []
    with steps("replaying", total=len(loaded) * len(heaps), color=color) as bar:  # on a terminal only
        for ti, tr in enumerate(loaded):
            for h in heaps:
                bar.doing(f"{tr.name} on {h}")
                try:
                    observe = None if sessions is None else _observer(tr, sessions[ti][1], probes, loop_n,
                                                                      session_file, bool(pdir))  # fmt: skip
                    out, written = measure(tr, h, _fresh(banks, h, sanitize, board if firmware else None,
                                                  antifrag),
                                           check_every=check_every, map_at=map_at, plot_dir=pdir,
                                           observe=observe)  # fmt: skip
                except ReplayError as exc:
                    err.print(f"kalloc: {tr.name} on heap {h}: {exc}", markup=False)
                    status = EXIT_ERROR
                    continue
                finally:
                    bar.done()
                if budgets is not None or any(op.tag for op in tr.ops):  # issue 18: tags in the trace
                    out["tags"] = tag_table(tr, budgets or {})
                    if pdir is not None:
                        written.append(_tags_plot(tr, h, pdir))
                results.append(out)
                pngs += written
    con = err if json_path == "-" else console(color, terminal_width=140)  # piped: the whole table
    if not quiet:
        con.print(_table(results, board))
        for line in forecast_lines(results) + tag_lines(results):
            con.print(line, markup=False)
        for p in pngs:
            con.print(f"wrote {p}", markup=False)
    if json_path:
        doc = {"board": label, "options": {"heap": heap, "sanitize": sanitize, "check_every": check_every,
                                           "firmware": firmware, **_forecast_options(loop_n, session_file,
                                                                                     probe_text),
                                           **({"budgets": Path(budgets_path).name} if budgets_path else {}),
                                           **({"antifrag": antifrag} if antifrag != "off" else {})},
               "replays": results}  # fmt: skip
        write_json(json_path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    sys.exit(status)


def _load(traces: tuple[str, ...], loop_n: int | None, session_file: str | None, probe_text: str | None
          ) -> tuple[list[Trace], list[tuple[Trace, list[Phase]]] | None, list[Probe]]:  # fmt: skip
    """The traces to replay; the sessions with their phases when a forecast is asked; the probes."""
    try:
        probes = parse_probes(probe_text, Config().max_order) if probe_text is not None else []
    except ProbeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--probe'") from None
    if session_file is not None and (traces or loop_n):
        raise click.UsageError("--session takes no TRACE and no --loop (its file says what to replay)")
    if not (loop_n or session_file or probes):
        return [load(t) for t in (traces or [str(p) for p in shipped_traces()])], None, probes
    sessions = _sessions(traces, loop_n, session_file)
    return [tr for tr, _ph in sessions], sessions, probes


def _sessions(traces: tuple[str, ...], loop_n: int | None,
              session_file: str | None) -> list[tuple[Trace, list[Phase]]]:  # fmt: skip
    """The long sessions a forecast replays: the --session file, or each trace looped --loop times."""
    if session_file is not None:
        return [load_session(session_file)]
    return [loop(load(t), loop_n or 1) for t in (traces or [str(p) for p in shipped_traces()])]


def _observer(trace: Trace, phases: list[Phase], probes: list[Probe], loop_n: int | None,
              session_file: str | None, frames: bool = False) -> Callable[[Parts], Forecast]:  # fmt: skip
    def make(parts: Parts) -> Forecast:
        ka, h, vm = parts
        return Forecast(ka, h, vm, trace, phases, probes, loop=loop_n,
                        session=Path(session_file).name if session_file else None, frames=frames)  # fmt: skip

    return make


def _forecast_options(loop_n: int | None, session_file: str | None, probe_text: str | None) -> dict[str, Any]:
    """The JSON options of a forecast (none when no forecast was asked: the old keys only)."""
    if not (loop_n or session_file or probe_text):
        return {}
    return {"loop": loop_n, "session": Path(session_file).name if session_file else None, "probe": probe_text}


def _tags_plot(trace: Trace, heap: str, pdir: Path) -> Path:
    """<trace>-<heap>-tags.png: live requested bytes by tag over the steps, stacked."""
    from kalloc.replay.forecastplot import tags_stacked

    steps, series = tag_series(trace)
    return tags_stacked(steps, series, pdir / f"{Path(trace.name).stem}-{heap}-tags.png",
                        f"{trace.name}: live bytes by tag")  # fmt: skip


def _plot_dir(plot_dir: str | None) -> Path | None:
    """--plot DIR, created; exits with status 3 when matplotlib is missing."""
    if not plot_dir:
        return None
    from kalloc.replay.plot import PlotUnavailable, require

    try:
        require()
    except PlotUnavailable as exc:
        fail(exc)
    pdir = Path(plot_dir)
    try:
        pdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--plot {plot_dir}: cannot create: {exc.strerror or exc}", status=EXIT_USAGE)
    return pdir


def _fresh(banks: list[Bank], heap: str, sanitize: str, firmware_board: str | None,
           antifrag: str = "off") -> Callable[[], Parts]:  # fmt: skip
    """What builds the parts of one replay: over the banks, or the shim firmware booted on a board."""

    def fresh() -> Parts:
        if firmware_board is not None:
            parts = firmware_parts(firmware_board, heap, sanitize)
        else:
            parts = build(banks, heap, sanitize)
        install_grouping(parts[0], antifrag)  # --antifrag: before the replay's first request
        return parts

    return fresh


def _table(results: list[dict[str, Any]], board: str) -> Table:
    t = Table(title=f"kalloc replay (board {board}; utilization = peak payload / peak committed)")
    for col in ("trace", "heap", "ops", "peak payload", "peak committed", "utilization", "failed",
                "largest free (end)"):  # fmt: skip
        t.add_column(col, justify="right" if col not in ("trace", "heap") else "left")
    for r in results:
        t.add_row(r["trace"], r["heap"], str(r["ops"]), f"{r['peak_payload_bytes']:,}",
                  f"{r['peak_committed_bytes']:,}", f"{r['utilization']:.1%}", str(r["failed_requests"]),
                  f"{r['end']['largest_free_block']:,}")  # fmt: skip
    return t
