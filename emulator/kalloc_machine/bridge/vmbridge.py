"""The bridge's virtual-memory guards: virtual pointers handed to services that take physical ones.

The vmalloc services themselves are a service family (bridge/services/vmalloc.py).
`install(bridge, vm, ...)` wraps the services that take a pointer the firmware may
have got from vmalloc or the arena:

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
                    dma_alloc_coherent); `dma_check()` wraps the engine's DmaCheck

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

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kalloc import Caller
from kalloc.errors import BadArgumentError, DmaUnreachableError, InvalidFreeError
from kalloc.live import Allocation
from kalloc.page import PAGE_SIZE
from kalloc.physmem import BadAddress, PhysMem
from kalloc.vmalloc import ARENA_END, ARENA_START, VMALLOC_START, Vmalloc

if TYPE_CHECKING:
    from kalloc_machine.bridge.dmacheck import DmaCheck
    from kalloc_machine.bridge.doorbell import Bridge, Handler

CONSOLE_MAX = 1 << 20  # as CONSOLE_WRITE from RAM
GUARDED = ("CONSOLE_WRITE", "KFREE", "KSIZE", "FREE", "REALLOC")


def in_vmalloc(addr: int) -> bool:
    return VMALLOC_START <= addr < ARENA_START


def in_windows(addr: int) -> bool:
    return VMALLOC_START <= addr < ARENA_END


def _handler(bridge: Bridge, name: str) -> Handler:
    handler = bridge.handler(name)
    if handler is None:
        raise ValueError(f"vmbridge: no {name} service to guard (serve the standard families first)")
    return handler


class VirtualPointerGuards:
    """Wrappers of the GUARDED services, and of the DMA engine's check (module docstring)."""

    def __init__(self, bridge: Bridge, vm: Vmalloc, *, console: Callable[[bytes], None], arena: bool) -> None:
        self.vm = vm
        self.console = console
        self.arena = arena  # --heap arena: the arena window is the C library face's own
        self._console_write = _handler(bridge, "CONSOLE_WRITE")
        self._kfree = _handler(bridge, "KFREE")
        self._ksize = _handler(bridge, "KSIZE")
        self._free = _handler(bridge, "FREE")
        self._realloc = _handler(bridge, "REALLOC")

    def svc_console_write(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        if not in_windows(buf):
            return self._console_write(caller, buf, length)
        if length > CONSOLE_MAX:
            raise BadArgumentError(f"CONSOLE_WRITE of {length} bytes (at most {CONSOLE_MAX})", addr=buf)
        self.console(self.vm.read(buf, length))  # BadAddress at the first unmapped page
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
        if VMALLOC_START <= ptr < ARENA_END:  # in_windows, inline (hot path)
            raise self._wrong_free("kfree", ptr, caller)
        return self._kfree(caller, ptr)

    def svc_ksize(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        if in_windows(ptr):
            raise BadArgumentError(f"ksize() of {ptr:#x}, which is not a kmalloc object (a virtual address)",
                                   addr=ptr)  # fmt: skip
        return self._ksize(caller, ptr)

    def svc_free(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        if VMALLOC_START <= ptr < ARENA_END and (ptr < ARENA_START or not self.arena):  # inline (hot path)
            raise self._wrong_free("free", ptr, caller)
        return self._free(caller, ptr)

    def svc_realloc(self, caller: Caller, ptr: int, size: int, *args: int) -> tuple[int, int]:
        if VMALLOC_START <= ptr < ARENA_END and (ptr < ARENA_START or not self.arena):
            raise self._wrong_free("realloc", ptr, caller)
        return self._realloc(caller, ptr, size)

    # -- the DMA engine -----------------------------------------------------------------------

    def dma_check(self, inner: DmaCheck) -> Callable[[int, int, bool], bool]:
        """The engine's check, refusing virtual addresses before `inner` sees them."""
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
            inner.report(err, addr, length, is_write, None)
            return False

        return check


def install(
    bridge: Bridge, vm: Vmalloc, *, console: Callable[[bytes], None], arena: bool
) -> VirtualPointerGuards:
    """Guard the GUARDED services of `bridge` against virtual pointers (module docstring)."""
    guards = VirtualPointerGuards(bridge, vm, console=console, arena=arena)
    for name in GUARDED:
        bridge.register(name, getattr(guards, "svc_" + name.lower()))
    return guards  # the Session wraps the DMA engine's check with guards.dma_check


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
            yield Allocation(a.addr, a.size, "vmalloc", a.site, a.not_leak, 0, a.npages * PAGE_SIZE)
