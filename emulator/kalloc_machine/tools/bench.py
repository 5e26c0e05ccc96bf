"""`kalloc bench`: the performance figures, each a ratio measured side by side in one run.

The machines are shared and noisy, so nothing here is an absolute promise: every
figure compares two things timed in the same run, in interleaved repetitions
(A B A B ...), and reports the median. The workloads are the firmware
firmware/tests/bench.c; the bench pokes its mode and iteration count into RAM
and times the machine's run (emulation only) on two clocks, this thread's CPU time (the
figure's value) and the wall clock (beside it: tools/benchkit.py `Span`). Each workload
runs at two iteration counts and the difference is taken, so boot, exit and
report costs cancel.

Figures (issue "Benchmarks", targets beside them):
 1. hypercall floor: an empty hypercall round trip, firmware → Python → firmware, against a
    bare MMIO callback (≤ 2.0; longer runs, ratios per round: `floor_figures`), and the same
    call with its call site walked, as every allocation service's is;
 2. allocation cost per operation as a ratio to the call with its call site (target ≤ 2.0 for
    kmalloc/kfree and cache alloc/free);
 3. emulation speed with the timer ticking vs without (target ≥ 0.8), and of a run vs the
    same code in raw Unicorn slices (tools/benchmachine.py; target ≥ 0.9);
 4. sanitizer overhead on the demo: poison and kasan vs off (≤ 1.5×, ≤ 3× compiled,
    ≤ 30× hook mode);
 5. scale: boot time of 16 MiB / 256 MiB / 1 GiB boards (1 GiB < 1 s), kmalloc cost
    on 1 GiB vs 16 MiB (≤ 1.5×), resident memory per GiB of emulated RAM;
 6. utilization of trace replays: the default replay heap over the shipped traces (kalloc replay);
 7. the machine's always-on parts: translation on vs off, snapshot restore vs boot; the memory
    hooks on a memory-heavy firmware, and a store's cost by its TLB entry's permission (rwx
    against rw-: a raw Unicorn loop, tools/benchstores.py);
 8. campaigns: runs/s with 1 and 2 local workers and a 2-worker Dask LocalCluster, a campaign
    run vs a plain `kalloc run` (snapshot restore vs boot): tools/campaign_bench.py.

The command, its table and its JSON file are kalloc.cli.bench; this module measures
(with tools/benchkit.py, the parts of a figure, and tools/benchmachine.py, the machine's figures).

Invariants:
 1. No figure is a single timing: each is a median over `reps` interleaved runs.
 2. The bench never asserts: it reports values next to targets; tests only check
    that every figure is produced.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import kalloc
import kalloc_machine
from kalloc_machine.board import BOARDS_DIR, load_board
from kalloc_machine.sdk import default_firmware, prebuilt
from kalloc_machine.session import BadInput, RunOptions, Session
from kalloc_machine.tools.benchchurn import bench_churn
from kalloc_machine.tools.benchkit import (
    CALLS_PER_ITER,
    BenchSettings,
    Figure,
    Span,
    Stopwatch,
    interleaved,
    median,
    per_iter,
    rounds,
    timed_run,
)
from kalloc_machine.tools.benchmachine import bench_emulation, bench_machine, bench_memory_hooks
from kalloc_machine.tools.campaign_bench import bench_campaign


def bench_allocation(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """The floor's figures (`floor_figures`) and each allocation's cost per operation against the
    call with its call site, all in the same interleaved rounds, each ratio taken per round."""
    runs: dict[str, Callable[[], Span]] = {
        "empty": partial(per_iter, "empty", s, iters=s.floor_iters),
        "nop": partial(per_iter, "nop", s, iters=s.floor_iters),
        "bare": partial(per_iter, "nop", s, bare=True, iters=s.floor_iters),
        "site": partial(per_iter, "nop", s, site=True, iters=s.floor_iters),
        "loop": partial(per_iter, "empty", s),  # the allocations' own iteration counts
        **{m: partial(per_iter, m, s) for m in CALLS_PER_ITER},
    }
    got = rounds(runs, s.reps, tick)
    figs, site = floor_figures(got)
    targets = {"kmalloc": 2.0, "cache": 2.0}
    labels = {
        "kmalloc": "kmalloc+kfree, mixed small sizes",
        "cache": "kmem_cache_alloc+free",
        "pages": "alloc_pages+free_pages, orders 0-3",
        "malloc": "malloc+realloc+free",
    }
    for mode, calls in CALLS_PER_ITER.items():
        per_op = [(t - e) / calls for t, e in zip(got[mode], got["loop"], strict=True)]
        each = [op / c for op, c in zip(per_op, site, strict=True) if c.positive]
        ratio = median(each) if each else None
        target = targets.get(mode)
        mark = f"≤ {target}" if target else ""
        figs.append(Figure.timed(f"{labels[mode]} per operation / hypercall with call site", ratio, "×", mark,
                                 None if target is None else partial(_at_most, target),
                                 f"{median(per_op).cpu * 1e6:.2f} µs per operation; median of per-round "
                                 "ratios"))  # fmt: skip
    return figs


def _at_most(target: float, value: float) -> bool:
    return value <= target


def floor_figures(got: dict[str, list[Span]]) -> tuple[list[Figure], list[Span]]:
    """The hypercall floor against a bare MMIO callback, and the call with its call site (the
    denominator of the per-operation rows: every allocation service walks its site), from the
    rounds' runs (empty, nop, bare, site: longer runs, BenchSettings.floor_iters); with the site
    floor of each round in seconds. A ratio is taken per round (each run minus that round's
    empty loop) and the median over rounds reported (docs/performance.md, the floor's method)."""
    per = {k: [t - e for t, e in zip(got[k], got["empty"], strict=True)] for k in ("nop", "bare", "site")}
    floor, bare, site = (median(per[k]) for k in ("nop", "bare", "site"))

    def ratio(of: str) -> tuple[Span | None, str]:
        each = [a / b for a, b in zip(per[of], per["bare"], strict=True) if b.positive]
        cpu = [r.cpu for r in each]
        spread = f"median of per-round ratios ({min(cpu):.3g}–{max(cpu):.3g})" if each else "no round"
        return (median(each) if each else None), spread

    (floor_ratio, floor_spread), (site_ratio, site_spread) = ratio("nop"), ratio("site")
    figs = [
        Figure.timed("hypercall floor (empty round trip)", floor * 1e6, "µs",
                     note="NOP through the bridge (block decode, context, dispatch, result; NOP reads no "
                          "caller: no call-site walk) minus the bare loop"),
        Figure.timed("bare doorbell (Unicorn MMIO callback, no bridge)", bare * 1e6, "µs",
                     note="the binding's mmio_map, a Python callback that returns: the reference under the "
                          "bridge"),
        Figure.timed("hypercall floor / bare doorbell", floor_ratio, "×", "≤ 2.0", partial(_at_most, 2.0),
                     f"kalloc's part of a call: block, context, dispatch, result; {floor_spread}"),
        Figure.timed("hypercall with call site (NOP served as an allocation service is)", site * 1e6, "µs",
                     note="the floor plus the call-site walk, its depot handle and Caller"),
        Figure.timed("hypercall with call site / bare doorbell", site_ratio, "×", note=site_spread),
    ]  # fmt: skip
    return figs, per["site"]


def bench_sanitizers(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """The demo under each sanitizer vs off; compiled KASAN runs the demo's KASAN build."""

    def demo_run(mode: str, firmware: str) -> Callable[[], Span]:
        def run() -> Span:
            session = Session(RunOptions(firmware=firmware, board=s.board, sanitize=mode))
            span, result = timed_run(session)
            if result.exit_code != 0:
                raise RuntimeError(f"demo under {mode} failed: {result.reason}")
            return span

        return run

    isa = load_board(s.board).cpu.isa  # the board's ISA's demo and KASAN demo (build/armv7m/ on Cortex-M)
    demo, kasan_demo = str(default_firmware(isa)), str(prebuilt("kasan_demo", isa))
    runs = {"off": demo_run("off", demo), "poison": demo_run("poison", demo),
            "hook": demo_run("kasan", demo), "compiled": demo_run("kasan", kasan_demo)}  # fmt: skip
    med = interleaved(runs, s.reps, tick)
    targets = {"poison": 1.5, "compiled": 3.0, "hook": 30.0}
    labels = {
        "poison": "demo slowdown, poison / off",
        "compiled": "demo slowdown, kasan compiled (kasan_demo.elf) / off",
        "hook": "demo slowdown, kasan hook mode / off",
    }
    figs = []
    for key, target in targets.items():
        figs.append(Figure.timed(labels[key], med[key] / med["off"], "×", f"≤ {target:g}",
                                 partial(_at_most, target)))
    figs[1].note = "the KASAN build also executes its inline checks (more instructions)"
    return figs


def _board_file(tmp: Path, size_mib: int) -> str:
    """A board like the shipped ones with `size_mib` MiB: 16 MiB DMA + the rest normal."""
    normal = size_mib - 16
    text = (BOARDS_DIR / "default.toml").read_text()
    text = text.replace('size = "4MiB"', 'size = "16MiB"').replace('size = "12MiB"', f'size = "{normal}MiB"')
    text = text.replace('windows = [[0x8000_0000, "4MiB"]]', 'windows = [[0x8000_0000, "16MiB"]]')
    text = text.replace('name = "default"', f'name = "bench{size_mib}"')
    path = tmp / f"bench{size_mib}.toml"
    path.write_text(text)
    return str(path)


def _rss_after_boot(board: str) -> int:
    """Peak resident KiB of a fresh process that boots `board` (VmHWM)."""
    code = (
        "from kalloc_machine.session import RunOptions, Session\n"
        f"s = Session(RunOptions(board={board!r}))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (kalloc, kalloc_machine) if m.__file__}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sorted(roots)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return int(out.stdout.strip() or 0)


def bench_scale(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        b256 = _board_file(Path(tmp), 256)

        def boot(board: str) -> Callable[[], Span]:
            def run() -> Span:
                watch = Stopwatch()
                Session(RunOptions(board=board))
                return watch.elapsed()

            return run

        med = interleaved({"16": boot("default"), "256": boot(b256), "1024": boot("big")}, s.reps, tick)
        cost = interleaved(
            {
                "small": lambda: per_iter("kmalloc", s, "default"),
                "big": lambda: per_iter("kmalloc", s, "big"),
            },
            s.reps,
            tick,
        )
    figs = [Figure.timed(f"boot + allocator setup, {k} MiB board", v, "s", "< 1" if k == "1024" else "",
                         partial(_below, 1.0) if k == "1024" else None) for k, v in med.items()]  # fmt: skip
    figs.append(Figure.timed("kmalloc+kfree cost, 1 GiB board / 16 MiB board", cost["big"] / cost["small"],
                             "×", "≤ 1.5", partial(_at_most, 1.5)))  # fmt: skip
    tiny, big = _rss_after_boot("tiny"), _rss_after_boot("big")
    figs.append(
        Figure(
            "resident memory per GiB of emulated RAM after boot",
            (big - tiny) / 1024,
            "MiB",
            note="peak RSS of a process that booted the 1 GiB board minus one that booted 256 KiB",
        )
    )
    return figs  # fmt: skip


def _below(target: float, value: float) -> bool:
    return value < target


def bench_utilization(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """Utilization (peak payload / peak committed) of the default replay heap over the shipped traces."""
    from kalloc.replay import DEFAULT_HEAP, shipped_traces
    from kalloc.replay.measure import build
    from kalloc.replay.replayer import replay
    from kalloc.replay.trace import load
    from kalloc_machine.tools.fwreplay import board_banks

    quick = s.iters[0] < 100  # --quick: the traces under 200 KiB only
    paths = [p for p in shipped_traces() if not quick or p.stat().st_size < 200_000]
    banks = board_banks(s.board)
    utils = []
    for path in paths:
        ka, heap, _vm = build(banks, DEFAULT_HEAP, "off")
        res = replay(load(path), ka, heap, verify=False, sample_every=1 << 30)
        utils.append(100 * res.utilization)
        tick()
    mean, low = statistics.fmean(utils), min(utils)
    what = f"heap {DEFAULT_HEAP}, {len(utils)} shipped traces"
    return [Figure(f"trace replay utilization, mean ({what})", mean, "%", "≥ 80", mean >= 80),
            Figure(f"trace replay utilization, min ({what})", low, "%", "≥ 50", low >= 50)]  # fmt: skip


SUITE: dict[str, Callable[[BenchSettings, Callable[[], None]], list[Figure]]] = {
    "allocation": bench_allocation,
    "workload": bench_churn,
    "emulation": bench_emulation,
    "sanitizers": bench_sanitizers,
    "scale": bench_scale,
    "machine": bench_machine,
    "hooks": bench_memory_hooks,
    "utilization": bench_utilization,
    "campaign": bench_campaign,
}


def run_suite(settings: BenchSettings, only: list[str] | None = None, tick: Callable[[], None] = lambda: None
              ) -> list[Figure]:  # fmt: skip
    figures: list[Figure] = []
    for name, fn in SUITE.items():
        if only and name not in only:
            continue
        try:
            figures.extend(fn(settings, tick))
        except (BadInput, RuntimeError) as exc:  # a part this board cannot run (an RV32-only ELF, OOM)
            figures.append(Figure(f"{name}: not measured on board {settings.board}", None, "",
                                  note=str(exc).splitlines()[0]))  # fmt: skip
    settings.figures = figures
    return figures


def to_json(settings: BenchSettings) -> str:
    data: dict[str, Any] = {
        "settings": {"board": settings.board, "sanitize": settings.sanitize, "reps": settings.reps,
                     "iters": list(settings.iters), "firmware": "tests/bench.elf, demo.elf",
                     "clock": "cpu (time.thread_time); wall (time.perf_counter) in each figure's 'wall'"},
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count()},
        "figures": [
            {"name": f.name, "value": f.value, "unit": f.unit, "target": f.target, "ok": f.ok, "note": f.note,
             "wall": f.wall}
            for f in settings.figures
        ],
    }  # fmt: skip
    return json.dumps(data, indent=2) + "\n"
