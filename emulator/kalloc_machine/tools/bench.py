"""`kalloc bench`: the performance figures, each a ratio measured side by side in one run.

The machines are shared and noisy, so nothing here is an absolute promise: every
figure compares two things timed in the same run, in interleaved repetitions
(A B A B ...), and reports the median. The workloads are the firmware
firmware/tests/bench.c; the bench pokes its mode and iteration count into RAM
and times the machine's run (RunResult.wall_s, emulation only). Each workload
runs at two iteration counts and the difference is taken, so boot, exit and
report costs cancel.

Figures (issue "Benchmarks", targets beside them):
 1. hypercall floor: an empty hypercall round trip, firmware → Python → firmware;
 2. allocation cost per operation as a ratio to the floor (target ≤ 2.0 for
    kmalloc/kfree and cache alloc/free);
 3. emulation speed with the timer ticking vs without (target ≥ 0.8);
 4. sanitizer overhead on the demo: poison and kasan vs off (≤ 1.5×, ≤ 3× compiled,
    ≤ 30× hook mode);
 5. scale: boot time of 16 MiB / 256 MiB / 1 GiB boards (1 GiB < 1 s), kmalloc cost
    on 1 GiB vs 16 MiB (≤ 1.5×), resident memory per GiB of emulated RAM;
 6. utilization of trace replays: the default replay heap over the shipped traces (kalloc replay);
 7. the machine's always-on parts: translation on vs off, snapshot restore vs boot.

The command, its table and its JSON file are kalloc.cli.bench; this module measures.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import kalloc
import kalloc_machine
from kalloc_machine.board import BOARDS_DIR
from kalloc_machine.sdk import default_firmware, prebuilt
from kalloc_machine.session import RunOptions, Session

MODES = {
    "empty": 0,
    "nop": 1,
    "kmalloc": 2,
    "cache": 3,
    "pages": 4,
    "malloc": 5,
    "compute": 6,
    "compute_irq": 7,
}
# hypercalls per iteration of each allocation workload (bench.c)
CALLS_PER_ITER = {"kmalloc": 2, "cache": 2, "pages": 2, "malloc": 3}


@dataclass(slots=True)
class Figure:
    name: str
    value: float | None
    unit: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass(slots=True)
class BenchSettings:
    board: str = "default"
    sanitize: str = "off"
    reps: int = 5
    # Two iteration counts whose difference is timed: large enough that the measured
    # work (~10k hypercalls) dwarfs a run's fixed cost and its noise (tens of ms).
    iters: tuple[int, int] = (1000, 11000)
    compute_iters: int = 20_000
    # The timer's default rate: Linux's HZ=1000 on the boards' nominal 100 MIPS clock
    # (CpuSpec.timer_hz), i.e. a tick every 100,000 instructions.
    timer_period: int = 100_000
    figures: list[Figure] = field(default_factory=list)


def _poke(session: Session, symbol: str, value: int) -> None:
    addr = session.firmware.symbol_addr(symbol)
    if addr is None:
        raise RuntimeError(f"bench firmware has no symbol {symbol}")
    session.machine.phys.write_u32(addr, value)


def _run_bench(
    mode: str, iters: int, *, board: str, sanitize: str, period: int = 100_000, bare: bool = False
) -> tuple[float, int]:
    """(machine wall seconds, instructions) of one bench run.

    bare: the doorbell's MMIO callback calls a Python no-op instead of the bridge: what
    Unicorn's callback costs alone, the physical limit under the bridge.
    """
    session = Session(RunOptions(firmware=str(prebuilt("tests/bench")), board=board, sanitize=sanitize))
    if bare:
        bridge = session.bridge
        session.machine.on_hypercall = lambda service, block: None if service == 0 else bridge(service, block)
    _poke(session, "bench_mode", MODES[mode])
    _poke(session, "bench_iters", iters)
    _poke(session, "bench_timer_period", period)
    result = session.machine.run()
    if result.exit_code != 0 or result.errors:
        raise RuntimeError(f"bench mode {mode} failed: {result.reason} {result.errors[:1]}")
    return result.wall_s, result.instructions


def _per_iter(mode: str, s: BenchSettings, board: str | None = None, bare: bool = False) -> float:
    lo, hi = s.iters
    t_lo, _ = _run_bench(mode, lo, board=board or s.board, sanitize=s.sanitize, bare=bare)
    t_hi, _ = _run_bench(mode, hi, board=board or s.board, sanitize=s.sanitize, bare=bare)
    return (t_hi - t_lo) / (hi - lo)


def _interleaved(
    samplers: dict[str, Callable[[], float]], reps: int, tick: Callable[[], None]
) -> dict[str, float]:
    """Median of each sampler over `reps` rounds, the samplers interleaved within each round."""
    samples: dict[str, list[float]] = {k: [] for k in samplers}
    for _ in range(reps):
        for key, fn in samplers.items():
            samples[key].append(fn())
            tick()
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_allocation(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    modes = ["empty", "nop", *CALLS_PER_ITER]
    samplers: dict[str, Callable[[], float]] = {m: partial(_per_iter, m, s) for m in modes}
    samplers["bare"] = partial(_per_iter, "nop", s, bare=True)
    med = _interleaved(samplers, s.reps, tick)
    floor = med["nop"] - med["empty"]
    bare = med["bare"] - med["empty"]
    figs = [
        Figure("hypercall floor (empty round trip)", floor * 1e6, "µs",
               note="NOP through the bridge (block decode, context, call-site stack) minus the bare loop"),
        Figure("bare doorbell (Unicorn MMIO callback, no bridge)", bare * 1e6, "µs",
               note="the physical limit under the bridge"),
    ]  # fmt: skip
    targets = {"kmalloc": 2.0, "cache": 2.0}
    labels = {
        "kmalloc": "kmalloc+kfree, mixed small sizes",
        "cache": "kmem_cache_alloc+free",
        "pages": "alloc_pages+free_pages, orders 0-3",
        "malloc": "malloc+realloc+free",
    }
    for mode, calls in CALLS_PER_ITER.items():
        per_op = (med[mode] - med["empty"]) / calls
        ratio = per_op / floor if floor > 0 else None
        target = targets.get(mode)
        ok = None if target is None or ratio is None else ratio <= target
        mark = f"≤ {target}" if target else ""
        figs.append(Figure(f"{labels[mode]} per operation / floor", ratio, "×", mark,
                           ok, f"{per_op * 1e6:.2f} µs per operation"))  # fmt: skip
    return figs


def bench_emulation(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    def speed(mode: str) -> Callable[[], float]:
        def run() -> float:
            wall, instr = _run_bench(
                mode, s.compute_iters, board=s.board, sanitize=s.sanitize, period=s.timer_period
            )
            return instr / wall

        return run

    med = _interleaved({"plain": speed("compute"), "irq": speed("compute_irq")}, s.reps, tick)
    ratio = med["irq"] / med["plain"]
    return [
        Figure("emulation speed, timer ticking / no interrupts", ratio, "×", "≥ 0.8", ratio >= 0.8,
               f"{med['plain'] / 1e6:.1f} M instr/s without, timer every {s.timer_period} instructions"),
    ]  # fmt: skip


def bench_sanitizers(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """The demo under each sanitizer vs off; compiled KASAN runs the demo's KASAN build."""

    def demo_run(mode: str, firmware: str) -> Callable[[], float]:
        def run() -> float:
            session = Session(RunOptions(firmware=firmware, board=s.board, sanitize=mode))
            result = session.machine.run()
            if result.exit_code != 0:
                raise RuntimeError(f"demo under {mode} failed: {result.reason}")
            return result.wall_s

        return run

    demo, kasan_demo = str(default_firmware()), str(prebuilt("kasan_demo"))
    runs = {"off": demo_run("off", demo), "poison": demo_run("poison", demo),
            "hook": demo_run("kasan", demo), "compiled": demo_run("kasan", kasan_demo)}  # fmt: skip
    med = _interleaved(runs, s.reps, tick)
    targets = {"poison": 1.5, "compiled": 3.0, "hook": 30.0}
    labels = {
        "poison": "demo slowdown, poison / off",
        "compiled": "demo slowdown, kasan compiled (kasan_demo.elf) / off",
        "hook": "demo slowdown, kasan hook mode / off",
    }
    figs = []
    for key, target in targets.items():
        ratio = med[key] / med["off"]
        figs.append(Figure(labels[key], ratio, "×", f"≤ {target:g}", ratio <= target))
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

        def boot(board: str) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                Session(RunOptions(board=board))
                return time.perf_counter() - t

            return run

        med = _interleaved({"16": boot("default"), "256": boot(b256), "1024": boot("big")}, s.reps, tick)
        cost = _interleaved(
            {
                "small": lambda: _per_iter("kmalloc", s, "default"),
                "big": lambda: _per_iter("kmalloc", s, "big"),
            },
            s.reps,
            tick,
        )
    figs = [Figure(f"boot + allocator setup, {k} MiB board", v, "s", "< 1" if k == "1024" else "",
                   v < 1.0 if k == "1024" else None) for k, v in med.items()]  # fmt: skip
    ratio = cost["big"] / cost["small"]
    figs.append(Figure("kmalloc+kfree cost, 1 GiB board / 16 MiB board", ratio, "×", "≤ 1.5", ratio <= 1.5))
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


