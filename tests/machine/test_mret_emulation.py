"""The cost of a ticking timer (issue 14, part 1): the return from interrupt without a code hook.

Every `mret` of the ELF's code is marked (irqstate.py) and traps as an illegal
instruction; `RiscV32.exception_return` performs it in the interrupt hook exactly as
Unicorn's own `mret` does (the privileged spec's MIE <- MPIE, MPIE <- 1, MPP <- U,
privilege <- the old MPP, pc <- mepc; mepc and mcause unchanged), and the instruction
counts once, like the real one. The run loop gives the interrupted task its burst back
when the handler returns, so a tick costs a compute loop three slices (not a ramp of ten),
and `until` lies on a page whose TLB entry stays (no fill per slice). Time stays
executed instructions: the reports are the same whatever the slicing.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import unicorn
from kalloc_machine.isa import isa_for
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.tools.benchkit import MODES, bench_elf, poke
from unicorn import riscv_const as rc

from tests.machine.ticking import ticking

MSTATUS_MIE, MSTATUS_MPIE, MSTATUS_MPP = 0x8, 0x80, 0x1800
MRET = (0x3020_0073).to_bytes(4, "little")
ADDI_A0 = (0x0015_0513).to_bytes(4, "little")  # addi a0, a0, 1: counts the instructions run
CODE = 0x1000


def mret_run(mode: int) -> tuple[Session, RunOutcome]:
    s = Session(RunOptions(firmware=str(prebuilt("tests/mret_semantics")), max_instructions=20_000_000))
    poke(s, "mret_mode", mode)
    return s, s.run()


def test_the_firmware_sees_the_privileged_specs_trap_entry_and_mret() -> None:
    """mcause, mepc and mstatus (MIE, MPIE, MPP) in a handler, after its return, around stray mrets
    and in a nested handler: as the spec (and Unicorn's own mret) has them."""
    s, out = mret_run(0)
    assert (out.exit_status, out.report["errors"]) == (0, [])
    lines = out.report["uart"].splitlines()
    assert lines[-1] == "failures: 0" and not any("WRONG" in line for line in lines)
    assert lines[:4] == ["entry mcause: 0x80000007", "entry mstatus: 0x1880", "entry mepc in the spin: 0x1",
                         "after mret mstatus: 0x88"]  # fmt: skip
    assert s.machine.irq_state.as_dict() == {"depth": 0, "entries": 3, "returns": 5, "stray_returns": 2,
                                             "max_depth": 2}  # fmt: skip


def test_an_mret_with_mpp_user_drops_to_user_mode() -> None:
    """The emulated mret changes the privilege as the CPU's does: the next CSR read is illegal."""
    _s, out = mret_run(1)
    (err,) = out.report["errors"]
    assert (err["kind"], err["symbol"]) == ("cpu-fault", "after_user_mret")
    assert err["message"] == "illegal instruction: csrr t0, mstatus"


def _after(code: bytes, mstatus: int, mepc: int, marked: bool) -> tuple[int, ...]:
    """(pc, privilege, a0, mstatus or -1 outside M-mode) after 6 instructions from CODE."""
    isa: Any = isa_for("rv32imac")
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
    uc.mem_map(CODE, 0x1000)
    uc.mem_write(CODE, code + ADDI_A0 * 16)
    uc.reg_write(rc.UC_RISCV_REG_MSTATUS, mstatus)
    uc.reg_write(rc.UC_RISCV_REG_MEPC, mepc)
    if marked:
        isa.scan_returns([(CODE, code)])
        uc.mem_write(CODE, isa.return_mark)
        uc.hook_add(unicorn.UC_HOOK_INTR, lambda uc, intno, _ud: isa.exception_return(uc))
    uc.emu_start(CODE, 0xFFFF_FFFF, count=6)
    priv = uc.reg_read(rc.UC_RISCV_REG_PRIV)
    state = uc.reg_read(rc.UC_RISCV_REG_MSTATUS) if priv == 3 else -1  # CSRs read as garbage in U-mode
    return uc.reg_read(rc.UC_RISCV_REG_PC), priv, uc.reg_read(rc.UC_RISCV_REG_A0), state


@pytest.mark.parametrize(("mie", "mpie", "mpp", "others"),
                         list(itertools.product((0, MSTATUS_MIE), (0, MSTATUS_MPIE), (0, 0x800, MSTATUS_MPP),
                                                (0, 0x2_0122))))  # fmt: skip
def test_exception_return_is_unicorns_own_mret(mie: int, mpie: int, mpp: int, others: int) -> None:
    """The marked mret performed by the ISA leaves the CPU as the real one does, counted once."""
    mstatus = mie | mpie | mpp | others  # others: SIE, SPIE, SPP, MPRV
    for mepc in (CODE + 8, CODE + 14):  # CODE + 14: inside an addi (its upper half runs as a c.nop)
        real = _after(MRET, mstatus, mepc, marked=False)
        assert _after(MRET, mstatus, mepc, marked=True) == real  # a0: the instructions after it, the same
        assert real[2] >= 4


def test_a_marked_mret_reads_as_mret_in_reports() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("tests/irq_kernel"))))
    (pc,) = s.machine.irq_state.return_pcs
    assert pc == s.firmware.symbol_addr("__kalloc_mret")
    assert s.machine.phys.read(pc, 4) == s.machine.isa.return_mark
    assert s.machine.faults.instruction_at(pc) == "mret"


