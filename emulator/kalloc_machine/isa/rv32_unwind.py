"""RISC-V backtraces for the `Isa` (isa/rv32.py): the walk up GCC's s0 (frame pointer) chain.

Invariants:
 1. `walk_frames` never raises: a frame it cannot read ends the walk.
 2. It reads only through `read_u32` (RAM as the caller sees it), each frame pointer higher up
    the stack than the one before: the walk ends.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc_machine.isa import ReadU32


def walk_frames(
    read_u32: ReadU32,
    pc: int,
    ra: int,
    fp: int,
    depth: int = 16,
    in_ram: Callable[[int], bool] | None = None,
    is_code: Callable[[int], bool] | None = None,
) -> list[int]:
    """Raw PCs: pc, then the return address of each frame up the s0 chain.

    RISC-V GCC with -fno-omit-frame-pointer keeps the saved ra at fp-4 and the
    caller's fp at fp-8, except in a leaf function, which saves only s0, at fp-4.
    With `is_code`, a first frame whose [fp-4] is not code is taken for a leaf:
    its caller is `ra` and the next frame pointer is [fp-4]. The walk stops at
    fp == 0, a frame outside RAM (`in_ram` false or `read_u32` raising), a
    misaligned fp, a zero return address, or a caller fp that does not grow
    (frames live higher up the stack). When no frame could be read, `ra` is the
    only caller.
    """
    pcs = [pc]
    first = True
    while fp and len(pcs) < depth:
        if fp & 3 or (in_ram is not None and not in_ram(fp - 8)):
            break
        try:
            ret, nxt = read_u32(fp - 4), read_u32(fp - 8)
        except (ValueError, IndexError):
            break
        if first and is_code is not None and not is_code(ret) and is_code(ra):
            ret, nxt = ra, ret  # a leaf frame: [fp-4] is the caller's fp
        first = False
        if not ret:
            break
        pcs.append(ret)
        if nxt <= fp:
            break
        fp = nxt
    if len(pcs) == 1 and ra:
        pcs.append(ra)
    return pcs
