"""The interrupt round of `kalloc lab` (`--irq`): a timer handler allocates and frees while the trace runs.

The lab driver (firmware/lab/driver.c) arms a one-shot timer whose handler calls the
student's mm_malloc and mm_free in interrupt context, re-arming itself after a seeded
pseudo-random number of instructions (mean `--irq-period`). An allocator that updates
its lists with interrupts on can be interrupted half-way through an update, and the
handler then walks a heap that is not consistent: it gets a block the interrupted call
is about to hand out, or links a block twice. The student's fix is local_irq_save /
local_irq_restore around every heap update (the reference allocators do).

The lab checks the handler's blocks with the trace's, with the same rules
(tools/labcheck.py): after every call it reads the driver's slots, forgets the blocks the
handler freed (the handler itself checked their fill byte first: `lab_irq_bad`), and
after every operation checks each new handler block (aligned, inside the heap, no overlap
with a live block) and records it with its fill, so the contents checks cover it. A
violation that involves a handler block says where the tick that allocated it interrupted
the CPU: the pc the driver saved (mepc), with its function and line.

Deterministic: the timer counts instructions (mtime), so the same ELF, trace, seed and
period give the same ticks at the same pcs, and the same report bytes.

Invariants:
 1. A handler block is in the record exactly while its slot holds it (as of the last read).
 2. Every tick's allocation that survives to the end of an operation is checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kalloc_machine.tools.labcheck import IRQ_BASE, Violation

if TYPE_CHECKING:
    from kalloc_machine.tools.lab import LabMachine
    from kalloc_machine.tools.labcheck import HeapRecord

SLOTS = 8  # LAB_IRQ_SLOTS in driver.c
SLOT = struct.Struct("<IIII")  # addr, size, seq, pc
COUNTERS = ("ticks", "in_call", "seq", "frees", "nulls")  # lab_irq_<name> in driver.c


def fill(seq: int) -> int:
    """The byte the handler writes into its block number `seq` (lab_irq_fill in driver.c)."""
    return (0x5A ^ (seq * 37)) & 0xFF


@dataclass(slots=True)
class Held:
    """A handler block as the driver's slot showed it."""

    seq: int
    addr: int
    size: int
    pc: int
    op: int = -1  # the operation during which the lab first saw it


class IrqRound:
    """The handler's blocks, read from the driver after every call and checked with the trace's."""

    def __init__(self, lab: LabMachine, record: HeapRecord, seed: int, period: int) -> None:
        self.lab, self.record = lab, record
        self.held: dict[int, Held] = {}  # seq -> block, in the record
        self.pending: list[Held] = []  # seen in a slot, not yet checked
        t = lab.target
        t.write_u32("lab_irq_period", period)
        err, _ = lab.call("lab_irq_start", seed & 0xFFFF_FFFF)
        if err:
            raise Violation("init-failed", f"the lab driver could not take the timer interrupt ({err:#x})")

    def _slots(self) -> list[Held]:
        raw = self.lab.target.read("lab_irq_slots", SLOT.size * SLOTS)
        out = []
        for k in range(SLOTS):
            addr, size, seq, pc = SLOT.unpack_from(raw, k * SLOT.size)
            if addr:
                out.append(Held(seq, addr, size, pc))
        return out

    def before_call(self, function: str, args: tuple[int, ...]) -> None:
        pass

    def after_call(self, function: str) -> Violation | None:
        """Forget the blocks the handler freed (it checked them: lab_irq_bad); note its new ones."""
        if function == "lab_irq_start":
            return None
        now = {h.seq: h for h in self._slots()}
        for seq in [s for s in self.held if s not in now]:
            del self.held[seq]
            self.record.remove(IRQ_BASE + seq)
        self.pending = [h for s, h in now.items() if s not in self.held]
        for h in self.pending:
            h.op = self.lab.op
        bad = self.lab.target.read_u32("lab_irq_bad")
        if bad:
            seq = self.lab.target.read_u32("lab_irq_bad_seq")
            v = Violation(
                "corrupted",
                f"the timer handler's block #{seq} was overwritten before the handler freed it: "
                f"the byte at {bad:#x} is not its fill {fill(seq):#04x}",
                addr=bad,
            )
            return v
        return None

    def after_op(self, op: int) -> None:
        """Check and record the handler's blocks that appeared during the operation."""
        rec = self.record
        for h in sorted(self.pending, key=lambda h: h.seq):
            what = f"the timer handler's mm_malloc({h.size}) (its block #{h.seq}, {self.interrupted(h)})"
            try:
                rec.check_new(what, h.addr, h.size)
            except Violation as v:
                v.frames = self.frames(h)
                v.blocks = [{"id": IRQ_BASE + h.seq, "addr": h.addr, "size": h.size}, *v.blocks[1:]]
                raise
            rec.add(IRQ_BASE + h.seq, h.addr, h.size, bytes([fill(h.seq)]) * h.size, op)
            self.held[h.seq] = h
        self.pending = []

    def explain(self, v: Violation) -> None:
        """Say, in a violation that involves a handler block or ended a call, what the round did."""
        for b in v.blocks:
            h = self.held.get(b["id"] - IRQ_BASE)
            if h is not None:
                v.message += (
                    f"; the handler's block #{h.seq} was {self.interrupted(h)} during operation {h.op + 1}"
                )
        if v.kind in ("cpu-fault", "page-fault", "timeout", "stack-overflow", "fault"):
            n = self.counters()
            v.message += (
                f"; under --irq: {n['ticks']:,} ticks so far, {n['in_call']:,} inside a trace operation "
                "(a heap update interrupted half-way leaves the lists inconsistent; compare without --irq)"
            )

    def interrupted(self, h: Held) -> str:
        f = self.lab.symbolizer.frame(h.pc)
        loc = f" ({f['file']}:{f['line']})" if f.get("file") else ""
        return f"allocated by a tick that interrupted {f.get('symbol') or '??'}{loc} at {h.pc:#x}"

    def frames(self, h: Held) -> list[dict[str, Any]]:
        return [self.lab.symbolizer.frame(h.pc)]

    def stop(self) -> dict[str, int]:
        """Disarm the timer; the round's counters."""
        self.lab.call("lab_irq_stop")
        return self.counters()

    def counters(self) -> dict[str, int]:
        """The round's counters (the JSON's `irq`): ticks, in_call, seq (allocations), frees, nulls."""
        t = self.lab.target
        return {name: t.read_u32(f"lab_irq_{name}") for name in COUNTERS}
