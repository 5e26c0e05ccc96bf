"""A timer tick without TLB flushes (issue 14, part 1, fourth session).

QEMU's write_mstatus flushes the whole soft TLB when a register write changes mstatus.MPP:
RV32's emulated entry (MPP U -> M) and return (M -> U) each cost a flush and the refills
through the Python fill hook after it. Now the entry stores its CSRs into the CPU state as
QEMU's own entry does (isa/rv32_entry.py, TrapImage) and a marked mret is sent to a real
`mret` after the sled's code that QEMU performs (sled.py, "Returns"); the run loop keeps
counting firmware instructions only (runloop.py, `_emulate`). The TLB-fill hook is the
ctypes callback itself (rawfill.py). The reports are those of the register writes.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import unicorn
from kalloc_machine.isa import isa_for, rv32_entry
from kalloc_machine.rawfill import RawFill
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.tools.benchkit import MODES, bench_elf, poke
from unicorn import riscv_const as rc

_CSRS = (rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MEPC, rc.UC_RISCV_REG_MCAUSE,
         rc.UC_RISCV_REG_PRIV, rc.UC_RISCV_REG_MTVEC, rc.UC_RISCV_REG_A0)  # fmt: skip


def _ticking(mode: str = "compute_irq", iters: int = 20_000, period: int = 100_000, **options: Any
             ) -> Session:  # fmt: skip
    s = Session(RunOptions(firmware=bench_elf("default"), sanitize="off", **options))
    poke(s, "bench_mode", MODES[mode])
    poke(s, "bench_iters", iters)
    poke(s, "bench_timer_period", period)
    return s


def test_a_timer_tick_refills_no_tlb_entry() -> None:
    """51 ticks: as many TLB fills as a run without interrupts, give or take the handler's own
    pages (was ~9 per tick: two flushes and their refills)."""
    plain, ticking = _ticking("compute"), _ticking()
    assert plain.run().exit_status == 0
    out = ticking.run()
    assert out.exit_status == 0 and out.result.irq_counts[0] == 51
    assert ticking.mmu.fills - plain.mmu.fills < 20  # 471 - 7 before


def _report(out: RunOutcome) -> str:
    return json.dumps({k: v for k, v in out.report.items() if "wall" not in k}, sort_keys=True)


def _both(build: Any) -> tuple[str, str]:
    """The report of `build()`'s session run as it is, and with the register writes of before
    (no TrapImage, the marked mret performed in the hook)."""
    fast = _report(build().run())
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(rv32_entry.TrapImage, "locate", classmethod(lambda cls, uc: None))
        s = build()
        s.machine.sled.return_at = None  # exception_return: the hook's register writes
        slow = _report(s.run())
    finally:
        mp.undo()
    return fast, slow


@pytest.mark.parametrize("name", ["tests/mret_semantics", "tests/irq_kernel", "demo"])
def test_the_reports_are_those_of_the_register_writes(name: str) -> None:
    def build() -> Session:
        return Session(RunOptions(firmware=str(prebuilt(name)), max_instructions=20_000_000))

    fast, slow = _both(build)
    assert fast == slow


@pytest.mark.parametrize("mode", [0, 1])
def test_mret_semantics_modes_are_unchanged(mode: int) -> None:
    """Nested and stray mrets, and an mret to user mode (the sled's mret drops to U: the next CSR
    read faults exactly where the emulated one did)."""

    def build() -> Session:
        s = Session(RunOptions(firmware=str(prebuilt("tests/mret_semantics")), max_instructions=20_000_000))
        poke(s, "mret_mode", mode)
        return s

    fast, slow = _both(build)
    assert fast == slow


def test_a_slice_that_ends_on_the_sleds_mret_performs_it_at_the_boundary() -> None:
    """Quantum 51 ends slices right after a marked mret: the sled's mret is then performed at the
    boundary, uncounted, and the run is the default quantum's."""
    s = _ticking(iters=300, period=10_000, quantum=51)
    isa, finished = s.machine.isa, [0]
    real = isa.finish_return

    def counted(uc: Any) -> None:
        finished[0] += 1
        real(uc)

    isa.finish_return = counted
    out = s.run()
    assert finished[0] >= 1
    base = _ticking(iters=300, period=10_000).run()
    assert {**out.report, "options": None} == {**base.report, "options": None}
    assert out.result.instructions == base.result.instructions


def _entered(mstatus: int, mtvec: int, image: bool) -> tuple[int, ...]:
    isa: Any = isa_for("rv32imac")
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
    uc.mem_map(0x1000, 0x1000)
    uc.reg_write_batch([(rc.UC_RISCV_REG_PC, 0x1234), (rc.UC_RISCV_REG_MSTATUS, mstatus),
                        (rc.UC_RISCV_REG_MTVEC, mtvec), (rc.UC_RISCV_REG_A0, 77)])  # fmt: skip
    mp = pytest.MonkeyPatch()
    try:
        if not image:  # nothing located: the register writes
            mp.setattr(rv32_entry.TrapImage, "locate", classmethod(lambda cls, uc: None))
        target = isa.enter_interrupt(uc, 0x8000_0007)
    finally:
        mp.undo()
    return (target, *uc.reg_read_batch(_CSRS))


@pytest.mark.parametrize(("mie", "mpie", "mpp", "others", "mtvec"),
                         list(itertools.product((0, 0x8), (0, 0x80), (0, 0x800, 0x1800), (0, 0x122, 0x2_0000),
                                                (0x1000, 0x1001))))  # fmt: skip
def test_the_image_entry_is_the_register_entry(mie: int, mpie: int, mpp: int, others: int,
                                               mtvec: int) -> None:  # fmt: skip
    """Every CSR and register the entry touches (or not) ends as the register writes leave it;
    under MPRV (0x2_0000) the image steps aside (the flush is the architecture's there)."""
    mstatus = mie | mpie | mpp | others
    assert _entered(mstatus, mtvec, image=True) == _entered(mstatus, mtvec, image=False)


def test_the_image_locates_on_this_engine_and_steps_aside_under_mprv() -> None:
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
    image = rv32_entry.TrapImage.locate(uc)
    assert image is not None
    uc.reg_write(rc.UC_RISCV_REG_MSTATUS, 0x2_0000)
    before = uc.reg_read_batch(_CSRS)
    assert image.enter(0x8000_0007) is None and uc.reg_read_batch(_CSRS) == before


def test_the_fill_hook_is_the_ctypes_callback_and_reports_as_the_bindings() -> None:
    """A page fault's report through the raw callback is the binding hook's."""

    def build() -> Session:
        return Session(RunOptions(firmware=str(prebuilt("tests/vmalloc_uaf"))))

    raw = build()
    assert isinstance(raw.mmu.raw, RawFill)
    fast = _report(raw.run())
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(RawFill, "create", classmethod(lambda cls, uc, callback: None))
        binding = build()
        assert binding.mmu.raw is None
        slow = _report(binding.run())
    finally:
        mp.undo()
    assert fast == slow
    assert json.loads(fast)["errors"][0]["kind"] == "page-fault"
