"""Thumb-2 decoding for the Cortex-M `Isa` (isa/armv7m.py): instruction sizes, the text of an
instruction for reports, the memory a load or store touches, the `wfi` scan of an ELF's code
(data in code skipped: mapping symbols $d) and the idle sled's encoding (capstone).

`memory_operand(read, pc, regs)` -> (address, width) of the instruction's data transfer. It is
what every access report names (the MMU's page faults and refused accesses, mmu.py; the stack
guard's first access into the guard, bridge/stackguard.py through `isa.accesses`):

  ldr/str of every width, ldrex/strex,   base + index (shifted) + offset; post-indexed: the base
  ldrbt & co. (unprivileged)             itself; pc-relative: from Align(pc + 4, 4)
  ldrd/strd                              the same address, width 8
  push/pop, stm/ldm (ia, db), with or    the lowest address and 4 x the registers listed: push
  without writeback, 16- and 32-bit      and stmdb/ldmdb end at the base (sp for push), pop and
                                         ldm/stm (ia) start at it
  anything else                          None

A transfer wider than a word is made by the CPU as 4-byte words in ascending order (Unicorn's
memory hooks see them so: tests/machine/test_armv7m_access.py); `kalloc_machine.isa.accesses`
splits it. Capstone names r9..r12 sb, sl, fp, ip; the registers are read by the Isa's names.

Invariants:
 1. `memory_operand` and `disassemble` never raise on garbage bytes (`read` may raise
    ValueError for an address outside memory; callers catch it).
 2. `scan_code` reports only 2-byte `wfi` at instruction starts outside data-in-code ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import capstone

from kalloc_machine.isa import CodeScan, ReadCode

WFI = b"\x30\xbf"
IDLE_MARK = b"\xab\xbe"  # bkpt #0xab
SLED_COUNT = b"\x0c\xf1\x01\x0c"  # add.w r12, r12, #1
NOP_W = b"\xaf\xf3\x00\x80"  # nop.w
CS_MODE = capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS
REG_ALIASES = {"sb": "r9", "sl": "r10", "fp": "r11", "ip": "r12"}  # capstone's names -> the Isa's
DESCENDING = ("push", "stmdb", "stmfd", "ldmdb", "ldmea")  # multi-register transfers ending at the base


def b_w(offset: int) -> bytes:
    """`b.w` (T4) by `offset` from its own address + 4, encoded."""
    off = offset & 0x1FF_FFFF
    s, i1, i2 = off >> 24 & 1, off >> 23 & 1, off >> 22 & 1
    j1, j2 = 1 - (i1 ^ s), 1 - (i2 ^ s)
    hw1 = 0xF000 | s << 10 | (off >> 12) & 0x3FF
    hw2 = 0x9000 | j1 << 13 | j2 << 11 | (off >> 1) & 0x7FF
    return hw1.to_bytes(2, "little") + hw2.to_bytes(2, "little")


def insn_size(code: bytes) -> int:
    """4 for a 32-bit Thumb-2 instruction (first halfword 0b11101/0b11110/0b11111), else 2."""
    hw = int.from_bytes(code[:2], "little")
    return 4 if hw >> 11 in (0x1D, 0x1E, 0x1F) else 2


def idle_sled(base: int, length: int) -> bytes:
    """The lap counter (r12 += 1), length-2 `nop.w`, then `b.w` back to base."""
    return SLED_COUNT + NOP_W * (length - 2) + b_w(-4 * (length - 1) - 4)


def _reg(insn: Any, reg: int, regs: dict[str, int]) -> int:
    name = insn.reg_name(reg)
    return regs.get(REG_ALIASES.get(name, name), 0)


class ThumbDecoder:
    """Capstone for one Cortex-M, with the ELF's data-in-code ranges (module docstring)."""

    def __init__(self) -> None:
        self._cs: Any = None
        self._csd: Any = None  # with operand details (memory_operand)
        self.data_ranges: list[tuple[int, int]] = []  # ($d, next mapping symbol) in code sections

    def read_marks(self, elf: Any) -> None:
        """The data-in-code ranges from the ELF's mapping symbols ($d up to the next $t/$a/$d)."""
        symtab = elf.get_section_by_name(".symtab")
        marks = []
        if symtab is not None:
            for sym in symtab.iter_symbols():
                if sym.name in ("$d", "$t", "$a") or sym.name.startswith(("$d.", "$t.", "$a.")):
                    marks.append((sym["st_value"], sym.name[1]))
        marks.sort()
        self.data_ranges = [(a, marks[i + 1][0] if i + 1 < len(marks) else a + 4)
                            for i, (a, kind) in enumerate(marks) if kind == "d"]  # fmt: skip

    def disassemble(self, pc: int, code: bytes) -> str:
        if self._cs is None:
            self._cs = capstone.Cs(capstone.CS_ARCH_ARM, CS_MODE)
        for _addr, _size, mnemonic, op_str in self._cs.disasm_lite(code, pc, 1):
            return f"{mnemonic} {op_str}".strip()
        if len(code) >= 4 and insn_size(code) == 4:
            return f".word {int.from_bytes(code[:4], 'little'):#010x}"
        if len(code) >= 2:
            return f".short {int.from_bytes(code[:2], 'little'):#06x}"
        return "??"

    def memory_operand(self, read: ReadCode, pc: int, regs: dict[str, int]) -> tuple[int, int] | None:
        """(address, width) of the data transfer at pc, or None (module docstring's table)."""
        if self._csd is None:
            self._csd = capstone.Cs(capstone.CS_ARCH_ARM, CS_MODE)
            self._csd.detail = True
        for insn in self._csd.disasm(read(pc, 4), pc, 1):
            op = insn.mnemonic.split(".")[0]
            if op in ("push", "pop") or op.startswith(("stm", "ldm")):
                return self._multiple(insn, op, regs)
            ops = [o for o in insn.operands if o.type == capstone.arm.ARM_OP_MEM]
            if not ops or not op.startswith(("ld", "st")):
                return None
            mem = ops[0].mem
            value = ((pc + 4) & ~3) if insn.reg_name(mem.base) == "pc" else _reg(insn, mem.base, regs)
            if mem.index:
                shift = ops[0].shift.value if ops[0].shift.type == capstone.arm.ARM_SFT_LSL else 0
                value += _reg(insn, mem.index, regs) << shift
            op = op[:-1] if op.endswith("t") else op  # ldrbt & co. (unprivileged): the width before the t
            width = 1 if op.endswith("b") else 2 if op.endswith("h") else 8 if op.endswith("d") else 4
            writeback_post = len(insn.operands) > 2 and insn.operands[-1].type == capstone.arm.ARM_OP_IMM
            return (value + (0 if writeback_post else mem.disp)) & 0xFFFF_FFFF, width
        return None

    @staticmethod
    def _multiple(insn: Any, op: str, regs: dict[str, int]) -> tuple[int, int]:
        """push/pop/stm/ldm: (lowest address, 4 x the registers listed)."""
        if op in ("push", "pop"):
            base, listed = regs.get("sp", 0), len(insn.operands)
        else:  # the first operand is the base register (its writeback changes no address)
            base, listed = _reg(insn, insn.operands[0].reg, regs), len(insn.operands) - 1
        if op in DESCENDING:
            base -= 4 * listed
        return base & 0xFFFF_FFFF, 4 * listed

    def is_data(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.data_ranges)

    def scan_code(self, ranges: Sequence[tuple[int, bytes]]) -> CodeScan:
        """Every 16-bit `wfi` (data in code, mapping symbol $d, skipped); no counter hazards."""
        md = capstone.Cs(capstone.CS_ARCH_ARM, CS_MODE)
        md.skipdata = True
        idle: list[int] = []
        for base, code in ranges:
            at = code.find(WFI)
            if at < 0:
                continue
            for addr, size, _mnemonic, _ops in md.disasm_lite(code, base):
                if size == 2 and code[addr - base : addr - base + 2] == WFI and not self.is_data(addr):
                    idle.append(addr)
        return idle, []
