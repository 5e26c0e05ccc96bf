"""Compiled KASAN on a student's heap (`kalloc lab --sanitize=kasan`): the shadow knows the live payloads.

The student's file is built with KASAN=1 (`make -C "$(kalloc sdk)" LAB=1 KASAN=1 ...`):
every load and store of *their* code calls the SDK's check against the shadow, inside
the emulated CPU (bridge/kasan.py, compiled mode); the lab driver and mem_sbrk are not
instrumented. To kalloc's allocator the heap region is one live page allocation, all
accessible; the lab then tells the shadow which of its bytes are live payload:

  a block the lab recorded (tools/labcheck.py)   its payload's whole granules poisoned
                                                 (LAB_PAYLOAD) — the program's bytes
  the operation's own block (mm_free, mm_realloc) opened just before the call
  everything else in the heap (headers, footers,
  free blocks and their links, padding)          accessible: the allocator's metadata

so the student's metadata accesses pass and an access of their code inside another
live payload — a header written into the previous payload, a free-list link followed
into a block the program owns, a memcpy past the old block — is kalloc's usual KASAN
report at the access (kind `out-of-bounds`, the instruction, the backtrace). The lab
turns it into the trace's violation, naming the payload from its own record and the
student's function and line.

What the shadow cannot say: a payload's last granule when its size is not a multiple of
8 is left accessible (KASAN's encoding opens a granule's first k bytes, never its last:
the allocator's next header may share it), so an access to those last bytes is seen by
the contents check, not here. The timer handler's blocks (labirq.py) are not poisoned:
the handler frees them itself, inside the student's code.

Invariants:
 1. The shadow of the heap changes only here, between calls (never while the CPU runs).
 2. Only KASAN reports (`sanitizer` kasan-*) filed since the last call become violations.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from kalloc_machine.tools.labcheck import IRQ_BASE, Block, Violation

if TYPE_CHECKING:
    from kalloc.shadow import Shadow
    from kalloc_machine.tools.lab import LabMachine
    from kalloc_machine.tools.labcheck import HeapRecord

LAB_PAYLOAD = 0xF4  # shadow code of a live payload the allocator must not touch (not one of Linux's)
OPENED_BY = ("lab_free", "lab_realloc")  # calls whose first argument is the operation's own block


class NotKasanElf(ValueError):
    """--sanitize=kasan with an ELF whose student code is not instrumented (exit status 3)."""


class LabKasan:
    """The heap's shadow kept by the lab, and the KASAN reports of the student's code."""

    def __init__(self, lab: LabMachine, record: HeapRecord) -> None:
        kasan = lab.target.session.kasan
        if kasan is None or kasan.mode != "compiled":
            raise NotKasanElf(
                f"{lab.target.firmware.name}: --sanitize=kasan needs the student's file built with "
                'KASAN=1 (make -C "$(kalloc sdk)" LAB=1 KASAN=1 APP=/abs/student.c OUT=/abs/student.elf)'
            )
        self.lab, self.record = lab, record
        self.shadow: Shadow = kasan.shadow
        self.errors = lab.target.machine.errors
        self.seen = len(self.errors)
        record.listeners.append(self._on_record)

    def _on_record(self, event: str, block: Block) -> None:
        if block.ident >= IRQ_BASE:
            return
        if event == "add":
            self.shadow.poison(block.addr, block.size, LAB_PAYLOAD, shared_edges=True)
        else:
            self.shadow.unpoison(block.addr, block.size, shared_edges=True)

    def before_call(self, function: str, args: tuple[int, ...]) -> None:
        """Open the operation's own block: mm_free may link it, mm_realloc copies it."""
        if function in OPENED_BY and args:
            ident = self.record.by_start.get(args[0])
            if ident is not None:
                block = self.record.blocks[ident]
                self.shadow.unpoison(block.addr, block.size, shared_edges=True)

    def after_call(self, function: str) -> Violation | None:
        """The first KASAN report filed during the call, as the trace's violation."""
        new = list(self.errors)[self.seen :]
        self.seen = len(self.errors)
        for err in new:
            if str(err.fields.get("sanitizer", "")).startswith("kasan"):
                return self._violation(err)
        return None

    def _violation(self, err: Any) -> Violation:
        access = err.fields.get("access") or {}
        addr, size = access.get("addr", err.addr or 0), access.get("size", 0)
        verb = access.get("type", "access")
        block = self._payload_at(addr, size)
        if block is not None:
            off = max(addr, block.addr) - block.addr
            where = (
                f"{off} bytes inside the live payload of {block.name()} "
                f"[{block.addr:#x}, {block.addr + block.size:#x}): the allocator's code may touch its "
                "metadata and free memory, never a payload the program owns"
            )
            blocks = [block.as_dict()]
        else:
            where, blocks = err.message.split(": ", 1)[-1], []
        insn = err.fields.get("instruction")
        msg = f"{verb} of {size} byte(s) at {addr:#x}: {where}" + (f" ({insn})" if insn else "")
        pcs = [p for p in err.fields.get("backtrace") or [] if p is not None]
        frames = [
            f
            for f in self.lab.symbolizer.trace(pcs, first_is_return=False)
            if f.get("pc") is not None and not self.lab.target.call_sites.holds(f["pc"])
        ]
        v = Violation(err.kind, f"KASAN: {msg}", blocks, frames=frames)
        v.extra = {"sanitizer": err.fields.get("sanitizer"), "instruction": insn, "access": dict(access)}
        return v

    def _payload_at(self, addr: int, size: int) -> Block | None:
        rec = self.record
        i = bisect.bisect_right(rec.starts, addr + max(size, 1) - 1) - 1
        if i < 0:
            return None
        b = rec.blocks[rec.by_start[rec.starts[i]]]
        return b if addr < b.addr + b.size else None
