"""Cortex-M backtraces from DWARF call-frame information (isa/armv7m.py, "Backtraces").

Thumb GCC's frame pointer r7 points at the bottom of a function's locals, not at the
saved {r7, lr} pair (`push {r7, lr}; sub sp, #n; add r7, sp, #0`), so no r7 chain can
be walked without knowing each frame's size. `Unwinder.from_elf` reads the CFA rows of
.debug_frame once per ELF (pyelftools); `walk_cfi` unwinds from a register state: for
each frame, CFA = register + offset, the saved lr and r7 at their CFA offsets, the
caller's sp = CFA. A return address that is an EXC_RETURN value crosses an exception
frame: the stacked pc (the interrupted instruction, exact) and lr, and sp past the
8-word frame (and its alignment pad, xPSR bit 9).

Invariant: `walk_cfi` never raises (a frame it cannot read or unwind ends the walk).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from kalloc_machine.isa import ReadU32

XPSR_ALIGN = 1 << 9  # stacked xPSR: the entry padded the frame by 4 bytes
# DWARF register numbers (ARM): r0..r15
DW_R7, DW_SP, DW_LR = 7, 13, 14
Row = tuple[int, int, int, dict[int, int]]  # (pc, cfa register, cfa offset, {register: offset from cfa})


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
