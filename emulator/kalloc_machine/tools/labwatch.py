"""Which store overwrote a payload: `kalloc lab` replays the trace with a write watch on the byte.

When the lab finds a live payload's bytes changed (tools/labcheck.py, "corrupted"), it
knows the first wrong byte and the operation after which the block was last right. The
run is deterministic (tools/lab.py, invariant 1), so replaying the same trace on a fresh
machine reaches the same state: once that operation is done, one ranged Unicorn write
hook over the byte (and the 7 bytes before it, so a wider store that covers it from below
is seen too; the hook range is tested on a store's first byte) records the first firmware
store that covers it — its pc and frame-pointer backtrace, read in the hook, which never
stops the CPU (DESIGN.md: callbacks only record). The lab's own pattern writes go through
the memoryview and fire no hook. The frames name the student's function and line.

Invariants:
 1. The replay performs the same calls as the run it explains; it stops after the
    operation that found the damage.
 2. No hook exists before the block's last pattern write, so no legitimate write is blamed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import unicorn

if TYPE_CHECKING:
    from kalloc.replay.trace import Trace
    from kalloc_machine.tools.lab import LabMachine, LabOptions


def find_writer(
    elf: str, trace: Trace, options: LabOptions, addr: int, since_op: int, until_op: int
) -> list[dict[str, Any]] | None:
    """The frames of the first store to `addr` after operation `since_op` (None when none is seen)."""
    from kalloc_machine.tools.lab import run_trace

    hits: list[list[dict[str, Any]]] = []

    def on_write(uc: unicorn.Uc, _access: int, address: int, size: int, _value: int, lab: LabMachine) -> None:
        if hits or not address <= addr < address + size:
            return
        hits.append(lab.frames(lab.target.machine.isa.pc(uc)))

    def on_op(i: int, lab: LabMachine) -> None:
        if i == since_op:
            lab.target.machine.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, on_write, lab, max(addr - 7, 0), addr)
            watched.append(lab)

    watched: list[LabMachine] = []
    try:
        run_trace(elf, trace, options, stop_after=until_op, on_op=on_op, watch=True)
    except Exception:  # the explanation is a bonus: the violation stands without it
        return None
    return hits[0] if hits else None
