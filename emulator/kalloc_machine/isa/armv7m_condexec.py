"""The Cortex-M engine's IT state read and cleared where the engine keeps it: a settle without a call.

A memory hook or TLB fill on an access inside a Thumb IT block leaves the engine's IT state
(`CPUARMState.condexec_bits`) restored; it must be put back to zero (isa/armv7m_it.py, 2).
Through the library that is a register read (~6 k host instructions a hooked access: the
+11.7 % of hook-mode KASAN on Cortex-M, docs/performance.md). `condexec(uc)` is a ctypes
`c_uint32` over the field itself: `.value` is the state (IT[7:0], 0 outside a block), and
writing 0 is what the register write did for a settle (xpsr_write with the IT mask: the field
only; the T bit is 1 on M-profile and stays).

Where it lives is found once per process on a scratch Thumb engine (as rawcount.py finds the
engine's counter): r0-r12 set to distinct values are found as a run of words in the memory a
pointer of the engine struct (`uc->cpu`) points into, which gives (the pointer's offset in the
engine struct, the distance from what it points to to the registers: `env`); then two IT states
written through EPSR are found at one offset of `env` only. Memory is read only inside the
anonymous mappings /proc/self/maps lists readable (~15 ms, most of it the scratch engines). Each
engine is checked before its cell is handed out (its r0-r3 read back through the pointer equal
the library's), else None: callers keep the register path.

Invariant: the cell lives no longer than its engine (the caller keeps it beside the engine; a
snapshot shares it, `Cell.__deepcopy__`); nothing but `condexec_bits` is ever written through it.
"""

from __future__ import annotations

import ctypes
import struct
from bisect import bisect_right
from functools import cache
from typing import Any

import unicorn
from unicorn import arm_const as ac

from kalloc_machine.rawregs import engine_handle

_STRUCT = 16384  # bytes of the engine struct searched for the CPU pointer
_SPAN = 1 << 16  # bytes after a candidate pointer searched for r0-r12 (2.1.4: env is ~41 KB past `cpu`)
_REGS = tuple(getattr(ac, f"UC_ARM_REG_R{i}") for i in range(13))
_MARKS = tuple(0x5A17_0000 | (i * 0x0101 + 0x33) for i in range(13))  # r0-r12 while probing
_IT_PROBES = (0x5C, 0xA8)  # two IT states (IT[7:0]), written through EPSR
_T_BIT = 1 << 24


def _readable() -> tuple[list[int], list[int]]:
    """(starts, ends) of the readable anonymous mappings (heap and mmap'd, where an engine's CPU
    lives; not a file's: the library's code and data) of this process, sorted."""
    spans = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            addrs, perms = fields[:2]
            if perms[0] == "r" and (len(fields) < 6 or fields[5] == "[heap]"):
                lo, hi = (int(a, 16) for a in addrs.split("-"))
                spans.append((lo, hi))
    spans.sort()
    return [lo for lo, _ in spans], [hi for _, hi in spans]


def _room(spans: tuple[list[int], list[int]], addr: int) -> int:
    """Readable bytes from addr on, inside its mapping (0: not mapped readable)."""
    starts, ends = spans
    i = bisect_right(starts, addr) - 1
    return max(ends[i] - addr, 0) if i >= 0 else 0


def _epsr(it: int) -> int:
    return _T_BIT | (it & 3) << 25 | (it & 0xFC) << 8


def _scratch(marks: tuple[int, ...]) -> Any:
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    for reg, mark in zip(_REGS, marks, strict=True):
        uc.reg_write(reg, mark)
    return uc


def _candidates(uc: Any, marks: tuple[int, ...], spans: tuple[list[int], list[int]]) -> list[tuple[int, int]]:
    """[(offset of a pointer in the engine struct, distance from its target to r0-r12)]."""
    base = engine_handle(uc).value  # type: ignore[union-attr]  # _layout checked the binding first
    raw = ctypes.string_at(base, min(_STRUCT, _room(spans, base)))
    pattern = struct.pack("<13I", *marks)
    found = []
    for at in range(0, len(raw) - 8, 8):
        ptr = int.from_bytes(raw[at : at + 8], "little")
        room = min(_SPAN, _room(spans, ptr)) if ptr > 0x10000 else 0
        if room >= len(pattern) and (k := ctypes.string_at(ptr, room).find(pattern)) >= 0:
            found.append((at, k))
    return found


def _env(uc: Any, at: int, k: int) -> int:
    handle: Any = engine_handle(uc)  # _layout and condexec checked the binding first
    return int(ctypes.c_uint64.from_address(handle.value + at).value) + k


@cache
def _layout() -> tuple[int, int, int] | None:
    """(offset of the CPU pointer in the engine struct, env from it, condexec_bits in env), or None."""
    try:
        if engine_handle(unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB)) is None:
            return None
        first, second = _scratch(_MARKS), _scratch(tuple(m ^ 0x00FF_0000 for m in _MARKS))
        spans = _readable()  # after the engines are made: their memory is in it
        again = struct.pack("<13I", *(m ^ 0x00FF_0000 for m in _MARKS))
        for at, k in _candidates(first, _MARKS, spans):
            env = _env(second, at, k)  # the same pointer of another engine: its registers there?
            if _room(spans, env) < 8192 or ctypes.string_at(env, len(again)) != again:
                continue
            found: set[int] | None = None
            for it in _IT_PROBES:
                second.reg_write(ac.UC_ARM_REG_EPSR, _epsr(it))
                words = ctypes.string_at(env, 8192)
                hits = {o for o in range(0, 8188, 4) if int.from_bytes(words[o : o + 4], "little") == it}
                found = hits if found is None else found & hits
            second.reg_write(ac.UC_ARM_REG_EPSR, _epsr(0))
            if found is not None and len(found) == 1:
                return at, k, found.pop()
        return None
    except (OSError, ValueError, unicorn.UcError):
        return None


class Cell(ctypes.c_uint32):
    """A 32-bit word of the engine's memory; a snapshot shares it as it shares the engine."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Cell:
        return self


def condexec(uc: Any) -> Cell | None:
    """The engine's `condexec_bits` as a ctypes object over its memory, or None (module docstring)."""
    layout, handle = _layout(), engine_handle(uc)
    if layout is None or handle is None or not handle.value:
        return None
    at, k, field = layout
    try:
        values = [uc.reg_read(r) for r in _REGS[:4]]  # (the first call initialises a fresh engine's CPU)
        env = _env(uc, at, k)
        if _room(_readable(), env) < field + 4:  # no CPU there (another layout after all)
            return None
    except (OSError, ValueError, unicorn.UcError):
        return None
    if list(struct.unpack("<4I", ctypes.string_at(env, 16))) != values:
        return None
    return Cell.from_address(env + field)
