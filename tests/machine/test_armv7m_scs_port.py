"""The System Control Space's MMIO through raw ctypes callbacks (isa/armv7m_scsport.py).

A SysTick tick's eight SCS stores no longer cross the binding's two wrapper frames and
`Machine._mmio_write`: the SCS window is mapped with `rawmmio.map_raw`, and the port does what
the machine's generic callbacks did (a poking store whose deadline falls in the slice cuts it).
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.machine import Machine
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def test_systick_stores_skip_the_machines_generic_mmio_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    write, read = Machine._mmio_write, Machine._mmio_read

    def counted_write(self: Machine, uc: Any, offset: int, size: int, value: int, dev: Any) -> None:
        seen.append(dev.type)
        write(self, uc, offset, size, value, dev)

    def counted_read(self: Machine, uc: Any, offset: int, size: int, dev: Any) -> int:
        seen.append(getattr(dev, "type", "doorbell"))
        return read(self, uc, offset, size, dev)

    monkeypatch.setattr(Machine, "_mmio_write", counted_write)
    monkeypatch.setattr(Machine, "_mmio_read", counted_read)
    s = Session(RunOptions(firmware=str(prebuilt("tests/armv7m_systick", "armv7m")), board="stm32f4"))
    out = s.run()
    assert out.exit_status == 0
    assert "scs" not in seen
    lines = out.report["uart"].splitlines()
    assert any(line.startswith("delay 1000 took") for line in lines) and lines[-1] == "cancelled fired 0"
