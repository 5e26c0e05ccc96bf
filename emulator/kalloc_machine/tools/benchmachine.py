"""The machine's figures of `kalloc bench`: emulation speed against raw Unicorn and with the
timer ticking, translation on/off, snapshot restore vs boot, and what the always-on memory
hooks (the TLB-fill hook, the stack guard) cost a memory-heavy firmware.

The engine's own limit is what Unicorn does alone with the same code in the same
shape of work: `emu_start(count=quantum)` slices (kalloc delivers interrupts
between slices, so a free-running `emu_start` would not be the same engine work).
`RawCall` builds a bare Unicorn for a board's RAM, loads the ELF's segments (through
kalloc_machine.elf, the loader every run uses) and calls one firmware function
(`bench_compute(n)` of firmware/tests/bench.c) directly: pc at the function, the
argument in a0, the return address a sentinel where the last slice stops. No
hooks, no devices, no doorbells, no Python per slice beyond the loop.
`bench_emulation` times it against a whole run of the same ELF with
`--sanitize=off`, each at two iteration counts with the difference taken (boot,
exit and report cancel), in interleaved repetitions.

Invariants:
 1. The baseline executes exactly the instructions of the call (plus the final
    return); a CPU error is a RuntimeError naming it (the bench firmware is ours).
 2. The raw CPU is built for the board's ISA (`Isa.uc_arch/uc_mode/setup`, `call_setup`:
    RV32, or Cortex-M with the Thumb bit on every PC given to Unicorn).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from unicorn import Uc, UcError
from unicorn.arm_const import UC_ARM_REG_SP
from unicorn.riscv_const import UC_RISCV_REG_SP

from kalloc_machine.board import load_board
from kalloc_machine.elf import load_firmware
from kalloc_machine.isa import isa_for
from kalloc_machine.memlayout import PAGE_SIZE
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.benchkit import (
    MODES,
    BenchSettings,
    Figure,
    Span,
    Stopwatch,
    bench_elf,
    interleaved,
    poke,
    run_bench,
    timed_run,
)
from kalloc_machine.tools.benchstores import bench_stores

_SP = {"rv32imac": UC_RISCV_REG_SP, "armv7m": UC_ARM_REG_SP}  # the stack pointer: not in the Isa protocol


class RawCall:
    """One firmware function, called on a bare Unicorn built for `board` (module docstring)."""

    def __init__(self, elf: str | Path, board: str, function: str, quantum: int) -> None:
        spec = load_board(board)
        self.isa = isa = isa_for(spec.cpu.isa)
        firmware = load_firmware(Path(elf), spec.cpu.isa)
        entry = firmware.symbol_addr(function)
        if entry is None:
            raise RuntimeError(f"{elf}: no function {function}")
        self.uc = Uc(isa.uc_arch, isa.uc_mode)
        isa.setup(self.uc)
        for bank in spec.ram:
            self.uc.mem_map(bank.base, -(-bank.size // PAGE_SIZE) * PAGE_SIZE)
        for seg in firmware.segments:
            self.uc.mem_write(seg.paddr, seg.data)
        first = spec.ram[0]
        self.entry = entry
        self.sentinel = first.base  # the return address: the first RAM byte (crt0's entry)
        self.stack_top = first.end - 16
        self.quantum = quantum

    def call(self, arg: int) -> Span:
        """Time spent in `emu_start` slices running function(arg) to its return (both clocks)."""
        uc, isa = self.uc, self.isa
        uc.reg_write(_SP[isa.name], self.stack_top)
        isa.call_setup(uc, self.entry, (arg,), self.sentinel)
        pc, sentinel, quantum, bit = self.entry, self.sentinel, self.quantum, isa.code_bit
        watch = Stopwatch()
        try:
            while pc != sentinel:
                uc.emu_start(pc | bit, sentinel, count=quantum)
                pc = isa.pc(uc)
        except UcError as exc:
            raise RuntimeError(f"raw Unicorn stopped at {pc:#x}: {exc}") from None
        return watch.elapsed()


def bench_emulation(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    def speed(mode: str) -> Callable[[], Span]:
        def run() -> Span:
            span, instr = run_bench(
                mode, s.compute_iters, board=s.board, sanitize=s.sanitize, period=s.timer_period
            )
            return instr / span

        return run

    lo, hi = s.compute_iters, 5 * s.compute_iters  # hi: ~25M instructions, a tenth of a second raw
    raw = RawCall(bench_elf(s.board), s.board, "bench_compute", load_board(s.board).cpu.quantum)

    def kalloc_diff() -> Span:
        return run_bench("compute", hi, board=s.board, sanitize="off")[0] - run_bench(
            "compute", lo, board=s.board, sanitize="off")[0]  # fmt: skip

    def raw_diff() -> Span:
        return raw.call(hi) - raw.call(lo)

    med = interleaved({"plain": speed("compute"), "irq": speed("compute_irq"), "kalloc": kalloc_diff,
                        "raw": raw_diff}, s.reps, tick)  # fmt: skip
    engine = med["raw"] / med["kalloc"] if med["kalloc"].positive else None
    return [
        Figure.timed("emulation speed, timer ticking / no interrupts", med["irq"] / med["plain"], "×",
                     "≥ 0.8", _at_least(0.8),
                     f"{med['plain'].cpu / 1e6:.1f} M instr/s without, timer every {s.timer_period} "
                     "instructions"),
        Figure.timed("emulation speed, kalloc run (sanitize off) / raw Unicorn slices", engine, "×",
                     "≥ 0.9", _at_least(0.9),
                     "the same compute loop of tests/bench.elf; raw: emu_start(count=quantum) slices, "
                     "no hooks (tools/benchmachine.py)"),
    ]  # fmt: skip


def _at_least(target: float) -> Callable[[float], bool]:
    return lambda value: value >= target


class _NoTranslation:
    """Stands in for kalloc_machine.mmu.install's result when translation is switched off."""

    def stats(self) -> dict[str, int]:
        return {}


