"""Batch register reads without the Python binding's per-register work: the Cortex-M's hot reads.

Unicorn 2.1.4's `Uc.reg_read_batch` picks a value class per register in Python and
builds its ctypes arrays on every call: about 5 µs a register on ARM, so the 17
registers a Cortex-M hypercall's backtrace starts from cost more than the rest of the
hypercall (kalloc bench --board stm32f4). `read_batch(uc, regs)` calls the library's
`uc_reg_read_batch` with arrays built once per register tuple: one ctypes call.

Only for registers of at most 32 bits (ARM's core and special registers): each value
slot is 8 bytes, zeroed once, of which the engine writes the low 4. Where the binding's
internals differ from Unicorn 2.1.4's (the pinned version), or the engine answers an
error, the binding's own `reg_read_batch` reads (and raises) as before.
`batch_reader(uc, regs)` is the same read bound once (the hypercall's call-site walk:
isa/armv7m_unwind.py), answering None where `read_batch` would fall back; it calls the
library's function without the binding's declared argument types (ctypes converts each
declared argument in Python: ~40% of the call) and without releasing the GIL (the engine
calls no Python back while it reads), and unpacks the slots with one struct.
`word_reader(uc)` reads one 32-bit word of guest memory the same way (`uc_mem_read` into a
buffer of its own; the binding's `mem_read` builds a string buffer per call): RV32's check of
a marked `mret` at each return (isa/rv32.py).
`write_batch(uc, regs, values)` is the write the same way (`uc_reg_write_batch`; the
binding's costs ~4 µs a register): RV32's interrupt entry and `mret` (isa/rv32.py).

Invariant: a tuple's arrays are reused, never shared across threads (one machine per
thread or process).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Any

try:  # the binding's library handle (Unicorn 2.1.4's Python binding)
    from unicorn.unicorn_py3.unicorn import uclib
except ImportError:  # pragma: no cover - another binding layout
    uclib = None  # type: ignore[assignment]
# uc_reg_read_batch(handle, ids, ptrs, count) as a prototype of no declared arguments (a cdecl
# function takes the four as passed: a c_void_p, two arrays, an int) that keeps the GIL
_READ: Any = (
    ctypes.PYFUNCTYPE(ctypes.c_int)(ctypes.cast(uclib.uc_reg_read_batch, ctypes.c_void_p).value or 0)
    if uclib
    else None
)


def engine_handle(uc: Any) -> Any | None:
    """The engine handle every raw ctypes call here takes (rawmmio, rawfill, isa/rv32_entry too):
    the binding has no public spelling for it (FOREIGN_PRIVATE, in this one place). None: the
    binding is not the layout these calls know (they fall back to the binding's own methods)."""
    return getattr(uc, "_uch", None) if uclib is not None else None


_Arrays = tuple[Any, Any, Any, int]  # (register ids, value slots, pointers to the slots, count)
_arrays: dict[tuple[int, ...], _Arrays] = {}


def _build(regs: tuple[int, ...]) -> _Arrays:
    n = len(regs)
    ids = (ctypes.c_int * n)(*regs)
    vals = (ctypes.c_uint64 * n)()
    ptrs = (ctypes.c_void_p * n)(*[ctypes.addressof(vals) + 8 * i for i in range(n)])
    _arrays[regs] = (ids, vals, ptrs, n)
    return _arrays[regs]


def read_batch(uc: Any, regs: tuple[int, ...]) -> list[int]:
    """The values of `regs` (each at most 32 bits wide), as `uc.reg_read_batch(regs)` gives them."""
    handle = engine_handle(uc)
    if handle is None:
        return list(uc.reg_read_batch(regs))
    ids, vals, ptrs, n = _arrays.get(regs) or _build(regs)
    if _READ(handle, ids, ptrs, n) != 0:  # the untyped call (module docstring)
        return list(uc.reg_read_batch(regs))
    return list(vals)


def batch_reader(uc: Any, regs: tuple[int, ...]) -> Callable[[], tuple[int, ...] | None]:
    """A function reading `regs` (each at most 32 bits) as `read_batch` does, with arrays of its
    own (module docstring); None: the engine refused (the caller reads another way)."""
    handle = engine_handle(uc)
    if _READ is None or handle is None:
        return lambda: tuple(uc.reg_read_batch(regs))
    n, call = len(regs), _READ
    slots = bytearray(8 * n)  # the engine writes the low 4 bytes of each 8-byte slot
    base = ctypes.addressof((ctypes.c_uint64 * n).from_buffer(slots))
    ids = (ctypes.c_int * n)(*regs)
    ptrs = (ctypes.c_void_p * n)(*[base + 8 * i for i in range(n)])
    unpack = struct.Struct(f"<{n}Q").unpack_from

    def read() -> tuple[int, ...] | None:
        return None if call(handle, ids, ptrs, n) else unpack(slots)

    return read


_MEM_READ: Any = (
    ctypes.PYFUNCTYPE(ctypes.c_int)(ctypes.cast(uclib.uc_mem_read, ctypes.c_void_p).value or 0)
    if uclib
    else None
)


def word_reader(uc: Any) -> Callable[[int], int | None]:
    """A function reading the little-endian 32-bit word at a guest address (module docstring);
    None: the engine refused (unmapped), or the binding is not the layout known here."""
    handle = engine_handle(uc)
    if _MEM_READ is None or handle is None:
        return lambda addr: None
    buf = ctypes.create_string_buffer(4)
    call, word = _MEM_READ, struct.Struct("<I").unpack_from

    def read(addr: int) -> int | None:
        return None if call(handle, ctypes.c_uint64(addr), buf, ctypes.c_size_t(4)) else int(word(buf)[0])

    return read


def write_batch(uc: Any, regs: tuple[int, ...], values: Sequence[int]) -> None:
    """Write `values` (each at most 32 bits) to `regs` in one call, as `uc.reg_write_batch` would."""
    handle = engine_handle(uc)
    if handle is None:
        uc.reg_write_batch(list(zip(regs, values, strict=True)))
        return
    ids, vals, ptrs, n = _arrays.get(regs) or _build(regs)
    vals[:] = values
    if uclib.uc_reg_write_batch(handle, ids, ptrs, n) != 0:
        uc.reg_write_batch(list(zip(regs, values, strict=True)))
