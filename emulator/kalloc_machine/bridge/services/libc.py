"""The `libc` service family: the C library face (malloc, free, calloc, realloc, aligned_alloc).

The calls go to `heap`, the policy behind the C library face (kalloc.heaps,
`--heap`; the allocator itself by default). `heap` may be replaced after install:
recording wraps it (kalloc_machine.bridge.record).

Invariants:
 1. Every allocation and free is counted once in the interrupt-context accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc import Caller, Context

if TYPE_CHECKING:
    from kalloc_machine.bridge.services.common import IrqAccounting


_IRQ = Context.IRQ  # only interrupt-context calls are accounted: the check is inline


class LibcServices:
    """Handlers of the `libc` family (module docstring)."""

    def __init__(self, heap: Any, irq: IrqAccounting) -> None:
        self.heap = heap  # a Kalloc or a kalloc.heaps policy: malloc/free/calloc/realloc/...
        self.account = irq.account

    @property
    def heap(self) -> Any:
        return self._heap

    @heap.setter
    def heap(self, heap: Any) -> None:
        self._heap = heap
        self._malloc = heap.malloc  # the hot pair, bound once per heap (a wrapper set later rebinds)
        self._free = heap.free

    def svc_malloc(self, caller: Caller, size: int, *args: int) -> tuple[int, int]:
        addr = self._malloc(size, caller)
        if caller[0] is _IRQ:  # .context (a tuple index is cheaper)
            self.account(caller, addr, size)
        return addr or 0, 0

    def svc_free(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self._free(ptr, caller)
        if ptr and caller[0] is _IRQ:
            self.account(caller, ptr, 0, free=True)
        return 0, 0

    def svc_calloc(self, caller: Caller, n: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.heap.calloc(n, size, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, n * size)
        return addr or 0, 0

    def svc_realloc(self, caller: Caller, ptr: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.heap.realloc(ptr, size, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, size)
        return addr or 0, 0

    def svc_aligned_alloc(self, caller: Caller, align: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.heap.aligned_alloc(align, size, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, size)
        return addr or 0, 0

    def svc_malloc_usable_size(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        return self.heap.malloc_usable_size(ptr), 0