def test_a_timer_tick_costs_the_compute_loop_three_slices() -> None:
    """Entry to the handler's first device access, the rest of the handler with its return, then
    the task's own burst to the next deadline (was ~10: slices restarted at 256 and doubled). The
    second is two emu_starts: the sled's real mret ran in it, counted (sled.py, "Returns")."""
    _s, out, slices = ticking("default")
    assert out.exit_status == 0
    ticks = out.result.irq_counts[0]
    assert ticks >= 9
    assert slices <= 4 * ticks + 12  # and the start's ramp (the first mtime read cuts, then 512 doubling)


def test_unicorn_miscounts_a_slice_that_ends_inside_an_it_block() -> None:
    """Unicorn 2.1.4 runs a Thumb IT block to its end when a count runs out inside it, so slices that
    trust their count drift (here by one instruction); the machine reads the engine's own count
    instead (rawcount.py, tests/machine/test_armv7m_it_slices.py). When this fails, the engine changed."""
    from unicorn import arm_const as ac

    # adds r0,#1; cmp r1,#0; ite ne; movne r2,#0; andeq.w r2,r2,#1; cmp r0,r3; bne (the demo's loop)
    code = bytes.fromhex("0130" "0029" "14bf" "0022" "02f00102" "9842" "f7d1")

    def run(slices: list[int]) -> tuple[int, int]:
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.mem_map(CODE, 0x1000)
        uc.mem_write(CODE, code + b"\x00\xbf" * 64)
        uc.reg_write(ac.UC_ARM_REG_R3, 1000)
        pc = CODE
        for n in slices:
            uc.emu_start(pc | 1, 0xFFFF_FFFF, count=n)
            pc = uc.reg_read(ac.UC_ARM_REG_PC)
        return pc, uc.reg_read(ac.UC_ARM_REG_R0)

    through = run([300])
    assert run([2, 298]) == through and run([4, 296]) == through  # cut before and after the block
    assert run([3, 297]) != through  # cut inside it


@pytest.mark.parametrize("board", ["default", "stm32f4"])
def test_the_slicing_does_not_change_the_run(board: str) -> None:
    """Time is executed instructions: a quantum of 3,001 gives the same report as the default."""
    _s, out, slices = ticking(board)
    _s2, small, many = ticking(board, quantum=3001)
    assert many > 3 * slices
    assert {**small.report, "options": None} == {**out.report, "options": None}  # options: the quantum


def test_until_is_no_tlb_fill_per_slice() -> None:
    """The end address every emu_start looks up lies on a page whose TLB entry stays."""
    s = Session(RunOptions(firmware=bench_elf("default"), sanitize="off", quantum=5000))
    poke(s, "bench_mode", MODES["compute"])
    poke(s, "bench_iters", 4000)
    out = s.run()
    assert out.exit_status == 0 and out.result.instructions > 200 * 5000
    assert s.mmu.fills < 50  # one per slice (~200) before
