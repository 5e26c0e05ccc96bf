"""The `vmalloc` service family: vmalloc, vfree, vmap, vunmap over kalloc's page tables.

Nothing is mapped lazily (no demand paging): VMALLOC maps every page now, with a
guard page after the area. VMAP's page array is read from RAM and each entry
must be a page of RAM. The services that take a pointer that may be virtual
(kfree, free, the console, the DMA engine) are guarded in
kalloc_machine.bridge.vmbridge.

Invariants:
 1. Nothing here maps or unmaps a page except through kalloc.vmalloc.
 2. Every vmalloc and vfree is counted once in the interrupt-context accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc import Caller
from kalloc.errors import BadArgumentError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from kalloc.physmem import PhysMem
    from kalloc.vmalloc import Vmalloc
    from kalloc_machine.bridge.services.common import IrqAccounting

VMAP_MAX_PAGES = 1 << 16  # 256 MiB; a count beyond the board's own pages is refused too (garbage)


class VmallocServices:
    """Handlers of the `vmalloc` family (module docstring)."""

    def __init__(self, vm: Vmalloc, phys: PhysMem, irq: IrqAccounting) -> None:
        self.vm = vm
        self.phys = phys
        self.account = irq.account

    def svc_vmalloc(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.vm.vmalloc(size, caller, gfp)
        self.account(caller, addr, size)
        return addr or 0, 0

    def svc_vfree(self, caller: Caller, addr: int, *args: int) -> tuple[int, int]:
        self.vm.vfree(addr, caller)
        if addr:
            self.account(caller, addr, 0, free=True)
        return 0, 0

    def svc_vmap(self, caller: Caller, pages: int, count: int, *args: int) -> tuple[int, int]:
        most = min(VMAP_MAX_PAGES, self.vm.ka.buddy.managed_pages)  # checked before the array is read
        if not 0 < count <= most:
            raise BadArgumentError(f"vmap() of {count} pages (1..{most}: the machine's pages)")
        phys = self.phys
        if pages & 3 or not phys.contains(pages, 4 * count):
            raise BadArgumentError(f"vmap() page array {pages:#x}+{4 * count} is not RAM", addr=pages)
        addrs = [phys.read_u32(pages + 4 * i) for i in range(count)]
        for a in addrs:
            if a & (PAGE_SIZE - 1) or not phys.contains(a, PAGE_SIZE):
                raise BadArgumentError(f"vmap() of {a:#x}, which is not a page of RAM", addr=a)
        return self.vm.vmap([a >> PAGE_SHIFT for a in addrs], caller) or 0, 0

    def svc_vunmap(self, caller: Caller, addr: int, *args: int) -> tuple[int, int]:
        self.vm.vunmap(addr, caller)
        return 0, 0
