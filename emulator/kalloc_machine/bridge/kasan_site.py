"""Where a compiled-KASAN report points, on an ISA read through its disassembly (Cortex-M).

An `__asan_*_noabort` check reports with its return address; the report names the
load or store the check guarded (GCC emits the call, then the access a few
instructions later through a register that survived the call) or, for a
range-checked string function (ASAN_RANGE), the call itself. kasan.py decodes
RV32 instructions from their bits; any other ISA is read here through the `Isa`
protocol only (`insn_size`, `disassemble`: capstone's text), so a port needs
nothing new:

  access   mnemonic ld*/st* (not ldm/stm/push/pop): its direction from the first
           two letters, its width from the suffix (b 1, h 2, d 8, else 4), its base
           register from the `[base, ...]` operand; a base in FRAME_REGS is the
           frame's own access (the epilogue's, never instrumented)
  branch   b, bl, blx, bx (any condition, .w/.n), cbz, cbnz, tbb, tbh, a pop into
           pc: the guarded access is not past it, the scan stops

Invariants:
 1. Never raises on garbage: an address outside RAM (ValueError from `read`) or
    an instruction capstone cannot read ends the scan with what it found so far.
 2. Same answer as kasan.find_access's rule: the first access of the right
    direction and width within SCAN_INSNS, else the first of the right direction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kalloc_machine.isa import Isa

ReadCode = Callable[[int, int], bytes]

SCAN_INSNS = 12  # as kasan.py: instructions searched after the call
FRAME_REGS = frozenset({"sp", "r7", "fp"})  # Thumb GCC's frame pointer is r7
_COND = r"(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?"
_BRANCH = re.compile(rf"(b|bl|blx|bx|cbz|cbnz|tbb|tbh){_COND}(\.w|\.n)?$")
_ACCESS = re.compile(rf"(ldr|str)(ex)?(s)?(b|h|d)?{_COND}(t)?(\.w|\.n)?$")
_WIDTH = {"b": 1, "h": 2, "d": 8}


class AccessFinder:
    """The guarded access after a check, and the call before a return address, for one ISA."""

    def __init__(self, isa: Isa, read: ReadCode) -> None:
        self.isa, self.read = isa, read

    def _decode(self, pc: int) -> tuple[int, bool | None, int, str]:
        """(length, is_write or None, width (-1: a branch), base register) of the instruction at pc."""
        code = self.read(pc, 4)
        length = self.isa.insn_size(code)
        mnemonic, _, ops = self.isa.disassemble(pc, code).partition(" ")
        if _BRANCH.match(mnemonic) or (mnemonic.startswith("pop") and "pc" in ops):
            return length, None, -1, ""
        m = _ACCESS.match(mnemonic)
        if m is None or "[" not in ops:
            return length, None, 0, ""
        base = ops.split("[", 1)[1].split(",", 1)[0].split("]", 1)[0].strip()
        return length, m[1] == "str", _WIDTH.get(m[4] or "", 4), base

    def find_access(self, start: int, is_write: bool, size: int) -> int | None:
        """The load or store the check returning to `start` guarded (module docstring)."""
        pc, fallback = start, None
        for _ in range(SCAN_INSNS):
            try:
                length, w, width, base = self._decode(pc)
            except (ValueError, IndexError):
                return fallback
            if width < 0:
                break
            if w is is_write and base not in FRAME_REGS:
                if width == size:
                    return pc
                fallback = fallback or pc
            pc += length
        return fallback

    def call_before(self, ret: int) -> int:
        """The call instruction that returns to `ret`: a 4-byte call (Thumb's bl) when the
        instruction 4 bytes before is one, else the 2-byte one before (blx rN)."""
        try:
            code = self.read(ret - 4, 4)
            if self.isa.insn_size(code) == 4 and _BRANCH.match(
                self.isa.disassemble(ret - 4, code).split(" ")[0]
            ):
                return ret - 4
            return ret - 2
        except ValueError:
            return ret
