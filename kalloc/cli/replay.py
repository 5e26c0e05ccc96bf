"""`kalloc replay`: replay allocation traces through a heap policy, without firmware, and measure them.

    kalloc replay [TRACE ...] [--heap NAME|all] [--board B] [--json FILE] [--plot DIR]

With no TRACE, the traces shipped in kalloc/replay/traces/ (the wee_alloc real-program
traces and the generated malloc-lab-style ones). Each (trace, heap) pair runs
twice — a fast pass finds the step where committed memory peaks, the checked
pass (kalloc.replay.replayer) snapshots fragmentation there — on a fresh allocator over
the board's RAM banks (nothing reserved but the memmap).

Exit status: 0 every replay ran (failed requests are counted, not errors); 64 a
replay found the heap or allocator breaking a rule; 3 a trace or board that
cannot be read; 2 usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kalloc import Config, Kalloc
from kalloc.heaps import HEAPS, make_heap
from kalloc.physmem import PhysMem, RamBank, anonymous_buffer
from kalloc.replay.replayer import ReplayError, find_peak, replay
from kalloc.replay.trace import Trace, TraceError, load
from kalloc.vmalloc import Vmalloc

REPLAY_DEFAULT_HEAP = "firstfit"  # chosen by measurement: docs/performance.md, "Heap utilization"
EXIT_ERROR = 64
EXIT_BAD_INPUT = 3


def shipped_traces() -> list[Path]:
    """The traces that ship with kalloc, in name order."""
    d = Path(__file__).resolve().parents[1] / "replay" / "traces"
    return sorted([*d.glob("*.trace"), *d.glob("*.rep")])


def board_banks(board: str) -> list[tuple[str, int, int, bool]]:
    """(name, base, size, dma) of every RAM bank of a shipped or user board."""
    from kalloc_machine.board import load_board  # the command line composes both packages

    b = load_board(board)
    return [(r.name, r.base, r.size, r.dma) for r in b.ram]


def build(banks: list[tuple[str, int, int, bool]], heap: str, sanitize: str) -> tuple[Kalloc, Any, Vmalloc]:
    """A fresh allocator over anonymous memory shaped like the banks, its Vmalloc and the heap."""
    phys = PhysMem([RamBank(n, base, size, memoryview(anonymous_buffer(size)), dma=dma)
                    for n, base, size, dma in banks])  # fmt: skip
    ka = Kalloc(phys, Config(sanitize=sanitize))
    vm = Vmalloc(ka)
    return ka, make_heap(heap, ka, vm), vm


def parse_steps(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v, 0) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of step numbers") from None


def build_firmware(board: str, heap: str, sanitize: str) -> tuple[Kalloc, Any, Vmalloc]:
    """The replay shim firmware booted on `board`: its allocator, a firmware-calling heap, its Vmalloc."""
    from kalloc_machine.tools.fwreplay import FirmwareHeap, boot

    target = boot(board, heap, sanitize)
    return target.ka, FirmwareHeap(target), target.session.vm


def run_one(trace: Trace, heap: str, banks: list, sanitize: str, *, check_every: int, plot_dir: Path | None,
            map_at: tuple[int, ...], firmware_board: str | None = None
            ) -> tuple[dict[str, Any], list[Path]]:  # fmt: skip
    """Replay one trace on one heap; returns (its JSON summary with sampled steps, PNGs written).

    firmware_board: replay through firmware booted on this board (`--firmware`)
    instead of calling the heap from Python.
    """
    from kalloc.replay.pagemap import count_owners, page_map

    def fresh() -> tuple[Kalloc, Any, Vmalloc]:
        if firmware_board is not None:
            return build_firmware(firmware_board, heap, sanitize)
        return build(banks, heap, sanitize)

    ka, h, vm = fresh()
    peak = find_peak(trace, ka, h)
    ka, h, vm = fresh()
    want = set(map_at) | {peak}
    maps: dict[int, Any] = {}

    def hook(step: int, rp: Any) -> None:
        if step in want:
            maps[step] = page_map(ka, h, vm)

    res = replay(trace, ka, h, check_every=check_every, snapshot_steps={peak}, on_step=hook)
    out = res.summary()
    out["pages_by_owner_at_peak"] = count_owners(maps[peak]) if peak in maps else {}
    out["vmalloc"] = vm.stats()
    out["steps"] = [s.as_dict() for s in res.samples if s.free_blocks is not None]
    written: list[Path] = []
    if plot_dir is not None:
        from kalloc.replay import plot

        stem = f"{Path(trace.name).stem}-{heap}"
        for step, pmap in sorted(maps.items()):
            tag = "peak" if step == peak else f"step{step}"
            written.append(plot.memory_map(pmap, plot_dir / f"{stem}-map-{tag}.png",
                                           f"{trace.name}, heap {heap}, after step {step}"
                                           f"{' (peak committed)' if step == peak else ''}"))  # fmt: skip
        written.append(plot.fragmentation(res, plot_dir / f"{stem}-fragmentation.png"))
    return out, written


@click.command("replay")
@click.argument("traces", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--heap",
    default=REPLAY_DEFAULT_HEAP,
    show_default=True,
    type=click.Choice([*HEAPS, "all"]),
    help="Heap policy behind the C library face ('all': each).",
)
@click.option("--board", default="default", show_default=True, help="Board whose RAM banks the replay uses.")
@click.option(
    "--sanitize",
    type=click.Choice(["off", "poison", "kasan"]),
    default="off",
    show_default=True,
    help="Allocator debug mode (red zones cost space: utilization is measured with 'off').",
)
@click.option(
    "--json", "json_path", metavar="FILE", help="Write summaries and per-step figures ('-': stdout)."
)
@click.option(
    "--plot", "plot_dir", metavar="DIR", help="Write PNGs: memory maps and fragmentation over time."
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
@click.option("-q", "--quiet", is_flag=True, help="No table.")
def replay_cmd(
    traces: tuple[str, ...],
    heap: str,
    board: str,
    sanitize: str,
    json_path: str | None,
    plot_dir: str | None,
    map_at: tuple[int, ...],
    check_every: int,
    firmware: bool,
    quiet: bool,
) -> None:
    """Replay allocation TRACEs (malloc-lab, wee_alloc or kalloc format) through a heap; measure utilization.

    With no TRACE, the shipped traces. Exit status: 0 done; 64 the heap broke a
    rule; 3 unreadable trace or board; 2 usage.
    """
    err = Console(stderr=True, highlight=False)
    pdir = None
    if plot_dir:
        from kalloc.replay.plot import PlotUnavailable, require

        try:
            require()
        except PlotUnavailable as exc:
            err.print(f"kalloc: error: {exc}", markup=False)
            sys.exit(EXIT_BAD_INPUT)
        pdir = Path(plot_dir)
        pdir.mkdir(parents=True, exist_ok=True)
    try:
        banks = board_banks(board)
        loaded = [load(t) for t in (traces or [str(p) for p in shipped_traces()])]
    except (TraceError, ValueError, OSError) as exc:
        err.print(f"kalloc: error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    heaps = list(HEAPS) if heap == "all" else [heap]
    results, status, pngs = [], 0, []
    for tr in loaded:
        for h in heaps:
            try:
                out, written = run_one(tr, h, banks, sanitize, check_every=check_every, plot_dir=pdir,
                                       map_at=map_at, firmware_board=board if firmware else None)  # fmt: skip
            except ReplayError as exc:
                err.print(f"kalloc: {tr.name} on heap {h}: {exc}", markup=False)
                status = EXIT_ERROR
                continue
            results.append(out)
            pngs += written
    to_stdout = json_path == "-"
    con = err if to_stdout else Console(highlight=False, width=140)
    if not quiet:
        con.print(_table(results, board))
        for p in pngs:
            con.print(f"wrote {p}", markup=False)
    if json_path:
        doc = {"board": board, "options": {"heap": heap, "sanitize": sanitize, "check_every": check_every,
                                           "firmware": firmware},
               "replays": results}  # fmt: skip
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            Path(json_path).write_text(text)
    sys.exit(status)


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
