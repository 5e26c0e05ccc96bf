"""A TLB-fill hook without the Python binding's per-call wrappers: mmu.py's hot path.

Unicorn's Python binding calls a `UC_HOOK_TLB_FILL` callback through an exception guard
taking `*args, **kwargs`, an adapter that appends the user data, and ctypes building a
pointer object and a struct object for the entry on every fill. After each of the
RV32 interrupt entry's and return's TLB flushes (QEMU's `write_mstatus` flushes when
mstatus.MPP changes) the CPU refills its pages through that path, and memory-heavy code
misses on every conflict (mmu.py, "Cost"). `RawFill.create(uc, callback)` registers
`callback(handle, vaddr, access, entry_address, key) -> bool` itself as the ctypes
callback, its entry declared as an address (no conversion), and hands out a struct over
the entry's address (`entry`), made once per address (Unicorn fills an entry on its
stack: the same few addresses every time).

Where the binding's internals differ from Unicorn 2.1.4's (the pinned version),
`create` answers None and the caller uses the binding's `hook_add`.

Invariants:
 1. The callback keeps exceptions in (the binding's guard does the same through
    rawmmio.escape): none crosses the ctypes boundary.
 2. A struct from `entry` is written only inside the fill call that gave its address.
 3. The ctypes callback lives as long as this object (the caller holds it with the engine);
    a copy (a snapshot's) is the object itself.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import unicorn

from kalloc_machine.rawregs import engine_handle

try:  # the binding's library handle and hook handle type (Unicorn 2.1.4's Python binding)
    from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib
except ImportError:  # pragma: no cover - another binding layout
    uclib = uc_hook_h = None  # type: ignore[assignment]

# bool cb(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *result, void *user_data)
_FILL_CFUNC = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                               ctypes.c_void_p, ctypes.c_void_p)  # fmt: skip
RawCallback = Callable[[int, int, int, int, Any], bool]


class TlbEntry(ctypes.Structure):
    """uc_tlb_entry (unicorn.h): the physical address and the permissions of one fill."""

    _fields_ = (("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32))


class RawFill:
    """One raw TLB-fill callback, added over any number of ranges (module docstring)."""

    def __init__(self, uc: unicorn.Uc, handle: Any, callback: RawCallback) -> None:
        self.uc, self._handle = uc, handle
        self._fptr = _FILL_CFUNC(callback)  # invariant 3
        self.handles: set[int] = set()
        self.entries: dict[int, TlbEntry] = {}  # by address: `entry`'s cache

    def __deepcopy__(self, memo: dict[int, Any]) -> RawFill:
        return self  # the engine's hook, like the engine: shared by a snapshot (snapshot.py)

    @classmethod
    def create(cls, uc: unicorn.Uc, callback: RawCallback) -> RawFill | None:
        handle = engine_handle(uc)
        if uclib is None or handle is None or not hasattr(uc, "_hook_exception"):
            return None
        return cls(uc, handle, callback)

    def add(self, begin: int, end: int) -> int:
        """Hook fills of [begin, end] (inclusive, as `hook_add`); the hook's handle."""
        h = uc_hook_h()
        status = uclib.uc_hook_add(self._handle, ctypes.byref(h), unicorn.UC_HOOK_TLB_FILL, self._fptr,
                                   None, ctypes.c_uint64(begin), ctypes.c_uint64(end))  # fmt: skip
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self.handles.add(h.value)
        return int(h.value)

    def remove(self, handle: int) -> None:
        status = uclib.uc_hook_del(self._handle, uc_hook_h(handle))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self.handles.discard(handle)

    def entry(self, address: int) -> TlbEntry:
        """The entry Unicorn asks to fill, at `address` (invariant 2)."""
        got = self.entries.get(address)
        if got is None:
            got = self.entries[address] = TlbEntry.from_address(address)
        return got
