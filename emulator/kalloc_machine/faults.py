"""Fault reports of the machine: the error a CPU fault becomes, and the backtrace.

`FaultReporter(isa, uc, phys, firmware, regions)` turns the CPU's state at a fault into a
`CpuFaultError` with the fields the JSON report shows:

    pc           where it happened (for a fetch fault: the bad target)
    instruction  the instruction at pc, disassembled by the ISA ("??" outside RAM)
    registers    every general register by name, pc included (`Isa.read_regs`)
    backtrace    raw PCs: pc, then return addresses (`backtrace`, below)
    access       {type, addr, size} for a memory fault

`access_error(access, addr, size, pc)` is the error of a memory access the machine refused,
named exactly: what lives at the address (`region`: RAM, a device's MMIO registers, the
hypercall doorbells, the idle sled, or nothing) and what was not allowed there, e.g.
"instruction fetch from 0x10000000 in the uart device's MMIO registers: not executable
memory" (a jump into a device), "read of 4 bytes at unmapped address 0x0". Built inside
the hook that saw the access (the registers are the faulting instruction's), or after a
slice raised (`memory_fault`, the fallback: sled.py).

`backtrace(pc, regs)` is the frame-pointer walk of the ISA (`Isa.backtrace`) over
guest RAM, with one fix-up the walk cannot do alone: a leaf's epilogue may restore
the frame pointer before the faulting instruction, so the walk starts at the caller's
caller; the return-address register still names the direct caller then, and is put
back. The machine, the MMU's page-fault report and the KASAN hook all use it.

Invariants:
 1. Building a report never raises on guest garbage: unreadable frames end the walk,
    code outside RAM disassembles as "??".
 2. A report reads the registers once (one batch read) unless the caller passes them.
 3. The reporter holds no state of its own (snapshots share it as they share Unicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import unicorn
from unicorn import UcError

from kalloc.errors import CpuFaultError

if TYPE_CHECKING:
    from kalloc.physmem import PhysMem
    from kalloc_machine.elf import Firmware
    from kalloc_machine.isa import Isa

ACCESS = {  # Unicorn memory-hook access type -> (verb, what went wrong)
    unicorn.UC_MEM_READ_UNMAPPED: ("read", "unmapped"),
    unicorn.UC_MEM_WRITE_UNMAPPED: ("write", "unmapped"),
    unicorn.UC_MEM_FETCH_UNMAPPED: ("fetch", "unmapped"),
    unicorn.UC_MEM_READ_PROT: ("read", "protected"),
    unicorn.UC_MEM_WRITE_PROT: ("write", "protected"),
    unicorn.UC_MEM_FETCH_PROT: ("fetch", "protected"),
}

MemFault = tuple[int, int, int, int]  # (Unicorn access type, addr, size, pc) from the mem hook


class FaultReporter:
    """Builds fault errors and backtraces from the live CPU state (module docstring)."""

    def __init__(self, isa: Isa, uc: unicorn.Uc, phys: PhysMem, firmware: Firmware,
                 regions: list[tuple[int, int, str]] | None = None) -> None:  # fmt: skip
        self.isa = isa
        self.uc = uc
        self.phys = phys
        self.firmware = firmware
        self.regions = regions or []  # (start, end, what) of everything mapped outside RAM
        from kalloc_machine.sled import call_stop_window

        lo, hi = call_stop_window(isa.sled_base)  # a harness call's return address ends a walk as code

        def is_code(addr: int) -> bool:
            return firmware.is_code(addr) or lo <= addr < hi

        self.is_code = is_code

    def region(self, addr: int) -> str | None:
        """What lives at addr ("RAM (bank dma)", "the uart device's MMIO registers", ...), None: nothing."""
        bank = self.phys.bank_of(addr)
        if bank is not None:
            return f"RAM (bank {bank.name})"
        return next((what for lo, hi, what in self.regions if lo <= addr < hi), None)

    def backtrace(self, pc: int, regs: dict[str, int] | None = None, depth: int = 16) -> list[int]:
        """The frame-pointer backtrace of the CPU's current state (or `regs`), starting at pc:
        at most `depth` frames from the walk (the leaf rule below may add one)."""
        isa, phys, fw = self.isa, self.phys, self.firmware
        regs = regs or isa.read_regs(self.uc)
        ra = regs[isa.link_reg]
        in_ram = lambda a: phys.contains(a, 8)  # noqa: E731
        pcs = isa.backtrace(phys.read_u32, pc, regs, depth, in_ram=in_ram, is_code=self.is_code)
        # A leaf's epilogue may restore s0 before the faulting instruction: the walk then
        # starts at the caller's caller. ra still returns into the direct caller; in any
        # other state ra is either pcs[1] or points back into the faulting function.
        if len(pcs) > 1 and ra != pcs[1] and fw.is_code(ra):
            here, there = fw.symbol_at(pc), fw.symbol_at(ra - 1)
            if here is None or there is None or here[0] != there[0]:
                pcs.insert(1, ra)
        return pcs

    def instruction_at(self, pc: int) -> str:
        """The instruction at pc as text, or "??" when pc is not in RAM."""
        bank = self.phys.bank_of(pc)
        if bank is None:
            return "??"
        code = self.phys.read(pc, min(4, bank.end - pc))
        if pc in self.firmware.wfi_pcs and code.startswith(self.isa.idle_mark):  # sled.py marks each wfi
            return "wfi"
        return self.firmware.disassemble(pc, code)

    def cpu_fault(self, message: str, pc: int, access: dict[str, Any] | None = None) -> CpuFaultError:
        """A cpu-fault error at pc with the registers, instruction and backtrace."""
        regs = self.isa.read_regs(self.uc)
        regs["pc"] = pc
        return CpuFaultError(
            message,
            addr=access["addr"] if access else pc,
            pc=pc,
            instruction=self.instruction_at(pc),
            registers=regs,
            backtrace=self.backtrace(pc, regs),
            access=access,
        )

    def not_code(self, pc: int) -> str:
        """"" when pc is in the firmware's code; else what is there, for a trap's message (a jump
        into data runs data as instructions: RAM is executable)."""
        if self.firmware.is_code(pc):
            return ""
        sym = self.firmware.symbol_at(pc)
        obj = f", {sym[0]}+{sym[1]:#x}" if sym else ""
        return f" ({pc:#x} is not code but {self.region(pc) or 'nothing'}{obj}: a jump into data?)"

    def access_error(self, access: int | str, addr: int, size: int | None, pc: int) -> CpuFaultError:
        """The error of an access the machine refused (module docstring): `access` is Unicorn's
        memory-hook type or a verb ("read", "write", "fetch"); `size` None when unknown."""
        verb = access if isinstance(access, str) else ACCESS.get(access, ("access", ""))[0]
        where = self.region(addr)
        acc: dict[str, Any] = {"type": verb, "addr": addr, **({"size": size} if size else {})}
        if verb == "fetch":  # pc is the target; ra is most likely the call site (jalr)
            link = self.isa.link_reg
            regs = self.isa.read_regs(self.uc)
            what = (f"unmapped address {addr:#x}: nothing is there" if where is None
                    else f"{addr:#x} in {where}: not executable memory")  # fmt: skip
            why = f"a jump or call there; {link} = {regs[link]:#x}"
            err = self.cpu_fault(f"instruction fetch from {what} ({why})", addr, acc)
            if regs[link]:
                err.fields["backtrace"] = [addr, *self.backtrace(regs[link], regs)]
            return err
        bytes_ = f" of {size} bytes" if size else ""
        if where is None:
            return self.cpu_fault(f"{verb}{bytes_} at unmapped address {addr:#x}", pc, acc)
        allowed = {"read": "readable", "write": "writable"}.get(verb, "accessible")
        return self.cpu_fault(f"{verb}{bytes_} at {addr:#x} in {where}: not {allowed}", pc, acc)

    def memory_fault(self, exc: UcError, mem_fault: MemFault | None) -> CpuFaultError:
        """The error for a slice that raised `exc` (the fallback: sled.py); `mem_fault` is what
        the memory hook saw. Without one, a PC outside RAM is a fetch Unicorn refused silently."""
        if mem_fault is not None:
            return self.access_error(*mem_fault)
        pc = self.isa.pc(self.uc)
        if self.phys.bank_of(pc) is None:
            return self.access_error("fetch", pc, None, pc)
        return self.cpu_fault(f"the CPU stopped at {pc:#x}: an exception the emulator did not explain "
                              f"({exc})", pc)  # fmt: skip
