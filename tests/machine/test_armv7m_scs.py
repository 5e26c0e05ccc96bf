"""The Cortex-M System Control Space and exception model on a bare engine (isa/armv7m_scs.py,
isa/armv7m.py), checked against the ARMv7-M Architecture Reference Manual and the Cortex-M4
Generic User Guide (DUI 0553):

  B1.5.4 / GUG 2.3.6   priority grouping: the group priority is the priority with the
                       subpriority field (AIRCR.PRIGROUP) cleared; only a higher (numerically
                       lower) group priority than the execution priority pre-empts; PRIMASK
                       boosts the execution priority to 0, BASEPRI to its own value
  B1.5.6 / GUG 2.3.7   exception entry: the 8-word frame on the stack in use (PSP in thread
                       mode with CONTROL.SPSEL = 1), the handler on MSP, EXC_RETURN
                       0xFFFFFFFD / 0xFFFFFFF9 / 0xFFFFFFF1
  B1.5.8               exception return: the frame is unstacked from the stack EXC_RETURN
                       names; an illegal return is a fault (INVPC)
  B3.3 / GUG 4.4       SysTick: counts down from RVR, COUNTFLAG and the exception at 1 -> 0,
                       CVR writes clear it, CSR reads clear COUNTFLAG
  B3.4 / GUG 4.2       NVIC: ISER/ICER and ISPR/ICPR set/clear pairs, byte-accessible IPR
                       with the implemented high bits only (4 on an STM32F4), STIR
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import unicorn
from kalloc_machine.devices import Clock
from kalloc_machine.isa import isa_for
from kalloc_machine.isa.armv7m_exc import EXC_RETURN_HANDLER, EXC_RETURN_THREAD, EXC_RETURN_THREAD_PSP, VTOR
from kalloc_machine.isa.armv7m_scs import CSR_COUNTFLAG, THREAD, Scs
from unicorn import arm_const as ac

HANDLER = 0x8000_2000
THREAD_PC = 0x8000_1000
MSP, PSP = 0x8000_8000, 0x8000_6000
HANDLER_CODE = bytes.fromhex("552066217047")  # movs r0, #0x55; movs r1, #0x66; bx lr


def scs(masks: tuple[int, int, int] = (0, 0, 0)) -> tuple[Scs, list[str]]:
    reports: list[str] = []
    s = Scs(Clock(), None, None, reports.append)
    s.read_masks = lambda: masks
    return s, reports


# -- priorities (B1.5.4) -------------------------------------------------------------------------


def test_a_higher_priority_preempts_a_lower_one_and_not_the_reverse() -> None:
    s, _ = scs()
    s.shpr[15 - 4], s.irq_prio[0] = 0x80, 0x40  # SysTick 0x80, IRQ 0 0x40
    s.enabled = 1
    s.active = [15]
    s.soft_pending = 1
    assert s.pick() == (16, False)  # 0x40 < 0x80: nests
    s.active = [16]
    s.soft_pending, s.pend_st = 0, True
    assert s.pick() == (0, True)  # SysTick waits for IRQ 0's handler


def test_equal_priorities_never_nest_and_ties_go_to_the_lower_exception_number() -> None:
    s, _ = scs()
    s.enabled, s.soft_pending, s.pend_st = 1, 1, True
    assert s.pick() == (15, False)  # both 0 in thread mode: SysTick (15) before IRQ 0 (16)
    s.activate(15)
    assert s.pick() == (0, True) and not s.pend_st


def test_the_group_priority_ignores_the_subpriority_bits_of_prigroup() -> None:
    s, _ = scs()
    s.shpr[15 - 4], s.irq_prio[0] = 0x50, 0x40
    s.enabled, s.soft_pending, s.active = 1, 1, [15]
    s.prigroup = 4  # group = bits 7:5: 0x50 and 0x40 are both group 0x40
    assert s.group(0x50) == s.group(0x40) == 0x40 and s.pick() == (0, True)
    s.prigroup = 3  # group = bits 7:4
    assert s.pick() == (16, False)


@pytest.mark.parametrize("masks, taken", [((1, 0, 0), 0), ((0, 0x40, 0), 0), ((0, 0x50, 0), 16),
                                          ((0, 0, 1), 0), ((0, 0, 0), 16)])  # fmt: skip
def test_primask_basepri_and_faultmask_boost_the_execution_priority(masks: tuple[int, int, int],
                                                                    taken: int) -> None:  # fmt: skip
    s, _ = scs(masks)
    s.irq_prio[0], s.enabled, s.soft_pending = 0x40, 1, 1
    assert s.execution_priority(*masks) <= THREAD
    assert s.pick()[0] == taken
    assert s.can_wake() == (masks[1] not in (0x40,) and not masks[2])  # wfi ignores PRIMASK only


def test_the_interrupt_controllers_line_is_irq0_and_only_when_enabled() -> None:
    class Asserting:
        def asserted(self) -> bool:
            return True

    s = Scs(Clock(), Asserting(), None, lambda m: None)  # type: ignore[arg-type]
    assert s.pending() == []  # ISER0 bit 0 clear (reset)
    s.write(0x100, 4, 1)
    assert s.pending() == [16] and s.read(0x200, 4) & 1  # ISPR0 shows the level
    s.write(0x280, 4, 1)
    assert s.pending() == [16]  # ICPR clears only a software pend: the level stays


# -- registers -------------------------------------------------------------------------------------


def test_nvic_set_and_clear_pairs_priorities_and_stir() -> None:
    s, reports = scs()
    s.write(0x100, 4, 0x0000_0006)
    s.write(0x180, 4, 0x0000_0002)
    assert s.read(0x100, 4) == s.read(0x180, 4) == 0x4
    s.write(0xF00, 4, 2)  # STIR: IRQ 2 pending
    assert s.read(0x200, 4) == 0x4
    s.write(0x280, 4, 0x4)
    assert s.read(0x200, 4) == 0
    s.write(0x401, 1, 0xFF)  # IPR0, byte 1 = IRQ 1: 4 bits implemented
    assert s.read(0x401, 1) == 0xF0 and s.read(0x400, 4) == 0xF000
    assert s.read(0x104, 4) == 0 and not reports  # lines 32..: RAZ/WI


def test_scb_vtor_aircr_key_shpr_and_icsr() -> None:
    s, reports = scs()
    assert s.read(0xD00, 4) == 0x410F_C241  # CPUID: Cortex-M4 r0p1
    s.write(0xD08, 4, 0x8000_1234)
    assert s.read(0xD08, 4) == 0x8000_1200  # VTOR bits 31:7
    s.write(0xD0C, 4, 0x0300)  # no VECTKEY: ignored
    assert s.prigroup == 0
    s.write(0xD0C, 4, 0x05FA_0300)
    assert s.prigroup == 3 and s.read(0xD0C, 4) == 0xFA05_0300
    s.write(0xD23, 1, 0xC7)  # SHPR3 byte 3: SysTick
    assert s.priority(15) == 0xC0
    s.write(0xD04, 4, 1 << 28 | 1 << 26)  # PENDSVSET, PENDSTSET
    assert s.pending() == [14, 15] and s.read(0xD04, 4) >> 12 & 0x1FF == 14  # VECTPENDING
    s.write(0xD04, 4, 1 << 27 | 1 << 25)  # PENDSVCLR, PENDSTCLR
    assert s.pending() == [] and not reports


@pytest.mark.parametrize("offset, size, value, name", [
    (0xD24, 4, 0x70000, "SHCSR"), (0xD0C, 4, 0x05FA_0004, "AIRCR"), (0xD04, 4, 1 << 31, "ICSR"),
    (0x100, 2, 1, "NVIC_ISER0"), (0xD88, 4, 0xF << 20, "CPACR"), (0xD90, 4, 1, "MPU_TYPE"),
])  # fmt: skip
def test_an_unmodelled_or_malformed_write_is_reported_by_name(offset: int, size: int, value: int,
                                                              name: str) -> None:  # fmt: skip
    s, reports = scs()
    s.write(offset, size, value)
    (msg,) = reports
    assert f"{name} ({0xE000_E000 + offset:#010x})" in msg and "not modelled" in msg


def test_systick_counts_instructions_reloads_and_sets_countflag() -> None:
    s, _ = scs()
    clock = s.clock
    s.write(0x014, 4, 99)  # RVR: period 100
    s.write(0x018, 4, 5)  # CVR write clears it
    s.write(0x010, 4, 0x7)  # ENABLE | TICKINT | CLKSOURCE
    assert s.poked and s.deadline() == clock.now  # cut at the store, then stamped exactly
    s.stamp(1000)
    clock.now = 1001  # RVR loaded on the instruction after the store, then 1 -> 0 at 1100
    assert s.deadline() == 1100 and s.read(0x018, 4) == 99
    clock.now = 1050
    assert s.read(0x018, 4) == 50
    s.service(1100)
    assert s.pend_st and s.deadline() == 1200
    assert s.read(0x010, 4) & CSR_COUNTFLAG and not s.read(0x010, 4) & CSR_COUNTFLAG  # read clears
    s.service(1450)  # several periods at once (an idle step)
    assert s.deadline() == 1500
    s.write(0x010, 4, 0)
    assert s.deadline() is None


# -- entry and return on the engine (B1.5.6-8) ------------------------------------------------------


def cpu(control: int = 0) -> tuple[Any, unicorn.Uc]:
    isa = isa_for("armv7m")
    uc = unicorn.Uc(isa.uc_arch, isa.uc_mode)
    isa.setup(uc)
    uc.mem_map(VTOR, 0x1_0000)
    for exc in (15, 16):
        uc.mem_write(VTOR + 4 * exc, struct.pack("<I", HANDLER | 1))
    uc.mem_write(HANDLER, HANDLER_CODE)
    uc.mem_write(THREAD_PC, bytes.fromhex("00bf" * 8))
    uc.reg_write_batch([(getattr(ac, f"UC_ARM_REG_R{i}"), 0x1000 + i) for i in range(13)])  # type: ignore[attr-defined]
    uc.reg_write(ac.UC_ARM_REG_LR, 0x8000_3001)
    uc.reg_write(ac.UC_ARM_REG_SP, MSP)
    uc.reg_write(ac.UC_ARM_REG_PSP, PSP)
    uc.reg_write(ac.UC_ARM_REG_CONTROL, control)
    isa.set_pc(uc, THREAD_PC)

    def on_intr(uc: unicorn.Uc, intno: int, _ud: Any) -> None:
        assert intno == isa.return_intno
        isa.exception_return(uc)

    uc.hook_add(unicorn.UC_HOOK_INTR, on_intr)
    return isa, uc


def reg(uc: unicorn.Uc, name: str) -> int:
    value: int = uc.reg_read(getattr(ac, f"UC_ARM_REG_{name}"))
    return value


def test_entry_from_a_task_on_psp_stacks_there_and_runs_the_handler_on_msp() -> None:
    isa, uc = cpu(control=2)
    assert reg(uc, "SP") == PSP
    isa.enter_interrupt(uc, 15)
    assert reg(uc, "PSP") == PSP - 32 and reg(uc, "MSP") == MSP == reg(uc, "SP")
    assert reg(uc, "LR") == EXC_RETURN_THREAD_PSP and reg(uc, "CONTROL") & 2 == 0
    words = struct.unpack("<8I", uc.mem_read(PSP - 32, 32))
    assert words[:6] == (0x1000, 0x1001, 0x1002, 0x1003, 0x100C, 0x8000_3001) and words[6] == THREAD_PC
    uc.emu_start(HANDLER | 1, 0xFFFF_FFFF, count=3)  # bx lr = 0xFFFFFFFD
    assert isa.pc(uc) == THREAD_PC and reg(uc, "CONTROL") & 2 and reg(uc, "SP") == reg(uc, "PSP") == PSP
    assert (reg(uc, "R0"), reg(uc, "IPSR"), isa.scs.active, isa.reports) == (0x1000, 0, [], [])


def test_a_nested_entry_stacks_a_second_frame_and_returns_level_by_level() -> None:
    isa, uc = cpu(control=2)
    isa.enter_interrupt(uc, 15)  # the task's frame on PSP
    uc.emu_start(HANDLER | 1, 0xFFFF_FFFF, count=1)  # the handler runs one instruction
    isa.enter_interrupt(uc, 16)  # pre-empted: a second frame, on MSP
    assert reg(uc, "LR") == EXC_RETURN_HANDLER and reg(uc, "SP") == MSP - 32 and isa.scs.active == [15, 16]
    stacked = struct.unpack("<8I", uc.mem_read(MSP - 32, 32))
    assert stacked[6] == HANDLER + 2 and stacked[7] & 0x1FF == 15 and stacked[5] == EXC_RETURN_THREAD_PSP
    uc.emu_start(HANDLER | 1, 0xFFFF_FFFF, count=3)  # the inner handler returns (0xFFFFFFF1)
    assert isa.pc(uc) == HANDLER + 2 and reg(uc, "IPSR") == 15 and reg(uc, "SP") == MSP
    assert reg(uc, "LR") == EXC_RETURN_THREAD_PSP and isa.scs.active == [15]
    uc.emu_start(isa.pc(uc) | 1, 0xFFFF_FFFF, count=2)  # movs r1; bx lr (0xFFFFFFFD)
    assert isa.pc(uc) == THREAD_PC and reg(uc, "IPSR") == 0 and reg(uc, "SP") == PSP and not isa.reports


@pytest.mark.parametrize("exc_return, why", [
    (0xFFFF_FFF5, "is not 0xfffffff1, 0xfffffff9 or 0xfffffffd"),
    (0xFFFF_FFE9, "floating-point frame"),
    (EXC_RETURN_HANDLER, "no other exception is active"),
    (EXC_RETURN_THREAD_PSP, "finds exception number"),  # the frame is on MSP: PSP holds garbage
])  # fmt: skip
def test_an_illegal_exception_return_is_reported_not_performed(exc_return: int, why: str) -> None:
    isa, uc = cpu()
    uc.mem_write(PSP, struct.pack("<8I", *range(7), 0x0100_0007))  # a frame naming exception 7
    isa.enter_interrupt(uc, 15)
    uc.reg_write(ac.UC_ARM_REG_PC, exc_return)
    assert isa.exception_return(uc)  # handled: reported
    (msg,) = isa.reports
    assert msg.startswith(f"illegal exception return: EXC_RETURN {exc_return:#010x}") and why in msg
    assert isa.scs.active == [15] and reg(uc, "IPSR") == 15  # nothing unstacked


def test_a_return_to_thread_mode_with_another_exception_active_is_illegal() -> None:
    isa, uc = cpu()
    isa.enter_interrupt(uc, 15)
    isa.enter_interrupt(uc, 16)
    uc.reg_write(ac.UC_ARM_REG_PC, EXC_RETURN_THREAD)
    isa.exception_return(uc)
    assert "while exception 15 is still active" in isa.reports[0]
