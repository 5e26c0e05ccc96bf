"""The "kmalloc" heap: the C library face exactly as kalloc.libc serves it (the kmalloc classes).

Invariants:
 1. Every call is the allocator's own (ka.malloc, ka.free, ...): objects are
    the allocator's malloc records, and the heap holds no state of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.config import TASK, Caller
from kalloc.heaps.base import Heap

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc


class KmallocHeap(Heap):
    """malloc and friends on the kmalloc size classes (8 ... 8192 plus 96 and 192), pages above."""

    name = "kmalloc"

    def __init__(self, ka: Kalloc) -> None:
        super().__init__(ka)
        # The hot pair served by the allocator's own bound methods: no call through this heap
        # (the methods below say the same; Kalloc binds its API once, kalloc.allocator)
        self.malloc = ka.malloc  # type: ignore[method-assign]
        self.free = ka.free  # type: ignore[method-assign]

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.malloc(size, caller)

    def free(self, addr: int, caller: Caller = TASK) -> None:
        self.ka.free(addr, caller)

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.calloc(n, size, caller)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.realloc(addr, size, caller)

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        return self.ka.aligned_alloc(align, size, caller)

    def malloc_usable_size(self, addr: int) -> int:
        return self.ka.malloc_usable_size(addr)
