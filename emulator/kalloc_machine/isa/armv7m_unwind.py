"""Cortex-M backtraces from DWARF call-frame information (isa/armv7m.py, "Backtraces").

Thumb GCC's frame pointer r7 points at the bottom of a function's locals, not at the
saved {r7, lr} pair (`push {r7, lr}; sub sp, #n; add r7, sp, #0`), so no r7 chain can
be walked without knowing each frame's size. `Unwinder.from_elf` reads the CFA rows of
.debug_frame once per ELF (pyelftools); `walk_cfi` unwinds from a register state: for
each frame, CFA = register + offset, the saved lr and r7 at their CFA offsets, the
caller's sp = CFA. A return address that is an EXC_RETURN value crosses an exception
frame: the stacked pc (the interrupted instruction, exact) and lr, and sp past the
8-word frame (and its alignment pad, xPSR bit 9).

`CallSiteWalker` is the hypercall's copy of that walk (every Cortex-M hypercall unwinds its
caller: bridge/doorbell.py): the same steps over the stack bank's bytes with the rows cached
per pc, from four registers read in one ctypes call, without the general walk's callbacks. It
answers only where its answer is the general one's (an EXC_RETURN, an address outside the
bank, a `lr` the leaf rule would insert: None, and the caller walks the general way).

Invariants:
 1. `walk_cfi` never raises (a frame it cannot read or unwind ends the walk).
 2. `CallSiteWalker` returns either None or exactly what `walk_cfi` followed by
    FaultReporter.backtrace's leaf rule returns for the same CPU state (the test
    tests/machine/test_callsite_walk.py runs both at every hypercall of the ARM firmwares).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from typing import Any

from unicorn import arm_const as ac

from kalloc_machine.isa import ReadU32
from kalloc_machine.rawregs import batch_reader

XPSR_ALIGN = 1 << 9  # stacked xPSR: the entry padded the frame by 4 bytes
# DWARF register numbers (ARM): r0..r15
DW_R7, DW_SP, DW_LR = 7, 13, 14
Row = tuple[int, int, int, dict[int, int]]  # (pc, cfa register, cfa offset, {register: offset from cfa})
_WALK_REGS = (ac.UC_ARM_REG_PC, ac.UC_ARM_REG_SP, ac.UC_ARM_REG_LR, ac.UC_ARM_REG_R7)
_U32 = struct.Struct("<I")
_CODE_MEMO = 4096  # is_code answers kept (return addresses come from guest memory: bounded)
_WALK_MEMO = 1024  # walks kept by register state (CallSiteWalker.walk); past it, forgotten all at once


class Unwinder:
    """The CFA rows of .debug_frame, by address (empty when the ELF has none)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.fdes: list[tuple[int, int, list[Row]]] = []  # (start, end, rows)
        self._found: dict[int, Row | None] = {}  # pc -> its row: a firmware's call sites are few

    @classmethod
    def from_elf(cls, elf: Any) -> Unwinder:
        from elftools.dwarf.callframe import FDE

        table = cls()
        if not elf.has_dwarf_info():
            return table
        dwarf = elf.get_dwarf_info()
        if not dwarf.has_CFI():
            return table
        fdes = []
        for entry in dwarf.CFI_entries():
            if not isinstance(entry, FDE):
                continue
            start = entry["initial_location"]
            rows: list[Row] = []
            for line in entry.get_decoded().table:
                cfa = line.get("cfa")
                if cfa is None or cfa.reg is None:
                    continue
                saved = {reg: rule.arg for reg, rule in line.items()
                         if isinstance(reg, int) and getattr(rule, "type", None) == "OFFSET"}  # fmt: skip
                rows.append((line["pc"], cfa.reg, cfa.offset, saved))
            if rows:
                fdes.append((start, start + entry["address_range"], rows))
        fdes.sort(key=lambda f: f[0])
        table.fdes = fdes
        table.starts = [f[0] for f in fdes]
        return table

    def call_site_walker(
        self, uc: Any, is_code: Callable[[int], bool], leaf_rule: Callable[[int, int], bool], depth: int = 16
    ) -> CallSiteWalker:
        """The hypercall's fast walk over this table (CallSiteWalker)."""
        return CallSiteWalker(self, uc, is_code, leaf_rule, depth)

    def row(self, pc: int) -> Row | None:
        try:
            return self._found[pc]
        except KeyError:
            found = self._found[pc] = self._lookup(pc)
            return found

    def _lookup(self, pc: int) -> Row | None:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        start, end, rows = self.fdes[i]
        if not start <= pc < end:
            return None
        found = None
        for r in rows:
            if r[0] > pc:
                break
            found = r
        return found


