"""The reports of the TLB-fill hook (mmu.py): a page fault in the vmalloc windows, a refused access.

`page_fault_error(machine, vm, vaddr, verb, pc)` is the `page-fault` error of a fill the
tables refused: the exact byte and width the instruction touched (decoded from it, the
page when it cannot be), the state of the page (guard page of an area, freed area, hole,
above the arena's top), the nearest area with its allocation (and free) site, the
instruction, the registers and the backtrace. `access_error(machine, page, access)` is the
`cpu-fault` of an access the identity map forbids (a store to the idle sled, a jump into
a device or the doorbells), at the byte the instruction touched.

Invariant: both only read (registers, guest memory, the tables): called inside the fill
hook, where the registers are the faulting instruction's, they change no state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import unicorn

from kalloc.errors import KallocError, PageFaultError

if TYPE_CHECKING:
    from kalloc.vmalloc import Vmalloc
    from kalloc_machine.machine import Machine

PAGE_SHIFT = 12
VERB = {unicorn.UC_MEM_READ: "read", unicorn.UC_MEM_WRITE: "write", unicorn.UC_MEM_FETCH: "fetch"}
_STATE_TEXT = {
    "guard": "the guard page after a vmalloc area (an overflow past its end)",
    "freed": "a vmalloc area that was freed with vfree() (a use after vfree)",
    "arena-top": "the arena window above the arena's committed top",
    "hole": "a part of the vmalloc window that was never mapped",
    "mapped": "a mapped page (the TLB entry was stale)",
}


def access_error(m: Machine, page: int, access: int) -> KallocError:
    """A cpu-fault for an access the identity map forbids, at the byte the instruction touched."""
    verb = VERB.get(access, "access")
    pc = m.isa.pc(m.uc)
    if verb == "fetch":
        return m.faults.access_error(verb, pc, None, pc)
    addr, size = exact_address(m, pc, page, m.isa.read_regs(m.uc))
    return m.faults.access_error(verb, addr, size, pc)


def page_fault_error(m: Machine, vm: Vmalloc, vaddr: int, verb: str, pc: int) -> PageFaultError:
    """The page-fault error of a refused fill of `vaddr` by the instruction at pc (module docstring)."""
    regs = m.isa.read_regs(m.uc)
    if verb == "fetch":  # the PC is the target; the call site is in ra
        pc = vaddr
    regs["pc"] = pc
    size = None
    if verb != "fetch":
        vaddr, size = exact_address(m, pc, vaddr, regs)
    d = vm.describe(vaddr)  # of the exact byte, so offset and text name it, not its page
    what = _STATE_TEXT.get(d["state"], d["state"])
    area = d["area"]
    text = f"{verb} at {vaddr:#x}: {what}"
    if area is not None:
        rel = "past the start" if d["offset"] >= 0 else "before the start"
        text += (f"; {d['offset'] if d['offset'] >= 0 else -d['offset']} bytes {rel} of the "
                 f"{area['size']}-byte {area['kind']} area at {area['addr']:#x}")  # fmt: skip
    fields: dict[str, Any] = {
        "pc": pc,
        "instruction": m.faults.instruction_at(pc) if verb != "fetch" else "??",
        "registers": regs,
        "access": {"type": verb, "addr": vaddr, **({"size": size} if size else {})},
        "window": d["window"],
        "state": d["state"],
        "describe": text,
    }
    if verb == "fetch":
        ra = regs[m.isa.link_reg]
        fields["backtrace"] = [vaddr, *m.backtrace(ra, regs)] if ra else [vaddr]
    else:
        fields["backtrace"] = m.backtrace(pc, regs)
    if area is not None:
        fields["area"] = area
        fields["offset"] = d["offset"]
    if d["alloc_site"]:
        fields["alloc_site"] = d["alloc_site"]
    if d["free_site"]:
        fields["free_site"] = d["free_site"]
    return PageFaultError(f"page fault: {text}", addr=vaddr, **fields)


def exact_address(m: Machine, pc: int, page: int, regs: dict[str, int]) -> tuple[int, int | None]:
    """The byte address and width the instruction at pc touched in `page` (else page, None)."""
    try:
        got = m.isa.memory_operand(m.phys.read, pc, regs)
    except ValueError:
        return page, None
    if got is None:
        return page, None
    addr, width = got
    if addr >> PAGE_SHIFT == page >> PAGE_SHIFT or (addr + width - 1) >> PAGE_SHIFT == page >> PAGE_SHIFT:
        return max(addr, page), width
    return page, None
