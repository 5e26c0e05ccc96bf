"""The payload guard of `kalloc lab`: the student's code touching a live payload that is not its business.

An allocator reads and writes its own metadata (headers, footers, free-list links in
*free* blocks); the bytes of a live payload belong to the program. One ranged Unicorn
memory hook over the heap region (never one hook per block, DESIGN.md) sees every load
and store the firmware makes there; the lab's own pattern writes go through the
memoryview and are not seen. A firmware access inside a live payload is allowed only to
the operation's own block (mm_free may link a freed block through its payload,
mm_realloc copies it); any other is the classic overrun of metadata into a payload (a
block sized without room for its tags, a split that writes the next header inside the
previous payload), caught at the access, with its pc and backtrace, before the
garbage it reads sends the allocator astray.

The hook only records the first such access (callbacks never stop the CPU); the lab
raises it when the call returns, or instead of the crash the garbage caused.

Invariants:
 1. Accesses to the current operation's block, to free memory and to metadata are never
    reported, nor (the interrupt round) to the timer handler's blocks; a payload is
    guarded from the moment the lab recorded it until the operation that frees or resizes it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import unicorn

from kalloc_machine.tools.labcheck import IRQ_BASE, Violation

if TYPE_CHECKING:
    from kalloc_machine.tools.lab import LabMachine
    from kalloc_machine.tools.labcheck import HeapRecord


class PayloadGuard:
    """The hook over [record.lo, record.limit) and its first hit (module doc)."""

    def __init__(self, lab: LabMachine, record: HeapRecord) -> None:
        self.lab, self.record = lab, record
        self.current: int | None = None  # the object id of the operation in progress
        self.hit: Violation | None = None
        kinds = unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE
        lab.target.machine.uc.hook_add(kinds, self._access, None, record.lo, record.limit - 1)

    def _access(self, uc: unicorn.Uc, access: int, address: int, size: int, _value: int, _ud: Any) -> None:
        if self.hit is not None:
            return
        rec = self.record
        i = bisect.bisect_right(rec.starts, address + size - 1) - 1
        if i < 0:
            return
        block = rec.blocks[rec.by_start[rec.starts[i]]]
        if block.ident == self.current or block.ident >= IRQ_BASE or address >= block.addr + block.size:
            return  # the operation's own block, the timer handler's (it frees them itself), or no payload
        frames = self.lab.frames(self.lab.target.machine.isa.pc(uc))
        verb = "wrote" if access == unicorn.UC_MEM_WRITE else "read"
        self.hit = Violation(
            "payload-access",
            f"the allocator {verb} {size} bytes at {address:#x}, inside the live payload of object "
            f"{block.ident} [{block.addr:#x}, {block.addr + block.size:#x}): its metadata overlaps a payload",
            [block.as_dict()],
            frames=frames,
        )

    def take(self) -> Violation | None:
        hit, self.hit = self.hit, None
        return hit
