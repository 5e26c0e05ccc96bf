"""What `kalloc lab` knows of a student's heap, kept in Python: the live blocks, their contents, the rules.

The lab never trusts the student's allocator (firmware is hostile) nor the lab
driver's variables the student's code can overwrite: after every operation it checks,
against this record, what the allocator handed out:

- aligned: every payload a multiple of the lab's alignment (8 or 16);
- inside the heap: [payload, payload + size) within [heap lo, break), the break read
  from the driver and itself checked (it only grows, never past the region);
- no overlap: with any other live payload (a sorted list of starts, bisect);
- contents: the lab writes a pattern of its own into every payload it is handed
  (`pattern`: a function of the object id, so a block moved onto another reads
  wrong) and verifies it when the block is freed or resized, in the blocks next to
  every operation's block, and in every live block at the end of the trace; a
  realloc must keep min(old, new) bytes and a calloc must hand out zeros.

Blocks the timer handler of the interrupt round holds (tools/labirq.py) are recorded
too, with ids from IRQ_BASE (IRQ_BASE + the handler's allocation number), so every
rule above applies between them and the trace's blocks.

`request_lines` maps each request of a trace to its line in the trace file.

`Violation` is one broken rule, with the blocks involved; lab.py adds where it was
(the operation and trace line, the student's function and line).

Invariants:
 1. Pure bookkeeping over a read/write pair: nothing here runs the machine.
 2. A block is recorded only after every check of its operation passed; the lab
    writes only inside blocks that passed them (never outside the heap).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kalloc.replay.trace import Trace

_TABLE = random.Random(0x1AB).randbytes(8192)
IRQ_BASE = 1_000_000_000  # ids of the timer handler's blocks: IRQ_BASE + its allocation number


def pattern(ident: int, size: int, start: int = 0) -> bytes:
    """The bytes the lab writes into object `ident`'s payload, from offset `start` to `size`."""
    if size <= start:
        return b""
    rot = (ident * 2654435761 + 17) % 4096
    need = size + 1
    reps = (need + rot) // len(_TABLE) + 1
    data = (_TABLE * reps)[rot : rot + size]
    return data[start:]


@dataclass(slots=True)
class Block:
    """A live payload as the lab knows it: object id, address, requested size, expected bytes."""

    ident: int
    addr: int
    size: int
    data: bytes

    def as_dict(self) -> dict[str, int]:
        return {"id": self.ident, "addr": self.addr, "size": self.size}

    def name(self) -> str:
        """How reports name it: 'object 12', or 'the timer handler's block #3'."""
        if self.ident >= IRQ_BASE:
            return f"the timer handler's block #{self.ident - IRQ_BASE}"
        return f"object {self.ident}"


Listener = Callable[[str, Block], None]  # ("add" | "remove", block), after the record changed


