"""The `dma` service family: dma_alloc_coherent / dma_free_coherent and DMA pools by handle.

Results are pairs: the CPU address in `result`, the bus (DMA) address in `aux`.
A pool handle is untrusted, like a cache handle (services/slab.py).

Invariants:
 1. Every allocation and free is counted once in the interrupt-context accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc import Caller
from kalloc.dma import DmaPool
from kalloc.errors import BadArgumentError
from kalloc_machine.bridge.services.common import guest_cstr

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.services.common import IrqAccounting


class DmaServices:
    """Handlers of the `dma` family (module docstring)."""

    def __init__(self, ka: Kalloc, irq: IrqAccounting) -> None:
        self.ka = ka
        self.account = irq.account

    def pool(self, handle: int) -> DmaPool:
        pool = self.ka.pool_by_handle(handle)
        if pool is None:
            raise BadArgumentError(f"DMA pool handle {handle:#x} was never created or was destroyed")
        return pool

    def svc_dma_alloc_coherent(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        got = self.ka.dma_alloc_coherent(size, gfp, caller)
        self.account(caller, got[0] if got else None, size)
        return got if got else (0, 0)

    def svc_dma_free_coherent(
        self, caller: Caller, size: int, cpu: int, dma: int, *args: int
    ) -> tuple[int, int]:
        self.ka.dma_free_coherent(size, cpu, dma, caller)
        self.account(caller, cpu, 0, free=True)
        return 0, 0

    def svc_dma_pool_create(
        self, caller: Caller, name: int, size: int, align: int, boundary: int, *args: int
    ) -> tuple[int, int]:
        pool = self.ka.dma_pool_create(guest_cstr(self.ka.phys, name, "pool name"), size, align, boundary)
        return pool.handle, 0

    def svc_dma_pool_alloc(self, caller: Caller, handle: int, gfp: int, *args: int) -> tuple[int, int]:
        pool = self.pool(handle)
        got = self.ka.dma_pool_alloc(pool, gfp, caller)
        self.account(caller, got[0] if got else None, pool.size)
        return got if got else (0, 0)

    def svc_dma_pool_free(
        self, caller: Caller, handle: int, cpu: int, dma: int, *args: int
    ) -> tuple[int, int]:
        self.ka.dma_pool_free(self.pool(handle), cpu, dma, caller)
        self.account(caller, cpu, 0, free=True)
        return 0, 0

    def svc_dma_pool_destroy(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        if handle == 0:  # dma_pool_destroy(NULL) is a no-op in Linux
            return 0, 0
        self.ka.dma_pool_destroy(self.pool(handle))
        return 0, 0