def _install_no_translation(machine: Any, vm: Any) -> Any:
    return _NoTranslation()


def _no_guard(machine: Any, firmware: Any, depot: Any = None, mmu: Any = None) -> None:
    return None


def _session_without(options: RunOptions, translation: bool = True, guard: bool = True) -> Session:
    """A Session without the always-on memory hooks it is told to leave out (a baseline):
    translation=False keeps Unicorn's default TLB (no vmalloc window, no TLB-fill hook),
    guard=False installs no stack guard (bridge/stackguard.py's ranged memory hook)."""
    from kalloc_machine import mmu
    from kalloc_machine.bridge import stackguard

    real_mmu, real_guard = mmu.install, stackguard.install
    if not translation:
        mmu.install = _install_no_translation  # the Session calls mmu.install(machine, vm) while it boots
    if not guard:
        stackguard.install = _no_guard  # type: ignore[assignment]
    try:
        return Session(options)
    finally:
        mmu.install, stackguard.install = real_mmu, real_guard


def bench_memory_hooks(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """What the always-on memory hooks cost a memory-heavy firmware: the TLSF build of the
    allocation-heavy workload (tools/benchchurn.py; one hypercall, then loads and stores only,
    built for the board's ISA), with translation (the TLB-fill hook, which also traps the
    stack guard's page) and the stack guard each left out; without translation the guard can
    only be its fallback, a ranged memory hook (bridge/stackguard.py), measured beside. Since
    data fills are rw- (issue 14, sixth session) translation on / off is no longer the fill
    hook's cost alone: off, Unicorn's own TLB maps RAM rwx and every store takes the slow
    path (the raw store loop, tools/benchstores.py, measures that part alone)."""
    from kalloc_machine.board import load_board
    from kalloc_machine.tools.benchchurn import CHURNS

    lo, hi = s.churn_iters if s.iters[0] >= 100 else (100, 600)
    elf = str(prebuilt(CHURNS["tlsf"].elf, load_board(s.board).cpu.isa))

    def speed(translation: bool, guard: bool) -> Callable[[], Span]:
        def run(n: int) -> tuple[Span, int]:
            opts = RunOptions(firmware=elf, board=s.board, sanitize="off")
            session = _session_without(opts, translation=translation, guard=guard)
            poke(session, "churn_iters", n)
            span, result = timed_run(session)
            return span, result.instructions

        def sample() -> Span:
            (t_lo, n_lo), (t_hi, n_hi) = run(lo), run(hi)
            return (n_hi - n_lo) / (t_hi - t_lo) if (t_hi - t_lo).positive else Span(0.0, 0.0)

        return sample

    samplers = {"all": speed(True, True), "none": speed(False, False), "no_guard": speed(True, False),
                "memhook": speed(False, True)}  # fmt: skip
    med = interleaved(samplers, s.reps, tick)
    note = (f"{med['all'].cpu / 1e6:.1f} M instr/s with every hook, {med['none'].cpu / 1e6:.1f} M with none; "
            f"TLSF workload, {hi - lo} iterations")  # fmt: skip

    def ratio(a: str, b: str) -> Span | None:
        return med[a] / med[b] if med[b].positive else None

    figs = [
        Figure.timed("memory-heavy firmware speed, translation (TLB-fill hook) on / off",
                     ratio("all", "none"), "×",
                     note=note + "; on: data pages filled rw- (stores inline after a page's first), "
                          "the guard trapped in the fill; off: Unicorn's own TLB, RAM rwx (every store "
                          "the slow path), no guard"),
        Figure.timed("memory-heavy firmware speed, stack guard hook on / off", ratio("all", "no_guard"), "×",
                     note="trapped in the TLB-fill hook (its page refused): no memory hook"),
        Figure.timed("memory-heavy firmware speed, stack guard as a ranged memory hook on / off",
                     ratio("memhook", "none"), "×",
                     note="the fallback: no translation, or an unaligned guard (both sides without "
                          "translation)"),
    ]  # fmt: skip
    return figs + bench_stores(s, tick)  # the raw store loop (tools/benchstores.py)


def bench_machine(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """What the machine's always-on parts cost: translation (UC_TLB_VIRTUAL) and snapshots."""
    from kalloc_machine.tools.harness import Target

    def compute(translate: bool) -> Callable[[], Span]:
        def run() -> Span:
            opts = RunOptions(firmware=bench_elf(s.board), board=s.board, sanitize="off")
            session = _session_without(opts, translation=translate)
            poke(session, "bench_mode", MODES["compute"])
            poke(session, "bench_iters", s.compute_iters)
            span, result = timed_run(session)
            return result.instructions / span

        return run

    target = Target(RunOptions(board=s.board))
    target.run_to("main")
    snap = target.snapshot()

    def boot() -> Span:
        watch = Stopwatch()
        Target(RunOptions(board=s.board)).run_to("main")
        return watch.elapsed()

    def restore() -> Span:
        watch = Stopwatch()
        target.restore(snap)
        return watch.elapsed()

    med = interleaved({"on": compute(True), "off": compute(False), "boot": boot, "restore": restore},
                       s.reps, tick)  # fmt: skip
    return [
        Figure.timed("emulation speed, translation (UC_TLB_VIRTUAL) on / off", med["on"] / med["off"], "×",
                     note="compute loop; the TLB-fill hook runs per page miss, not per access"),
        Figure.timed("snapshot restore vs boot to main (demo)", med["boot"] / med["restore"], "× faster",
                     note=f"boot {med['boot'].cpu * 1e3:.1f} ms, restore {med['restore'].cpu * 1e3:.1f} ms"),
    ]  # fmt: skip