def walk_cfi(
    table: Unwinder,
    read_u32: ReadU32,
    pc: int,
    regs: dict[str, int],
    depth: int = 16,
    in_ram: Callable[[int], bool] | None = None,
    is_code: Callable[[int], bool] | None = None,
) -> list[int]:
    """Raw PCs: pc, then each caller's return address (module docstring, "Backtraces")."""
    pcs = [pc]
    state = {DW_SP: regs.get("sp", 0), DW_R7: regs.get("r7", 0), DW_LR: regs.get("lr", 0)}
    look = pc
    first = True
    try:
        while len(pcs) < depth:
            row = table.row(look)
            if row is None:
                ret = state[DW_LR] if first else 0  # code without CFI: a leaf; its caller is lr
                cfa = state[DW_SP]
                if not ret:
                    break
            else:
                _pc, reg, off, saved = row
                cfa = (state.get(reg, 0) + off) & 0xFFFF_FFFF
                if in_ram is not None and not in_ram(cfa - 8):
                    break
                ret = read_u32(cfa + saved[DW_LR]) if DW_LR in saved else state[DW_LR]
                if DW_R7 in saved:
                    state[DW_R7] = read_u32(cfa + saved[DW_R7])
            first = False
            if ret & 0xFFFF_FFE0 == 0xFFFF_FFE0:  # EXC_RETURN: the exception frame is at cfa,
                frame = regs.get("psp", 0) if ret & 0xF == 0xD else cfa  # or on the process stack
                if in_ram is not None and not in_ram(frame + 28):
                    break
                xpsr = read_u32(frame + 28)
                state[DW_LR] = read_u32(frame + 20)
                look = stacked = read_u32(frame + 24) & ~1
                state[DW_SP] = frame + 32 + (4 if xpsr & XPSR_ALIGN else 0)
                pcs.append(stacked)
                continue
            ret &= ~1
            if not ret or (is_code is not None and not is_code(ret)):
                break
            if row is not None and cfa < state[DW_SP]:  # frames live higher up the stack
                break
            pcs.append(ret)
            if row is None:
                break
            state[DW_SP] = cfa
            look = ret - 1
    except (ValueError, IndexError):
        pass
    if len(pcs) == 1 and regs.get("lr", 0) & ~1 and regs.get("lr", 0) < 0xF000_0000:
        pcs.append(regs["lr"] & ~1)
    return pcs


