"""The `slab` and `kmalloc` service families: kmem_cache_* by handle, and kmalloc & co.

A cache handle is untrusted: one that was never created (or was destroyed) is a
`bad-hypercall`. A firmware constructor runs in the firmware: CACHE_CREATE only
tells the allocator there is one (SLAB_KALLOC_CTOR, so constructed objects stay
unpoisoned, as SLUB keeps them), and CACHE_ALLOC's aux says when it must run.

Invariants:
 1. Every allocation and free is counted once in the interrupt-context accounting.
 2. A cache is looked up by handle on every call; nothing here keeps a cache alive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc import Caller, Context
from kalloc.errors import BadArgumentError
from kalloc.slab import SLAB_KALLOC_CTOR, KmemCache
from kalloc_machine.bridge.services.common import guest_cstr

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.services.common import IrqAccounting


_IRQ = Context.IRQ  # only interrupt-context calls are accounted: the check is inline


class CacheServices:
    """Handlers of the `slab` family (module docstring)."""

    def __init__(self, ka: Kalloc, irq: IrqAccounting) -> None:
        self.ka = ka
        self.account = irq.account

    def cache(self, handle: int) -> KmemCache:
        cache = self.ka.cache_by_handle(handle)
        if cache is None:
            raise BadArgumentError(f"cache handle {handle:#x} was never created or was destroyed")
        return cache

    def svc_cache_create(
        self, caller: Caller, name: int, size: int, align: int, flags: int, ctor: int, *args: int
    ) -> tuple[int, int]:
        if ctor:
            flags |= SLAB_KALLOC_CTOR
        cache = self.ka.kmem_cache_create(guest_cstr(self.ka.phys, name, "cache name"), size, align, flags)
        return cache.handle, 0

    def svc_cache_alloc(self, caller: Caller, handle: int, gfp: int, *args: int) -> tuple[int, int]:
        cache = self.cache(handle)
        addr = self.ka.kmem_cache_alloc(cache, gfp, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, cache.size)
        return (addr, int(cache.last_alloc_fresh)) if addr else (0, 0)

    def svc_cache_free(self, caller: Caller, handle: int, obj: int, *args: int) -> tuple[int, int]:
        self.ka.kmem_cache_free(self.cache(handle), obj, caller)
        if caller.context is _IRQ:
            self.account(caller, obj, 0, free=True)
        return 0, 0

    def svc_cache_shrink(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        return self.ka.kmem_cache_shrink(self.cache(handle)), 0

    def svc_cache_destroy(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        if handle == 0:  # kmem_cache_destroy(NULL) is a no-op in Linux
            return 0, 0
        self.ka.kmem_cache_destroy(self.cache(handle), caller)
        return 0, 0


class KmallocServices:
    """Handlers of the `kmalloc` family (module docstring)."""

    def __init__(self, ka: Kalloc, irq: IrqAccounting) -> None:
        self.ka = ka
        self.account = irq.account

    def svc_kmalloc(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.kmalloc(size, gfp, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, size)
        return addr or 0, 0

    def svc_kfree(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self.ka.kfree(ptr, caller)
        if ptr and caller.context is _IRQ:
            self.account(caller, ptr, 0, free=True)
        return 0, 0

    def svc_ksize(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        return self.ka.ksize(ptr), 0

    def svc_krealloc(self, caller: Caller, ptr: int, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.krealloc(ptr, size, gfp, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, size)
        return addr or 0, 0

    def svc_kcalloc(self, caller: Caller, n: int, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.kcalloc(n, size, gfp, caller)
        if caller.context is _IRQ:
            self.account(caller, addr, n * size)
        return addr or 0, 0
