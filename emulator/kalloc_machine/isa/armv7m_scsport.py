"""The System Control Space's MMIO as raw ctypes callbacks: a SysTick tick's eight stores, cheaper.

A tick of the Cortex-M SDK (firmware/arm/systick.c) stores to the SCS eight times: the
dispatcher's `kalloc_timer_cancel` (SYST_CSR, ICSR.PENDSTCLR) and the handler's
`kalloc_timer_set` (CSR, ICSR, then `systick_period`'s CSR, RVR, CVR, CSR). Through the
binding's `mmio_map` each crossed two Python frames of the binding (an exception guard and a
user-data adapter) and `Machine._mmio_write` before `Scs.write`. `ScsPort(machine, scs)` maps
the SCS window with `rawmmio.map_raw` (guarded both ways, as timerport.py maps the CLINT):
its `read` and `write` are the ctypes callbacks themselves and do what `Machine._mmio_read` /
`_mmio_write` do for the SCS: a read is `Scs.read`; a store that pokes (starts or moves the
SysTick count) and whose deadline falls inside the running slice cuts the slice after itself
(`Machine.deadline_moved`, the rule's one place), so the count is stamped at the store's exact time.

In place (`_stamp_in_place`): the store that starts SysTick's count (SDK: each
`kalloc_timer_set`, once a tick) is stamped inside the callback at its exact time, the slice's
start + the instructions Unicorn counted so far, the store included (rawcount.py), instead of
cutting the slice: no boundary, no sled. Only where the cut's boundary would do nothing else:
the slice is not already stopping or ending nor a READ_WINDOW (runloop.py: the cut would end
the window, so a later mtime read in it would be cut and exact, not read at the window's
start), no exception is pending in the SCS (the boundary
would take it), the boundaries' devices change nothing before their deadlines (`due_only`), and
the new deadline falls after the slice's end. It counts as the cut it replaces (`RunLoop.cuts`,
the report's `exact_cuts`). Otherwise the store cuts as before. A cut's redirect into the sled
is lost inside a Thumb IT block (Unicorn checks no exit request there); the stamp in place is not.

Invariants:
 1. No exception crosses the ctypes boundary: each callback hands it to `rawmmio.escape`.
 2. The SCS's registers change only through `Scs.write` (isa/armv7m_scs.py, invariant 1);
    nothing else changes here but through `IdleSled.cut`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc_machine.rawcount import counter
from kalloc_machine.rawmmio import escape, map_raw

if TYPE_CHECKING:
    from kalloc_machine.isa.armv7m_scs import Scs
    from kalloc_machine.machine import Machine


class ScsPort:
    """The raw MMIO callbacks of one machine's System Control Space (module docstring)."""

    def __init__(self, machine: Machine, scs: Scs) -> None:
        self.machine, self.scs = machine, scs
        self._counter = counter(machine.uc)  # the engine's instruction count (rawcount.py), or None
        self._in_place = self._stamp_in_place  # bound once: Machine.deadline_moved's alternative to a cut

    def map(self) -> list[Any]:
        """Map the SCS window; the ctypes anchors to keep as long as the engine."""
        s, m = self.scs, self.machine
        return map_raw(m.uc, s.base, s.size, self.read, self.write, guarded=True, guarded_read=True)

    def read(self, _handle: Any, offset: int, size: int, _key: Any) -> int:
        try:
            return self.scs.read(offset, size)
        except BaseException as exc:
            escape(self.machine.uc, exc)
            return 0

    def write(self, _handle: Any, offset: int, size: int, value: int, _key: Any) -> None:
        s, m = self.scs, self.machine
        try:
            s.write(offset, size, value)
            if not s.poked:
                return
            s.poked = False
            m.deadline_moved(s, s.deadline(), self._in_place)
        except BaseException as exc:
            escape(m.uc, exc)

    def _stamp_in_place(self) -> bool:
        """Stamp SysTick's start here, at the store's exact time, when the cut's boundary would do
        nothing else (module docstring, "In place"); False: nothing done, the caller cuts."""
        s, m = self.scs, self.machine
        loop, sled, ctr = m.loop, m.sled, self._counter
        if ctr is None or not s.unstamped or sled.stop is not None or not sled.running or sled.redirects:
            return False
        if loop.ending is not None or loop.interrupted or loop.read_exact or s.pending():
            return False  # (a READ_WINDOW slice: the cut ends the window, later mtime reads cut again)
        if not all(d is s or getattr(d, "due_only", False) for d in loop.serviced):
            return False
        now = m.clock.now + int(ctr.value)  # the slice's start + its instructions up to this store
        if s.zero_after(now) < loop.slice_end:
            return False  # the new deadline needs a boundary inside this slice: the cut makes it
        s.stamp(now)
        loop.cuts += 1
        return True
