"""Thumb IT blocks seen from a hook: is the CPU inside one, and its IT state after a memory hook.

Unicorn 2.1.4 (QEMU's translator) applies an IT block's conditions when it translates the
block, and keeps the CPU's IT state (`condexec_bits`: xPSR bits 26:25 and 15:10) at zero while
translated code runs, writing it only where the code is left inside a block (translate.c, "A
note on handling of the condexec (IT) bits"). Two things follow for the machine:

 1. A PC written from a hook inside a block is lost (Unicorn checks no exit request there): the
    idle sled cannot be entered (sled.py, `Isa.redirect_lost`). `ItBlocks.lost(uc, pc, synced)`
    answers "inside a block?". In a memory-fault, TLB-fill, interrupt or invalid-instruction
    hook the engine has restored the CPU state at the instruction (`synced`): xPSR's IT bits
    say it, one untyped register read. In an MMIO callback they read 0, so the code before the
    PC is read and decoded (`it_covers`); the answer is memoized by those bytes, so code the
    firmware rewrites is decoded again and nothing needs invalidating.
 2. A memory hook (UC_HOOK_MEM_READ/WRITE: hook-mode KASAN, the stack guard) on an access inside
    a block restores that state too, IT bits included, and the translated code runs on: after
    the block the stale bits made the next block's first instructions conditional, so the
    firmware skipped one (an `ldreq` from the heap under --sanitize=kasan, then a `printf`
    whose format pointer was never loaded). `ItBlocks.settle(uc)`, called at the end of such a
    hook, writes the bits back to zero, what the translated code assumes (tests/machine/
    test_armv7m_it_hooks.py). Checked on Unicorn 2.1.4 only (pinned in pyproject). The state is
    read and cleared in place, one word of the engine's memory (armv7m_condexec.py: located once
    per process, checked per engine), else through xPSR (a library call, ~6 k host instructions).

Invariant: `lost` and `settle` read no guest memory but the 16 bytes before the PC, and write
nothing but xPSR's IT bits, only when they are set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import unicorn
from unicorn import arm_const as ac

from kalloc_machine.isa.armv7m_condexec import Cell, condexec
from kalloc_machine.isa.armv7m_decode import insn_size
from kalloc_machine.rawregs import batch_reader

IT_BITS = 0x0600_FC00  # xPSR's IT[1:0] (26:25) and IT[7:2] (15:10)
WINDOW = 16  # bytes before the PC searched for an IT covering it (a block is at most 4 instructions)
_XPSR = (ac.UC_ARM_REG_XPSR,)


def it_covers(code: bytes) -> bool:
    """Does an IT instruction in `code` cover the instruction right after its end (its block of
    1-4 instructions, walked forward by their sizes)? A halfword that only looks like an IT (the
    second half of a 32-bit instruction) can answer True: the caller then lets the slice run on,
    which is inexact, never wrong."""
    end = len(code)
    for back in range(2, end + 1, 2):
        hw = int.from_bytes(code[end - back : end - back + 2], "little")
        if hw & 0xFF00 != 0xBF00 or not hw & 0xF:
            continue
        at = end - back + 2  # the block's first instruction; its length: 4 - the mask's trailing zeros
        for _ in range(5 - (hw & -hw & 0xF).bit_length()):
            if at >= end:
                if at == end:
                    return True
                break
            at += insn_size(code[at : at + 2]) if at + 2 <= end else 2
    return False


def in_it_block(uc: unicorn.Uc, pc: int) -> bool:
    """Does an IT instruction in the 16 bytes before pc cover the instruction at pc (`it_covers`)?"""
    lo = max(pc - WINDOW, 0)
    try:
        return it_covers(bytes(uc.mem_read(lo, pc - lo)))
    except unicorn.UcError:
        return False


class ItBlocks:
    """One engine's IT-block questions (module docstring); `read_code(addr, n)` reads guest code
    (the machine's RAM view where it has one; ValueError outside it: then the engine's read)."""

    def __init__(self, read_code: Callable[[int, int], bytes] | None = None) -> None:
        self.read_code = read_code
        self.known: dict[bytes, bool] = {}  # it_covers by the code before a PC
        self._xpsr: tuple[Any, Callable[[], tuple[int, ...] | None]] | None = None  # (engine, reader)
        self._cell: tuple[Any, Cell | None] | None = None  # (engine, its IT state in place)

    def xpsr(self, uc: unicorn.Uc) -> int:
        """xPSR (one untyped ctypes call: rawregs.batch_reader)."""
        reader = self._xpsr
        if reader is None or reader[0] is not uc:
            reader = self._xpsr = (uc, batch_reader(uc, _XPSR))
        got = reader[1]()
        return int(got[0]) if got is not None else int(uc.reg_read(ac.UC_ARM_REG_XPSR))

    def cell(self, uc: unicorn.Uc) -> Cell | None:
        """The engine's IT state in place (armv7m_condexec.py), located once per engine, or None."""
        got = self._cell
        if got is None or got[0] is not uc:
            got = self._cell = (uc, condexec(uc))
        return got[1]

    def lost(self, uc: unicorn.Uc, pc: int, synced: bool) -> bool:
        """Inside an IT block? (module docstring, 1)"""
        if synced:
            cell = self.cell(uc)
            return bool(cell.value if cell is not None else self.xpsr(uc) & IT_BITS)
        lo = max(pc - WINDOW, 0)
        try:
            if self.read_code is None:
                raise ValueError("no RAM view")
            code = self.read_code(lo, pc - lo)
        except ValueError:
            return in_it_block(uc, pc)
        known = self.known.get(code)
        if known is None:
            known = self.known[code] = it_covers(code)
        return known

    def settle(self, uc: unicorn.Uc) -> None:
        """From a memory hook: zero the IT bits the engine restored for an access inside a block
        (module docstring, 2); nothing written outside one. Raises nothing (it runs in callbacks)."""
        self.settler(uc)()

    def settler(self, uc: unicorn.Uc) -> Callable[[], None]:
        """`settle` bound to one engine (every hooked access calls it): the engine's IT state read and
        cleared in place where it was located (armv7m_condexec.py), else its xPSR read bound once."""
        cell = self.cell(uc)
        if cell is not None:

            def settle_in_place() -> None:
                if cell.value:
                    cell.value = 0

            return settle_in_place
        read = batch_reader(uc, _XPSR)

        def settle() -> None:
            try:
                got = read()
                x = int(got[0]) if got is not None else int(uc.reg_read(ac.UC_ARM_REG_XPSR))
                if x & IT_BITS:
                    uc.reg_write(ac.UC_ARM_REG_EPSR, x & ~IT_BITS)
            except unicorn.UcError:
                pass  # the engine refused the read or the write: the state stays as the engine left it

        return settle
