"""The bridge's virtual-memory face: vmalloc services, and virtual pointers handed to kalloc.

`install(session)` registers the vmalloc hypercalls on the session's bridge
(emulator/abi.py: VMALLOC, VFREE, VMAP, VUNMAP, NR_FREE_PAGES) and wraps the
services that take a pointer the firmware may have got from vmalloc or the arena:

    CONSOLE_WRITE   a buffer in the windows is read through the page tables, page
                    by page (an unmapped page is a bad-hypercall report, nothing is
                    written)
    KFREE, KSIZE    a vmalloc / arena address is an `invalid-free` (kfree) naming the
                    right function (vfree, free), not "never allocated"
    FREE, REALLOC   an address in the vmalloc window is an `invalid-free` naming vfree
                    (the arena window belongs to `--heap arena`, which frees it itself)
    DMA engine      its registers take physical (bus) addresses: a transfer from or to
                    a virtual address is `dma-unreachable`, naming the area and its
                    allocation site (a vmalloc buffer is physically scattered: use
                    dma_alloc_coherent)

Other pointer arguments (cache and pool names, the BOOTINFO buffer, VMAP's page
array) must be in RAM, as before.

It also gives the leak scan its view of the windows: `VirtualPhys` reads virtual
ranges through the page tables, and `vmalloc_allocations()` makes live vmalloc
areas leak candidates (kmemleak tracks vmalloc too).

Invariants:
 1. A wrapped service behaves exactly as before for every pointer outside the windows.
 2. Nothing here maps or unmaps a page except through kalloc.vmalloc.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kalloc import Caller
from kalloc.errors import BadArgumentError, DmaUnreachableError, InvalidFreeError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.physmem import BadAddress, PhysMem
from kalloc.stats import Allocation
from kalloc.vmalloc import ARENA_END, ARENA_START, VMALLOC_START, Vmalloc

if TYPE_CHECKING:
    from kalloc_machine.session import Session

VMAP_MAX_PAGES = 1 << 16  # 256 MiB: more than any board's RAM, so a bigger count is garbage
CONSOLE_MAX = 1 << 20  # as CONSOLE_WRITE from RAM


def in_vmalloc(addr: int) -> bool:
    return VMALLOC_START <= addr < ARENA_START


def in_windows(addr: int) -> bool:
    return VMALLOC_START <= addr < ARENA_END


class VmServices:
    """Handlers registered on the bridge (module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.bridge = session.bridge
        self.ka = session.ka
        self.vm: Vmalloc = session.vm
        self.arena = session.options.heap == "arena"
        b = self.bridge
        self._console_write = b.svc_console_write
        self._kfree = b.svc_kfree
        self._ksize = b.svc_ksize
        self._free = b.svc_free
        self._realloc = b.svc_realloc

    # -- new services -------------------------------------------------------------------------

    def svc_vmalloc(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.vm.vmalloc(size, caller, gfp)
        self.bridge._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_vfree(self, caller: Caller, addr: int, *args: int) -> tuple[int, int]:
        self.vm.vfree(addr, caller)
        if addr:
            self.bridge._irq_account(caller, addr, 0, free=True)
        return 0, 0

    def svc_vmap(self, caller: Caller, pages: int, count: int, *args: int) -> tuple[int, int]:
        if not 0 < count <= VMAP_MAX_PAGES:
            raise BadArgumentError(f"vmap() of {count} pages (1..{VMAP_MAX_PAGES})")
        phys = self.ka.phys
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

    def svc_nr_free_pages(self, caller: Caller, *args: int) -> tuple[int, int]:
        return self.ka.buddy.free_pages, 0

    # -- services that take a pointer that may be virtual -------------------------------------

    def svc_console_write(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        if not in_windows(buf):
            return self._console_write(caller, buf, length)
        if length > CONSOLE_MAX:
            raise BadArgumentError(f"CONSOLE_WRITE of {length} bytes (at most {CONSOLE_MAX})", addr=buf)
        self.bridge.console(self.vm.read(buf, length))  # BadAddress at the first unmapped page
        return length, 0

    def _wrong_free(self, api: str, ptr: int, caller: Caller) -> InvalidFreeError:
        if in_vmalloc(ptr):
            d = self.vm.describe(ptr)
            right = "vfree()" if (d["area"] or {}).get("kind") != "vmap" else "vunmap()"
            err = InvalidFreeError(f"{api}() of {ptr:#x}, a vmalloc address: release it with {right}",
                                   addr=ptr, site=caller.site)  # fmt: skip
            if d["area"] is not None:
                err.fields["object"] = d["area"]
            if d["alloc_site"]:
                err.fields["alloc_site"] = d["alloc_site"]
            return err
        return InvalidFreeError(f"{api}() of {ptr:#x}, an arena heap address: release it with free()",
                                addr=ptr, site=caller.site)  # fmt: skip

    def svc_kfree(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        if in_windows(ptr):
            raise self._wrong_free("kfree", ptr, caller)
        return self._kfree(caller, ptr)

    def svc_ksize(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        if in_windows(ptr):
            raise BadArgumentError(f"ksize() of {ptr:#x}, which is not a kmalloc object (a virtual address)",
                                   addr=ptr)  # fmt: skip
        return self._ksize(caller, ptr)

    def svc_free(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        if in_vmalloc(ptr) or (in_windows(ptr) and not self.arena):
            raise self._wrong_free("free", ptr, caller)
        return self._free(caller, ptr)

    def svc_realloc(self, caller: Caller, ptr: int, size: int, *args: int) -> tuple[int, int]:
        if in_vmalloc(ptr) or (in_windows(ptr) and not self.arena):
            raise self._wrong_free("realloc", ptr, caller)
        return self._realloc(caller, ptr, size)

    # -- the DMA engine -----------------------------------------------------------------------

    def dma_check(self, inner: Any) -> Any:
        """The engine's check, refusing virtual addresses before `inner` (DmaCheck) sees them."""
        vm = self.vm

        def check(addr: int, length: int, is_write: bool) -> bool:
            if not (in_windows(addr) or in_windows(addr + max(length, 1) - 1)):
                return inner(addr, length, is_write)
            d = vm.describe(addr)
            verb = "write to" if is_write else "read from"
            what = (f"the {d['area']['size']}-byte {d['area']['kind']} area at {d['area']['addr']:#x}"
                    if d["area"] is not None and d["state"] == "mapped" else f"the {d['window']} window")
            err = DmaUnreachableError(
                f"DMA {verb} {addr:#x}+{length}: a virtual address ({what}); the DMA engine takes "
                "physical addresses and a vmalloc buffer is physically scattered: use dma_alloc_coherent()",
                window=d["window"],
            )  # fmt: skip
            if d["area"] is not None:
                err.fields["object"] = d["area"]
            if d["alloc_site"]:
                err.fields["alloc_site"] = d["alloc_site"]
            if hasattr(inner, "_report"):
                inner._report(err, addr, length, is_write, None)
            else:
                self.session.machine.report(err)
            return False

        return check


def install(session: Session) -> VmServices:
    """Register the vmalloc services and the virtual-pointer checks on session.bridge."""
    svc = VmServices(session)
    reg = session.bridge.register
    for name in ("VMALLOC", "VFREE", "VMAP", "VUNMAP", "NR_FREE_PAGES", "CONSOLE_WRITE", "KFREE", "KSIZE",
                 "FREE", "REALLOC"):  # fmt: skip
        reg(name, getattr(svc, "svc_" + name.lower()))
    return svc  # the Session wraps the DMA engine's check with svc.dma_check


# -- the leak scan's view of the windows ---------------------------------------------------------


class _PageBank:
    __slots__ = ("end",)

    def __init__(self, end: int) -> None:
        self.end = end


class VirtualPhys:
    """PhysMem's `bank_of` / `view` as kalloc.kmemleak uses them, over RAM and the windows.

    A virtual address is one "bank" up to the end of its page, viewed through the page
    tables; an unmapped page has no bank (the scan stops there).
    """

    def __init__(self, phys: PhysMem, vm: Vmalloc) -> None:
        self.phys = phys
        self.vm = vm

    def bank_of(self, addr: int) -> Any:
        if not in_windows(addr):
            return self.phys.bank_of(addr)
        if self.vm.translate(addr) is None:
            return None
        return _PageBank((addr | (PAGE_SIZE - 1)) + 1)

    def view(self, addr: int, n: int) -> memoryview:
        if not in_windows(addr):
            return self.phys.view(addr, n)
        pa = self.vm.translate(addr)
        if pa is None:
            raise BadAddress(f"virtual address {addr:#x} is not mapped")
        return self.phys.view(pa, n)


def vmalloc_allocations(vm: Vmalloc) -> Iterator[Allocation]:
    """Live vmalloc areas as leak-scan objects (vmap areas map pages someone else owns)."""
    for addr in sorted(vm.areas):
        a = vm.areas[addr]
        if a.kind == "vmalloc":
            yield Allocation(a.addr, a.size, "vmalloc", a.site, False, 0, a.npages * PAGE_SIZE)