class CallSiteWalker:
    """`walk_cfi` from the CPU's state for one hypercall, over the stack bank's bytes (module
    docstring, invariant 2). `walk(bank)` -> the raw PCs, or None: take the general walk."""

    def __init__(self, table: Unwinder, uc: Any, is_code: Callable[[int], bool],
                 leaf_rule: Callable[[int, int], bool], depth: int = 16) -> None:  # fmt: skip
        self.table = table
        self.depth = depth
        self._read = batch_reader(uc, _WALK_REGS)
        self._is_code = is_code
        self._code: dict[int, bool] = {}
        self._leaf_rule = leaf_rule  # (pc, lr) -> True when the general backtrace inserts lr
        self._leaf: dict[tuple[int, int], bool] = {}
        self._seen: dict[tuple[int, ...], tuple[struct.Struct, int, tuple[int, ...], tuple[int, ...]]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> CallSiteWalker:
        """Itself: what it keeps are answers of pure functions of the CPU state and RAM, right
        after any restore too, so a snapshot (kalloc_machine.snapshot) shares it."""
        return self

    def code(self, addr: int) -> bool:
        """is_code(addr), remembered for the first _CODE_MEMO addresses asked."""
        known = self._code.get(addr)
        if known is None:
            known = self._is_code(addr)
            if len(self._code) < _CODE_MEMO:
                self._code[addr] = known
        return known

    def walk(self, bank: Any) -> tuple[int, ...] | None:
        """The raw PCs from the CPU's state now, or None (the module docstring's invariant 2).

        A walk is remembered by its registers, with the stack words it read: the next call
        from the same state (a loop's call site) checks those words with one struct unpack
        and answers the same PCs when they are the same (the walk would read and decide
        the same), else walks again."""
        regs = self._read()
        if regs is None:
            return None
        pc, sp, lr, r7 = regs
        key = (pc, sp, lr, r7, bank.base)
        seen = self._seen.get(key)
        if seen is not None and seen[0].unpack_from(bank.buf, seen[1]) == seen[2]:
            return seen[3]
        if lr >= 0xF000_0000:  # an exception return in lr: the general walk
            return None
        reads: list[int] = []
        pcs = self._walk(pc & ~1, sp, lr & ~1, r7, bank, reads)
        if pcs is not None:
            self._remember(key, bank, reads, pcs)
        return pcs

    def _remember(self, key: tuple[int, ...], bank: Any, reads: list[int], pcs: tuple[int, ...]) -> None:
        """Keep a walk with the words it read (offsets in the bank), as one struct with gaps."""
        offsets = sorted(set(reads))
        fmt, last = "<", None
        for off in offsets:
            if last is not None:
                if off < last + 4:
                    return  # overlapping reads (a strange table): not remembered
                fmt += f"{off - last - 4}x" if off > last + 4 else ""
            fmt += "I"
            last = off
        check = struct.Struct(fmt)
        lo = offsets[0] if offsets else 0
        if len(self._seen) >= _WALK_MEMO:
            self._seen.clear()
        self._seen[key] = (check, lo, check.unpack_from(bank.buf, lo), pcs)

    def _walk(  # long: walk_cfi's loop, inlined over the bytes
        self, pc: int, sp: int, lr: int, r7: int, bank: Any, reads: list[int]
    ) -> tuple[int, ...] | None:
        found, row_of, code = self.table._found, self.table.row, self._code
        lo, hi, buf, unpack = bank.base, bank.base + bank.size, bank.buf, _U32.unpack_from
        pcs = [pc]
        look, first, depth = pc, True, self.depth
        while len(pcs) < depth:
            row = found[look] if look in found else row_of(look)
            if row is None:
                ret, cfa = (lr if first else 0), sp
                if not ret:
                    break
            else:
                _pc, reg, off, saved = row
                base = sp if reg == DW_SP else r7 if reg == DW_R7 else lr if reg == DW_LR else 0
                cfa = (base + off) & 0xFFFF_FFFF
                if not lo <= cfa - 8 <= hi - 8:
                    return None  # outside the bank: the general walk (every bank) decides
                at = saved.get(DW_LR)
                if at is None:
                    ret = lr
                elif lo <= cfa + at <= hi - 4:
                    reads.append(cfa + at - lo)
                    ret = unpack(buf, cfa + at - lo)[0]
                else:
                    return None
                at = saved.get(DW_R7)
                if at is not None:
                    if not lo <= cfa + at <= hi - 4:
                        return None
                    reads.append(cfa + at - lo)
                    r7 = unpack(buf, cfa + at - lo)[0]
            first = False
            if ret & 0xFFFF_FFE0 == 0xFFFF_FFE0:  # an exception frame: the general walk
                return None
            ret &= ~1
            if not ret:
                break
            is_code = code.get(ret)
            if not (self.code(ret) if is_code is None else is_code):
                break
            if row is not None and cfa < sp:
                break
            pcs.append(ret)
            if row is None:
                break
            sp = cfa
            look = ret - 1
        if len(pcs) == 1:
            if lr:
                pcs.append(lr)
        elif lr != pcs[1]:  # the general backtrace's leaf rule (faults.py): remembered per (pc, lr)
            key = (pc, lr)
            insert = self._leaf.get(key)
            if insert is None:
                insert = self._leaf_rule(pc, lr)
                if len(self._leaf) < _CODE_MEMO:
                    self._leaf[key] = insert
            if insert:
                pcs.insert(1, lr)
        return tuple(pcs)
