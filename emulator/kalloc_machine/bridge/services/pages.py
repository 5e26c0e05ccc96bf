"""The `pages` service family: the page allocator (ALLOC_PAGES, FREE_PAGES and the _EXACT pair).

Arguments go to the allocator as the firmware passed them: the allocator checks
flags, orders, sizes and addresses itself and raises a KallocError, which the
doorbell reports (kalloc_machine.bridge.doorbell).

Invariants:
 1. Every allocation and free is counted once in the interrupt-context accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc import Caller

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.services.common import IrqAccounting


class PageServices:
    """Handlers of the `pages` family (module docstring)."""

    def __init__(self, ka: Kalloc, irq: IrqAccounting) -> None:
        self.ka = ka
        self.account = irq.account

    def svc_alloc_pages(self, caller: Caller, gfp: int, order: int, *args: int) -> tuple[int, int]:
        addr = self.ka.alloc_pages(gfp, order, caller)
        self.account(caller, addr, 4096 << order if order < 32 else 0)
        return addr or 0, 0

    def svc_free_pages(self, caller: Caller, addr: int, order: int, *args: int) -> tuple[int, int]:
        self.ka.free_pages(addr, order, caller)
        self.account(caller, addr, 0, free=True)
        return 0, 0

    def svc_alloc_pages_exact(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.alloc_pages_exact(size, gfp, caller)
        self.account(caller, addr, size)
        return addr or 0, 0

    def svc_free_pages_exact(self, caller: Caller, addr: int, size: int, *args: int) -> tuple[int, int]:
        self.ka.free_pages_exact(addr, size, caller)
        self.account(caller, addr, 0, free=True)
        return 0, 0
