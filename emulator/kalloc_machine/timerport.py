"""The CLINT's MMIO as raw ctypes callbacks: the timer tick's ten register accesses, cheaper.

A timer tick of the SDK (firmware/sdk/irq.c) makes ten CLINT accesses: the dispatcher's
`kalloc_timer_cancel` (three mtimecmp stores), the handler's `kalloc_now` (mtime hi, lo, hi,
the first one cut and replayed at a boundary) and `timer_write` (three mtimecmp stores).
Through the binding's `mmio_map` each crossed two Python frames of the binding (an exception
guard and a user-data adapter), then `Machine._mmio_read` / `_mmio_write` and the device's
`read` / `write`. `TimerPort(machine, clint)` maps the CLINT's window with `rawmmio.map_raw`
(guarded both ways): its `read` and `write` are the ctypes callbacks themselves, decode the
aligned 32-bit accesses the SDK makes inline and leave every other access to `Clint.read` /
`Clint.write`.

What they do is exactly what `Machine._mmio_read` / `_mmio_write` do for the CLINT (tests/
machine/test_timer_port.py runs firmware both ways): an mtime read outside a read window
cuts the slice and is replayed at the boundary (`IdleSled.cut(replay=True)`), where time is
exact; a store that moves the deadline before the slice's end cuts the slice after itself
(`Machine.deadline_moved`, the rule's one place for every device).

Invariants:
 1. No exception crosses the ctypes boundary: each callback hands it to `rawmmio.escape`.
 2. The device's registers change as `Clint.write` changes them; nothing else changes here
    but through `IdleSled.cut` (devices.py, invariant 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc_machine.devices import Clint
from kalloc_machine.rawmmio import escape, map_raw

if TYPE_CHECKING:
    from kalloc_machine.machine import Machine

_LO = 0xFFFF_FFFF
_MTIME, _MTIME_HI = Clint.MTIME, Clint.MTIME + 4
_CMP, _CMP_HI = Clint.MTIMECMP, Clint.MTIMECMP + 4


class TimerPort:
    """The raw MMIO callbacks of one machine's CLINT (module docstring)."""

    def __init__(self, machine: Machine, clint: Clint) -> None:
        self.machine, self.clint = machine, clint

    def map(self) -> list[Any]:
        """Map the CLINT's window; the ctypes anchors to keep as long as the engine."""
        c, m = self.clint, self.machine
        return map_raw(m.uc, c.base, c.size, self.read, self.write, guarded=True, guarded_read=True)

    def read(self, _handle: Any, offset: int, size: int, _key: Any) -> int:
        m = self.machine
        try:
            if _MTIME <= offset < _MTIME + 8:
                if not m.loop.read_exact and not m.loop.read_boundary():
                    m.sled.cut(replay=True)  # the load runs again at a boundary, where time is exact
                    return 0
                if size == 4 and offset == _MTIME:
                    return m.clock.now & _LO
                if size == 4 and offset == _MTIME_HI:
                    return m.clock.now >> 32 & _LO
            return self.clint.read(offset, size)
        except BaseException as exc:
            escape(m.uc, exc)
            return 0

    def write(self, _handle: Any, offset: int, size: int, value: int, _key: Any) -> None:
        c, m = self.clint, self.machine
        try:
            if size == 4 and offset == _CMP:
                c.mtimecmp = (c.mtimecmp & ~_LO) | (value & _LO)
            elif size == 4 and offset == _CMP_HI:
                c.mtimecmp = (value & _LO) << 32 | (c.mtimecmp & _LO)
            else:
                c.write(offset, size, value)
                if not c.poked:
                    return
            c.poked = False
            m.deadline_moved(c, c.mtimecmp)  # (NEVER is past every slice's end)
        except BaseException as exc:
            escape(m.uc, exc)
