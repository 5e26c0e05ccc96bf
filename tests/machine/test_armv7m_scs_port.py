"""The System Control Space's MMIO through raw ctypes callbacks (isa/armv7m_scsport.py).

A SysTick tick's eight SCS stores no longer cross the binding's two wrapper frames and
`Machine._mmio_write`: the SCS window is mapped with `rawmmio.map_raw`, and the port does what
the machine's generic callbacks did (a poking store whose deadline falls in the slice cuts it).
"""

from __future__ import annotations

from typing import Any

import pytest
import unicorn
from kalloc_machine.isa.armv7m_scs import SCS_BASE
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def test_the_scs_window_is_not_mapped_through_the_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding's `mmio_map` (two wrapper frames per access) maps no part of the SCS; SysTick still
    times the firmware's delays (firmware arm/tests/armv7m_systick.c)."""
    bases: list[int] = []
    mmio_map = unicorn.Uc.mmio_map

    def recorded(self: unicorn.Uc, address: int, size: int, *args: Any) -> None:
        bases.append(address)
        mmio_map(self, address, size, *args)

    monkeypatch.setattr(unicorn.Uc, "mmio_map", recorded)
    s = Session(RunOptions(firmware=str(prebuilt("tests/armv7m_systick", "armv7m")), board="stm32f4"))
    out = s.run()
    assert out.exit_status == 0
    assert bases and SCS_BASE not in bases
    lines = out.report["uart"].splitlines()
    assert any(line.startswith("delay 1000 took") for line in lines) and lines[-1] == "cancelled fired 0"