class _NoTranslation:
    """Stands in for kalloc_machine.mmu.install's result when translation is switched off."""

    def stats(self) -> dict[str, int]:
        return {}


def _install_no_translation(machine: Any, vm: Any) -> Any:
    return _NoTranslation()


def _session_without_translation(options: RunOptions) -> Session:
    """A Session whose CPU keeps Unicorn's default TLB (no vmalloc window): the baseline."""
    from kalloc_machine import mmu

    real = mmu.install
    mmu.install = _install_no_translation  # the Session calls mmu.install(machine, vm) while it boots
    try:
        return Session(options)
    finally:
        mmu.install = real


def bench_machine(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """What the machine's always-on parts cost: translation (UC_TLB_VIRTUAL) and snapshots."""
    from kalloc_machine.tools.harness import Target

    def compute(translate: bool) -> Callable[[], float]:
        def run() -> float:
            opts = RunOptions(firmware=str(prebuilt("tests/bench")), board=s.board, sanitize="off")
            session = Session(opts) if translate else _session_without_translation(opts)
            _poke(session, "bench_mode", MODES["compute"])
            _poke(session, "bench_iters", s.compute_iters)
            result = session.machine.run()
            return result.instructions / result.wall_s

        return run

    target = Target(RunOptions(board=s.board))
    target.run_to("main")
    snap = target.snapshot()

    def boot() -> float:
        t = time.perf_counter()
        Target(RunOptions(board=s.board)).run_to("main")
        return time.perf_counter() - t

    def restore() -> float:
        t = time.perf_counter()
        target.restore(snap)
        return time.perf_counter() - t

    med = _interleaved({"on": compute(True), "off": compute(False), "boot": boot, "restore": restore},
                       s.reps, tick)  # fmt: skip
    return [
        Figure("emulation speed, translation (UC_TLB_VIRTUAL) on / off", med["on"] / med["off"], "×",
               note="compute loop; the TLB-fill hook runs per page miss, not per access"),
        Figure("snapshot restore vs boot to main (demo)", med["boot"] / med["restore"], "× faster",
               note=f"boot {med['boot'] * 1e3:.1f} ms, restore {med['restore'] * 1e3:.1f} ms"),
    ]  # fmt: skip


SUITE: dict[str, Callable[[BenchSettings, Callable[[], None]], list[Figure]]] = {
    "allocation": bench_allocation,
    "emulation": bench_emulation,
    "sanitizers": bench_sanitizers,
    "scale": bench_scale,
    "machine": bench_machine,
    "utilization": bench_utilization,
}


def run_suite(settings: BenchSettings, only: list[str] | None = None, tick: Callable[[], None] = lambda: None
              ) -> list[Figure]:  # fmt: skip
    figures: list[Figure] = []
    for name, fn in SUITE.items():
        if only and name not in only:
            continue
        figures.extend(fn(settings, tick))
    settings.figures = figures
    return figures


def to_json(settings: BenchSettings) -> str:
    data: dict[str, Any] = {
        "settings": {"board": settings.board, "sanitize": settings.sanitize, "reps": settings.reps,
                     "iters": list(settings.iters), "firmware": "tests/bench.elf, demo.elf"},
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count()},
        "figures": [
            {"name": f.name, "value": f.value, "unit": f.unit, "target": f.target, "ok": f.ok, "note": f.note}
            for f in settings.figures
        ],
    }  # fmt: skip
    return json.dumps(data, indent=2) + "\n"
