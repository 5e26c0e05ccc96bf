"""Uninitialised-read hints of `kalloc lab --uninit`: the student's code reading heap bytes nothing wrote.

One ranged Unicorn memory hook over the heap region (reads and writes; callbacks only
record, DESIGN.md) keeps one flag per byte: *defined* once a store of the firmware or
a pattern write of the lab covered it. Bytes start undefined (what mem_sbrk hands out
has never been written), and a payload becomes undefined again when the program frees
it (before mm_free runs: the program's data is dead; what mm_free stores there, its
free-list links, is defined by those stores). When the lab records a payload it defines
[payload, payload + size) (its pattern) and the padding up to the next multiple of the
alignment (an allocator may copy whole aligned words).

A load by the student's own code (a function whose source is not the SDK's or the lab
driver's) of a byte still undefined is a hint, not an error: the value it read is
garbage that happens to be whatever the page held — typically the fresh payload
mm_malloc just carved and read before anyone wrote it (memcpy(old, fresh, n) with the
arguments swapped, a calloc that tests bytes before clearing them), or mm_realloc
copying more than the old payload (past its block into free memory). Copies made by the
SDK's memcpy/memmove are not uses (as Memcheck: copying an undefined value is not an
error), so they are never hints; KASAN (labkasan.py) sees such a copy when it runs into
a live payload.

One hint per instruction (pc): the first occurrence, with its operation, and a count.
The trace goes on; `kalloc lab`'s exit status does not change.

Invariants:
 1. The hook never stops the CPU and never writes guest memory.
 2. A hint names a load by the student's code of bytes no store and no lab write defined.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import unicorn

from kalloc_machine.tools.labcheck import Block

if TYPE_CHECKING:
    from kalloc_machine.tools.lab import LabMachine
    from kalloc_machine.tools.labcheck import HeapRecord


@dataclass(slots=True)
class Hint:
    """One instruction of the student's that read undefined heap bytes."""

    pc: int
    op: int  # 0-based operation of the first occurrence (-1: mm_init)
    message: str
    frames: list[dict[str, Any]]
    count: int = 1
    blocks: list[dict[str, int]] = field(default_factory=list)


class InitTracker:
    """The defined-byte map of the heap region and the hints (module doc)."""

    def __init__(self, lab: LabMachine, record: HeapRecord) -> None:
        self.lab, self.record = lab, record
        self.lo = record.lo
        self.defined = bytearray(record.limit - record.lo)
        self.hints: dict[int, Hint] = {}
        self._student: dict[int, bool] = {}  # pc -> is the student's own code
        record.listeners.append(self._on_record)
        kinds = unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE
        lab.target.machine.uc.hook_add(kinds, self._access, None, record.lo, record.limit - 1)

    def _on_record(self, event: str, block: Block) -> None:
        if event == "add":
            end = -(-(block.addr + block.size) // self.record.align) * self.record.align
            self._set(block.addr, end - block.addr, 1)

    def _set(self, addr: int, n: int, value: int) -> None:
        off = max(addr - self.lo, 0)
        end = min(addr + n - self.lo, len(self.defined))
        if end > off:
            self.defined[off:end] = bytes([value]) * (end - off)

    def before_call(self, function: str, args: tuple[int, ...]) -> None:
        if function == "lab_free" and args:
            ident = self.record.by_start.get(args[0])
            if ident is not None:
                b = self.record.blocks[ident]
                self._set(b.addr, b.size, 0)

    def after_call(self, function: str) -> None:
        return None

    def _access(self, uc: unicorn.Uc, access: int, address: int, size: int, _value: int, _ud: Any) -> None:
        off = address - self.lo
        if access == unicorn.UC_MEM_WRITE:
            self.defined[off : off + size] = b"\x01" * size
            return
        if all(self.defined[off : off + size]):
            return
        pc = self.lab.target.machine.isa.pc(uc)
        hint = self.hints.get(pc)
        if hint is not None:
            hint.count += 1
        elif self._is_student(pc):
            self.hints[pc] = self._hint(pc, address, size)

    def _is_student(self, pc: int) -> bool:
        known = self._student.get(pc)
        if known is None:
            f = self.lab.symbolizer.frame(pc)
            known = self._student[pc] = bool(f.get("file")) and not str(f["file"]).startswith("firmware/")
        return known

    def _hint(self, pc: int, address: int, size: int) -> Hint:
        where, blocks = self._where(address)
        frames = self.lab.frames(pc)
        fn = frames[0].get("symbol") if frames else None
        msg = (
            f"{fn or '??'} read {size} byte(s) at {address:#x} that nothing has written{where}: "
            "an uninitialised value"
        )
        return Hint(pc, self.lab.op, msg, frames, blocks=blocks)

    def _where(self, address: int) -> tuple[str, list[dict[str, int]]]:
        """Where the bytes are, from the lab's record: in, or just past, a block the lab knows."""
        rec = self.record
        if address >= rec.brk:
            return " (beyond the heap's break)", []
        i = bisect.bisect_right(rec.starts, address) - 1
        if i < 0:
            return "", []
        b = rec.blocks[rec.by_start[rec.starts[i]]]
        off = address - b.addr
        if off < b.size:
            return f", {off} bytes inside the payload of {b.name()}", [b.as_dict()]
        return f", {off - b.size} bytes past the end of {b.name()}'s {b.size}-byte payload", [b.as_dict()]

    def report(self, place: Any) -> list[dict[str, Any]]:
        """The hints as report entries, in the order they first happened (`place`: op -> its fields)."""
        out = []
        for h in sorted(self.hints.values(), key=lambda h: (h.op, h.pc)):
            top = h.frames[0] if h.frames else {}
            out.append(
                {
                    "kind": "uninit-read",
                    "severity": "warning",
                    "message": h.message,
                    **place(h.op),
                    "count": h.count,
                    "blocks": h.blocks,
                    "pc": h.pc,
                    "symbol": top.get("symbol"),
                    "location": {"file": top.get("file"), "line": top.get("line")},
                    "backtrace": h.frames,
                }
            )
        return out
