"""A slice's count of firmware instructions through Unicorn's counted emu_start.

`CountedRun(uc, isa, sled, until)` runs the slices the run loop (runloop.py) plans: `run(pc,
count, ended)` executes `count` firmware instructions from pc, or up to a stop. One emu_start,
unless the CPU ran the sled's real `mret` (sled.py, "Returns"): Unicorn counts it, so the run
goes on (more emu_starts, each for what the slice still owes, from where the last one stopped)
until it has executed `count` firmware instructions: one boundary, the same instructions, stops
and slice ends as one emu_start of `count` firmware instructions. On Cortex-M a count that
runs out inside an IT block runs to the block's end (rawcount.py): `overrun` reads how far.

Unicorn's own counter (`emu_counter`, then its limit `emu_count`: rawcount.py finds the pair)
lets a callback inside the slice know the instructions run so far (`counted`) and move the
running emu_start's end (`move_end`): the CLINT's mtime read takes its boundary in place
(RunLoop.read_boundary). `count` is the running slice's firmware instructions from its start,
as planned or as moved.

Invariants:
 1. `count` and the engine's limit agree while no sled `mret` has run in the slice (`move_end`
    is only called then: the engine counted firmware instructions only).
 2. The engine counter is read only inside or right after a counted emu_start.
 3. A snapshot never copies it (`__deepcopy__`): a copy's counter would not be the engine's.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kalloc_machine.rawcount import counter

if TYPE_CHECKING:
    import unicorn

    from kalloc_machine.isa import Isa
    from kalloc_machine.sled import IdleSled


def _engine_count(uc: Any) -> tuple[ctypes.c_size_t, ctypes.c_size_t] | None:
    """The engine's instruction counter and its limit (`emu_counter`, then `emu_count`: rawcount.py,
    whose probe finds the pair), or None where the counter cannot be located."""
    got = counter(uc)
    if got is None:
        return None
    return got, ctypes.c_size_t.from_address(ctypes.addressof(got) + ctypes.sizeof(got))


class CountedRun:
    """The counted emu_starts of one machine's slices (module docstring)."""

    def __init__(self, uc: unicorn.Uc, isa: Isa, sled: IdleSled, until: int, *, movable: bool) -> None:
        self.uc, self.isa, self.sled, self.until = uc, isa, sled, until
        self.count = 0  # the running slice's firmware instructions from its start (move_end moves it)
        # Cortex-M: the instructions a counted emu_start ran past its count (an IT block runs to its end:
        # rawcount.py), added to the slice; None on RV32 (and where the engine's counter cannot be read)
        reader = getattr(isa, "overrun_reader", None)
        self.overrun: Callable[[int], int] | None = reader(uc) if reader is not None else None
        self._emu = _engine_count(uc) if movable else None  # movable: the machine has a CLINT (RV32)

    def __deepcopy__(self, memo: dict[int, Any]) -> CountedRun:
        """Bound to its engine (the counter's address): a snapshot shares it as it shares the engine
        (snapshot.py); its `count` means something only inside a slice."""
        return self

    @property
    def movable(self) -> bool:
        """Can a callback read the engine's counter and move the slice's end (`counted`, `move_end`)?"""
        return self._emu is not None

    def counted(self) -> int:
        """Inside an emu_start: the instructions it counted so far, the current one included."""
        assert self._emu is not None
        return int(self._emu[0].value)

    def move_end(self, count: int) -> None:
        """Inside the slice's first emu_start, no sled `mret` run yet (invariant 1): the slice now
        executes `count` firmware instructions from its start; the engine stops there."""
        assert self._emu is not None
        self.count = count
        self._emu[1].value = count

    def run(self, pc: int, count: int, ended: Callable[[], bool]) -> int:
        """Run `count` firmware instructions from pc, or up to a stop (module docstring); the
        instructions Unicorn counted beyond the ones it was given that were no firmware
        instruction (the stopped slice subtracts them; else 0, or minus a Cortex-M overrun).
        `ended`: the run is ending (no more emu_starts)."""
        uc, isa, sled = self.uc, self.isa, self.sled
        sled.redirects = 0
        self.count = count
        uc.emu_start(pc | isa.code_bit, self.until, count=count)
        count = self.count  # a read boundary in the slice moved its end (RunLoop.read_boundary)
        if not sled.redirects:
            return 0 if self.overrun is None else -self.overrun(count)  # Cortex-M: ran past an IT block
        total = count  # instructions given to emu_start so far
        while True:
            pc = isa.pc(uc)
            ran = sled.returns_run(pc)
            if sled.stop is not None or ended():
                return ran - (total - count)
            pending = pc == sled.return_at
            owed = count - (total - ran)
            if owed <= 0:
                if pending:  # the slice ended on the sled's mret: its mark was the counted one
                    isa.finish_return(uc)  # type: ignore[attr-defined]  # RISC-V only (return_insn)
                return 0
            total += owed + pending  # the mret it stands on runs first, counted, no firmware's
            uc.emu_start(pc | isa.code_bit, self.until, count=owed + pending)
