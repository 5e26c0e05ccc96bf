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

from tests.machine.ticking import ticking


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


def test_a_systick_start_is_stamped_in_place_not_cut() -> None:
    """bench.elf's compute loop on stm32f4, SysTick every 100k instructions: the handler's
    kalloc_timer_set is stamped inside its store (no boundary, no sled), so a tick costs about two
    slices (was three: the store cut one); it still counts as an exact cut in the report. (The
    times are the cut's: the tick digest of test_armv7m_it_slices.py is unchanged.)"""
    _s, out, slices = ticking("stm32f4")
    ticks = out.result.irq_counts[0]
    assert out.exit_status == 0 and ticks >= 9
    assert slices <= 2 * ticks + 4
    assert out.report["interrupts"]["exact_cuts"] == ticks + 1  # the first start's, then one a tick
