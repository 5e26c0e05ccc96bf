"""What a store costs in Unicorn's soft TLB by the permission its entry was filled with: the raw
loop behind docs/performance.md's "Stores and the TLB" (issue 14, sixth session), a figure of
`kalloc bench --only hooks`.

Unicorn 2.1.4 enters every writable RAM page "not dirty", so a store takes the slow path
(`notdirty_write`), which marks the entry dirty so that the next store is inline; it skips the
marking, for good, when the entry can execute. So a store to a page filled rwx costs the slow
path every time, and one filled rw- costs it once. The machine's fill grants a data page rw-
(mmu.py); this loop shows the difference without the machine: a bare RV32 Unicorn in
UC_TLB_VIRTUAL mode, a TLB-fill hook granting the code page r-x and the data page `data_perms`,
and a three-instruction loop (`sw a2, 0(a0)` or `lw a3, 0(a0)`; `addi a1, a1, -1`; `bnez a1`)
run `iterations` times in one `emu_start` (no count, no other hook).

Invariants:
 1. At most one fill per page per loop (the fill hook counts them: `fills`, in the note), so
    the loop times the access itself, not the hook.
 2. The loop ends at its own exit address; a CPU error is a RuntimeError naming it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import unicorn
from unicorn.riscv_const import UC_RISCV_REG_A0, UC_RISCV_REG_A1, UC_RISCV_REG_A2

from kalloc_machine.tools.benchkit import BenchSettings, Figure, Span, Stopwatch, interleaved

CODE, DATA, PAGE = 0x1000, 0x10000, 0x1000
RWX = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE | unicorn.UC_PROT_EXEC
RW = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE
RX = unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC
STORE, LOAD = 0x00C5_2023, 0x0005_2683  # sw a2, 0(a0); lw a3, 0(a0)
LOOP_TAIL = (0xFFF5_8593, 0xFE05_9CE3)  # addi a1, a1, -1; bnez a1, -8 (back to the access)
ITERATIONS = 20_000_000  # ~0.1 s a loop with cheap stores, ~1 s with slow ones


class RawAccessLoop:
    """One access loop on a bare Unicorn (module docstring); `run(n)` times n iterations."""

    def __init__(self, store: bool, data_perms: int) -> None:
        self.uc = uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)  # type: ignore[attr-defined]  # in 2.1.4
        uc.mem_map(CODE, PAGE)
        uc.mem_map(DATA, PAGE)
        code = struct.pack("<3I", STORE if store else LOAD, *LOOP_TAIL)
        uc.mem_write(CODE, code)
        self.exit = CODE + len(code)
        self.perms = {CODE >> 12: RX, DATA >> 12: data_perms}
        self.fills = 0
        uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self._fill)

    def _fill(self, _uc: Any, vaddr: int, _access: int, entry: Any, _ud: Any) -> bool:
        perms = self.perms.get(vaddr >> 12)
        if perms is None:
            return False
        self.fills += 1
        entry.paddr, entry.perms = vaddr & ~(PAGE - 1), perms
        return True

    def run(self, iterations: int) -> Span:
        uc = self.uc
        uc.reg_write(UC_RISCV_REG_A0, DATA)
        uc.reg_write(UC_RISCV_REG_A1, iterations)
        uc.reg_write(UC_RISCV_REG_A2, 0x5A5A_5A5A)
        watch = Stopwatch()
        try:
            uc.emu_start(CODE, self.exit)
        except unicorn.UcError as exc:
            raise RuntimeError(f"the raw access loop stopped: {exc}") from None
        return watch.elapsed()


def bench_stores(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    """Store cost per iteration with the data page filled rwx against rw-, a load's beside."""
    n = ITERATIONS if s.iters[0] >= 100 else ITERATIONS // 20  # --quick: 1M iterations
    loops = {"sw_rwx": RawAccessLoop(True, RWX), "sw_rw": RawAccessLoop(True, RW),
             "lw_rwx": RawAccessLoop(False, RWX)}  # fmt: skip

    def sampler(loop: RawAccessLoop) -> Callable[[], Span]:
        return lambda: loop.run(n) / n

    med = interleaved({k: sampler(loop) for k, loop in loops.items()}, s.reps, tick)
    fills = max(loop.fills for loop in loops.values())  # a loop's Unicorn keeps its TLB between runs
    ns = {k: v.cpu * 1e9 for k, v in med.items()}
    note = (f"raw Unicorn RV32, UC_TLB_VIRTUAL, {n // 1_000_000}M-iteration loop: sw to an rwx page "
            f"{ns['sw_rwx']:.1f} ns, to an rw- page {ns['sw_rw']:.1f} ns, lw {ns['lw_rwx']:.1f} ns per "
            f"iteration; {fills} TLB fills at most in all of a loop's runs (tools/benchstores.py)"
            )  # fmt: skip
    return [Figure.timed("store cost, data page filled rwx / rw- (raw Unicorn sw loop)",
                         med["sw_rwx"] / med["sw_rw"], "×", note=note)]  # fmt: skip
