"""Unicorn's own instruction counter, read where the engine keeps it: exact slices on Cortex-M.

`uc_emu_start(..., count=n)` counts with a code hook of its own (uc.c, `hook_count_cb`):
each instruction's hook adds one to the engine's `emu_counter` (reset to 0 by every
emu_start) and, once it passes n, asks the engine to stop before that instruction runs. So a
slice that ran out its count normally ends with emu_counter = n + 1. Not always on ARM's
Thumb: inside an IT block Unicorn 2.1.4 forbids the stop (target/arm/translate.c,
`thumb_tr_translate_insn`, sets `no_exit_request` while the block's condexec mask is
non-zero, and `helper_uc_tracecode` reverts a stop asked by a hook flagged
UC_HOOK_FLAG_NO_STOP), so a count that runs out inside a block runs the block to its end
and stops at the first instruction after it: emu_counter - 1 instructions ran, not n. (Also:
an instruction of a block whose condition fails is skipped before its hook, so it is not
counted at all, in any slicing: time on Cortex-M counts the IT block's executed
instructions.) The binding has no call for the counter; this module reads it.

`counter(uc)`: a ctypes `c_size_t` over the engine's `emu_counter` (read `.value` after an
emu_start that ran out its count: the instructions it counted + 1), or None when the
counter cannot be located. Its offset in the engine struct (`struct uc_struct`, uc_priv.h:
`emu_counter` then `emu_count`) is found once per process on a scratch Thumb engine: after
emu_start(count=N) the struct holds (N + 1, N) there, for two different N, at one offset only.

Invariant: the value is only meaningful between emu_starts of a counted slice (or inside one:
the instructions counted so far, the current one included); the object lives no longer
than its engine (the caller keeps it beside the engine it was made for).
"""

from __future__ import annotations

import contextlib
import ctypes
from functools import cache
from typing import Any

from kalloc_machine.rawregs import engine_handle

_SCAN = 4096  # bytes of the engine struct searched (the counter sits ~1.4 KB in on 2.1.4)
_PROBES = (41, 67)  # two counts: one offset must hold (N + 1, N) after each (small: fast to translate)


@cache
def _offset() -> int | None:
    """The byte offset of `emu_counter` in the engine struct, or None (another layout)."""
    import unicorn

    uc: Any = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)  # ctl_: untyped
    handle = engine_handle(uc)
    if handle is None or not handle.value:
        return None
    with contextlib.suppress(AttributeError, unicorn.UcError):  # a small code buffer: the default
        uc.ctl_set_tcg_buffer_size(1 << 20)  # one costs the probe ~10 ms to set up
    base = 0x1000
    uc.mem_map(base, 0x1000)
    uc.mem_write(base, b"\x00\xbf" * 0x800)  # nop
    found: set[int] | None = None
    for n in _PROBES:
        uc.emu_start(base | 1, 0xFFFF_FFFF, count=n)
        raw = ctypes.string_at(handle.value, _SCAN)
        at = {o for o in range(0, _SCAN - 16, 8)
              if int.from_bytes(raw[o:o + 8], "little") == n + 1
              and int.from_bytes(raw[o + 8:o + 16], "little") == n}  # fmt: skip
        found = at if found is None else found & at
    return found.pop() if found and len(found) == 1 else None


def counter(uc: Any) -> ctypes.c_size_t | None:
    """The engine's `emu_counter` as a ctypes object over its memory (module docstring)."""
    offset, handle = _offset(), engine_handle(uc)
    if offset is None or handle is None or not handle.value:
        return None
    return ctypes.c_size_t.from_address(handle.value + offset)
