"""MMIO callbacks without the Python binding's per-call wrappers: the hypercall doorbell's transport.

Unicorn's Python binding calls every MMIO callback through two Python frames: an
exception guard that takes `*args, **kwargs` and an adapter that appends the user
data. On the doorbell, which every hypercall crosses, they are about 2,000 host
instructions per call, 9% of an empty hypercall (callgrind, tools/bench.py's NOP).
`map_raw(uc, base, size, read, write)` maps a range like `uc.mmio_map(base, size,
read, None, write, None)` with ctypes callbacks that call `read`/`write` directly,
under the same guard: an exception escaping them is kept in the binding's slot for
`emu_start` to raise (the first one wins) and the emulation stops, as the binding does.

The callbacks keep the binding's signatures (read(uc, offset, size, None) -> value,
write(uc, offset, size, value, None)), so a machine maps the same methods either way;
where the binding's internals differ from Unicorn 2.1.4's (the pinned version),
`map_raw` falls back to `uc.mmio_map`. A `guarded` write keeps invariant 2 itself (it
catches every exception and hands it to `escape`): it is then the ctypes callback, one
Python frame less per store (the hypercall doorbell), and its first argument is the
engine handle, not the Uc (the binding's fallback still passes the Uc: ignore it).
`guarded_read` is the same for `read` (the CLINT's mtime: timerport.py); a guarded read
answers 0 when it hands an exception to `escape`.

Invariants:
 1. The returned anchors keep the ctypes callbacks alive: the caller holds them as long as
    the engine (Machine.host_buffers).
 2. An exception never crosses the ctypes boundary (it would be printed and lost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import unicorn

from kalloc_machine.rawregs import engine_handle

Read = Callable[[unicorn.Uc, int, int, Any], int]
Write = Callable[[unicorn.Uc, int, int, int, Any], None]

try:  # the binding's ctypes types and library handle (Unicorn 2.1.4's Python binding)
    from unicorn.unicorn_py3.unicorn import MMIO_READ_CFUNC, MMIO_WRITE_CFUNC, uclib
except ImportError:  # pragma: no cover - another binding layout: the binding's own mmio_map
    uclib = None  # type: ignore[assignment]


def escape(uc: unicorn.Uc, exc: BaseException) -> None:
    """An exception out of a raw callback, as the binding's guard keeps it: the first one is raised
    by `emu_start`, and the emulation stops. (A binding without that slot: raised, into its guard.)"""
    if not hasattr(uc, "_hook_exception"):
        raise exc
    if uc._hook_exception is None:
        uc._hook_exception = exc
    uc.emu_stop()


def map_raw(
    uc: unicorn.Uc, base: int, size: int, read: Read, write: Write, *, guarded: bool = False,
    guarded_read: bool = False,
) -> list[Any]:
    """Map [base, base+size) as MMIO served by read/write (module docstring); the anchors to keep.
    guarded: `write` catches every exception itself (into `escape`) and is called directly;
    guarded_read: `read` too."""
    handle = engine_handle(uc)
    if handle is None or not hasattr(uc, "_hook_exception"):
        uc.mmio_map(base, size, read, None, write, None)
        return []

    def fail(exc: BaseException) -> None:
        escape(uc, exc)

    def on_read(_handle: int, offset: int, size: int, _key: int) -> int:
        try:
            return read(uc, offset, size, None)
        except BaseException as exc:
            fail(exc)
            return 0

    def on_write(_handle: int, offset: int, size: int, value: int, _key: int) -> None:
        try:
            write(uc, offset, size, value, None)
        except BaseException as exc:
            fail(exc)

    anchors = [MMIO_READ_CFUNC(read if guarded_read else on_read),
               MMIO_WRITE_CFUNC(write if guarded else on_write)]  # fmt: skip
    status = uclib.uc_mmio_map(handle, base, size, anchors[0], 0, anchors[1], 0)
    if status != unicorn.UC_ERR_OK:
        raise unicorn.UcError(status)
    return anchors