@dataclass(slots=True)
class Violation(Exception):
    """A broken rule: `kind` (docs/teaching.md's table), a message, the blocks involved, and where
    the bytes first differ (`addr`, for contents) so the lab can find the store that wrote them."""

    kind: str
    message: str
    blocks: list[dict[str, int]] = field(default_factory=list)
    addr: int | None = None
    since_op: int | None = None  # contents: the op after which the bytes were last right
    frames: list[dict[str, Any]] = field(default_factory=list)  # where it happened, when known
    extra: dict[str, Any] = field(default_factory=dict)  # more keys of the report entry (KASAN's access)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class HeapRecord:
    """The live blocks of one trace run, and the heap bounds seen so far."""

    align: int
    read: Callable[[int, int], bytes]
    lo: int = 0
    brk: int = 0
    limit: int = 0  # one past the last byte of the reserved region
    blocks: dict[int, Block] = field(default_factory=dict)
    starts: list[int] = field(default_factory=list)  # sorted payload starts
    by_start: dict[int, int] = field(default_factory=dict)  # start -> ident
    written_at: dict[int, int] = field(default_factory=dict)  # ident -> op of its last lab write
    payload: int = 0  # live payload bytes
    peak_payload: int = 0
    peak_brk: int = 0
    listeners: list[Listener] = field(default_factory=list)  # the shadow, the uninit tracker

    # -- the heap's bounds ---------------------------------------------------------------------
    def set_break(self, brk: int, lo: int) -> None:
        """The driver's lo and break after an operation, checked (they are student-writable)."""
        if lo != self.lo:
            raise Violation(
                "heap-corrupted",
                f"the heap's start moved from {self.lo:#x} to {lo:#x} "
                "(the student's code wrote over the lab driver's variables)",
            )
        if brk < self.brk or brk > self.limit:
            raise Violation(
                "heap-corrupted",
                f"the heap's break went from {self.brk:#x} to {brk:#x}, outside "
                f"[{self.brk:#x}, {self.limit:#x}]: mem_sbrk never does that "
                "(the student's code wrote over the lab driver's variables)",
            )
        self.brk = brk
        self.peak_brk = max(self.peak_brk, brk - self.lo)

    # -- a payload handed out ---------------------------------------------------------------------
    def check_new(self, what: str, addr: int, size: int, ignore: int | None = None) -> None:
        """The rules for a payload just returned by `what` (alignment, bounds, overlap)."""
        if addr % self.align:
            raise Violation(
                "misaligned",
                f"{what} returned {addr:#x}, not a multiple of {self.align}",
                [{"id": -1, "addr": addr, "size": size}],
            )
        if addr < self.lo or addr + size > self.brk:
            raise Violation(
                "outside-heap",
                f"{what} returned [{addr:#x}, {addr + size:#x}), outside the heap "
                f"[{self.lo:#x}, {self.brk:#x})",
                [{"id": -1, "addr": addr, "size": size}],
            )
        other = self._overlapping(addr, max(size, 1), ignore)
        if other is not None:
            raise Violation(
                "overlap",
                f"{what} returned [{addr:#x}, {addr + size:#x}), which overlaps "
                f"{'live ' if other.ident < IRQ_BASE else ''}{other.name()} "
                f"[{other.addr:#x}, {other.addr + other.size:#x})",
                [{"id": -1, "addr": addr, "size": size}, other.as_dict()],
            )

    def _overlapping(self, addr: int, size: int, ignore: int | None) -> Block | None:
        i = bisect.bisect_left(self.starts, addr + size)  # blocks starting before our end
        for j in (i - 1, i - 2):  # the one just before, and (when it is ignored) the one before it
            if j < 0:
                break
            b = self.blocks[self.by_start[self.starts[j]]]
            if b.ident == ignore:
                continue
            return b if b.addr + max(b.size, 1) > addr else None
        return None

    def add(self, ident: int, addr: int, size: int, data: bytes, op: int) -> None:
        block = Block(ident, addr, size, data)
        self.blocks[ident] = block
        bisect.insort(self.starts, addr)
        self.by_start[addr] = ident
        self.written_at[ident] = op
        if ident < IRQ_BASE:  # the handler's blocks are checked, not scored
            self.payload += size
            self.peak_payload = max(self.peak_payload, self.payload)
        for listen in self.listeners:
            listen("add", block)

    def remove(self, ident: int) -> Block:
        block = self.blocks.pop(ident)
        i = bisect.bisect_left(self.starts, block.addr)
        del self.starts[i]
        del self.by_start[block.addr]
        if ident < IRQ_BASE:
            self.payload -= block.size
        for listen in self.listeners:
            listen("remove", block)
        return block

    # -- contents ---------------------------------------------------------------------------------------
    def verify(self, block: Block, when: str) -> None:
        """The block still holds what the lab last wrote (Violation "corrupted" otherwise)."""
        got = self.read(block.addr, block.size)
        if got == block.data:
            return
        off = next(i for i in range(block.size) if got[i] != block.data[i])
        raise Violation(
            "corrupted",
            f"{block.name()} [{block.addr:#x}, {block.addr + block.size:#x}) "
            f"was overwritten {when}: byte {off} ({block.addr + off:#x}) is "
            f"{got[off]:#04x}, the lab wrote {block.data[off]:#04x}",
            [block.as_dict()],
            addr=block.addr + off,
            since_op=self.written_at[block.ident],
        )

    def neighbours(self, addr: int) -> list[Block]:
        """The live blocks just below and just above `addr` in address order."""
        i = bisect.bisect_left(self.starts, addr)
        out = []
        for j in (i - 1, i, i + 1):
            if 0 <= j < len(self.starts) and self.starts[j] != addr:
                out.append(self.blocks[self.by_start[self.starts[j]]])
        return out

    def verify_around(self, addr: int, when: str) -> None:
        for b in self.neighbours(addr):
            self.verify(b, when)

    def verify_all(self, when: str) -> None:
        for start in self.starts:
            self.verify(self.blocks[self.by_start[start]], when)

    def summary(self) -> dict[str, Any]:
        return {"live": len(self.blocks), "payload": self.payload}


def request_lines(path: str | None, trace: Trace) -> list[int | None]:
    """The file line of each request of `trace` (None when the trace has no file)."""
    if path is None:
        return [None] * len(trace.ops)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [None] * len(trace.ops)
    lines = [i + 1 for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if trace.format.startswith("malloc-lab"):
        lines = lines[4:]
    elif trace.format == "kalloc":
        body = text.splitlines()
        lines = [n for n in lines[1:] if not body[n - 1].strip().startswith("#")]
    return [*lines[: len(trace.ops)], *[None] * (len(trace.ops) - len(lines))]
