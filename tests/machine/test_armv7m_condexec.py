"""The Cortex-M engine's IT state read and cleared in place (isa/armv7m_condexec.py).

The settle of hook-mode KASAN, the TLB fill hook and the doorbell (isa/armv7m_it.py, 2) reads
the state through a word of the engine's memory located once per process; here the word is
checked against the library's own register read and write, on fresh engines.
"""

from __future__ import annotations

import copy

import unicorn
from kalloc_machine.isa.armv7m_condexec import condexec
from kalloc_machine.isa.armv7m_it import IT_BITS, ItBlocks
from unicorn import arm_const as ac

T_BIT = 1 << 24


def engine() -> unicorn.Uc:
    return unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)


def epsr(it: int) -> int:
    return T_BIT | (it & 3) << 25 | (it & 0xFC) << 8


def test_the_cell_is_the_engines_it_state_on_every_engine() -> None:
    for _ in range(3):
        uc = engine()
        cell = condexec(uc)
        assert cell is not None and cell.value == 0
        for it in (0x04, 0x18, 0xE3, 0x00):
            uc.reg_write(ac.UC_ARM_REG_EPSR, epsr(it))
            assert cell.value == it
            assert uc.reg_read(ac.UC_ARM_REG_XPSR) & IT_BITS == epsr(it) & IT_BITS


def test_the_in_place_settle_clears_what_the_register_settle_cleared() -> None:
    uc = engine()
    uc.reg_write(ac.UC_ARM_REG_EPSR, epsr(0x4C))
    settle = ItBlocks().settler(uc)
    assert settle.__name__ == "settle_in_place"
    settle()
    xpsr = uc.reg_read(ac.UC_ARM_REG_XPSR)
    assert xpsr & IT_BITS == 0 and xpsr & T_BIT  # the IT bits only: still Thumb


def test_a_snapshot_shares_the_cell() -> None:
    uc = engine()
    it = ItBlocks()
    cell = it.cell(uc)
    assert copy.deepcopy(cell) is cell
