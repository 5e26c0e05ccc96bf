"""The stack guard: the run ends with a `stack-overflow` report at the first touch below the stack.

The SDK's linker script (firmware/link.ld) puts a guard between .bss and the stack:

    __kalloc_stack_guard    4 KiB nothing legitimate reads or writes
    __kalloc_stack_bottom   the stack's lowest address; it grows down from
    __kalloc_stack_top      (sp at reset; interrupt handlers run on this stack too)

`install(machine, firmware, depot, mmu)` watches [__kalloc_stack_guard, __kalloc_stack_bottom).
The first load or store into it — the prologue of the function whose frame no longer
fits, the trap vector saving registers for a handler, a local buffer written past the
bottom — builds the report and ends the run through `machine.fatal(err, reason="fault")`
(exit status 65, like a CPU fault: the firmware crashed, as on a guard page in Linux).

How it watches: the SDK's linker scripts page-align the guard (one 4 KiB page), so the
machine's translation traps the page (`Mmu.trap`, mmu.py): no memory hook is installed.
Any Unicorn memory read/write hook, even a ranged one, sends every load and store of the
run through the slow path (measured: the TLSF workload ran ~0.72x with it), while a
trapped page costs nothing until it is touched. The page is never granted to a load or
store, so the first data access into it is a TLB fill, the same first access a memory
hook saw: its address and width are the instruction's (decoded at the PC by the ISA,
`first_access`: the lowest-addressed access of a multi-register push/stm, as the CPU
makes them in ascending order, 4 bytes each; a ldrd/strd is two 4-byte accesses), the registers are
the CPU's at that access, the instruction is counted, and the access itself does not
land (mmu.py sends it to the fault sink). An ELF whose guard is not page-aligned (an
older SDK), or a machine without translation, keeps the ranged memory hook (reads and
writes): there the store has already been made when the callback runs, in the guard,
which nothing uses. Either way the run ends before any store reaches .bss
(`kalloc_irq_depth` and the firmware's globals are never overwritten), with the same
report and the same instruction count (tests/machine/test_stackguard_tlb.py).

The report (`StackOverflowError`, kind `stack-overflow`, severity error), built once at
the first access:

    pc, instruction, registers, backtrace   as for a CPU fault (16 frames)
    access      {type, addr, size}
    stack       {bottom, top, size, guard, sp, used (top - sp), frames (the whole
                 frame-pointer chain, counted), context ("task" or "interrupt"),
                 repeated: {symbol, frames} the function with the most frames (a
                 runaway recursion names itself)}
    origin_site the outermost ORIGIN_FRAMES frames of the chain, where the deep call
                began (a stack-depot handle, symbolized in the report), when the chain
                is longer than the backtrace

Freeing a stack address (`StackFrees`, installed on the bridge by `annotate_frees`): an
`invalid-free` of an address in [__kalloc_stack_bottom, __kalloc_stack_top) says so, and
whose frame holds it, from the frame-pointer chain at the call (the SDK wrapper's frame
is `block.fp`; each caller's frame spans [the callee's fp, its own fp), named by the
return address into it). The machine has one stack: interrupt handlers run on it, below
the frames they interrupted, so a frame below a trap frame in the chain is a handler's
frame. The entry gains `stack` {stack: "task", frame: the function, context: "task" or
"interrupt" (a handler's frame), dead: true for an address below the caller's frames (a
local of a function that has returned; frame null)}, and the message says it.

An ELF that has `__kalloc_stack_bottom` but no `__kalloc_stack_guard` was built by an SDK
without the guard: no hook (its .bss lies right below the stack), and the firmware's
warnings say so. An ELF without either (not built with the SDK) gets neither.

Invariants:
 1. The trap (or hook) is installed only when the ELF names the guard; it never stops the
    emulator except through `machine.fatal` (the run is ending), and only once.
 2. Building the report never raises on guest garbage (the walk is bounded by the stack's
    size and stops at unreadable frames).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import unicorn

from kalloc.errors import KallocError, StackOverflowError
from kalloc_machine.isa import accesses
from kalloc_machine.memlayout import PAGE_SIZE

if TYPE_CHECKING:
    from kalloc.physmem import RamBank
    from kalloc.stackdepot import StackDepot
    from kalloc_machine.bridge.doorbell import Bridge
    from kalloc_machine.elf import Firmware
    from kalloc_machine.machine import Machine
    from kalloc_machine.mmu import Mmu

GUARD = "__kalloc_stack_guard"
BOTTOM = "__kalloc_stack_bottom"
TOP = "__kalloc_stack_top"
TRAP_START, TRAP_END = "kalloc_trap_vector", "__kalloc_trap_vector_end"
SP = "sp"  # the stack pointer's name in Isa.read_regs (RISC-V and Arm alike)
NO_GUARD_WARNING = (
    "no stack guard: this ELF was built by an SDK without __kalloc_stack_guard, so a stack "
    "overflow is not detected (rebuild it against the installed SDK)"
)
BACKTRACE_FRAMES = 16  # what FaultReporter.backtrace walks
ORIGIN_FRAMES = 8
_VERBS = {unicorn.UC_MEM_READ: "read", unicorn.UC_MEM_WRITE: "write"}


@dataclass(frozen=True, slots=True)
class StackBounds:
    guard: int  # lowest address of the guard
    bottom: int  # the stack's lowest address (= the guard's end)
    top: int  # sp at reset

    @property
    def size(self) -> int:
        return self.top - self.bottom


def bounds_of(firmware: Firmware) -> StackBounds | None:
    """The SDK stack and its guard as the ELF's symbols place them, or None (no guard)."""
    guard, bottom, top = (firmware.symbol_addr(n) for n in (GUARD, BOTTOM, TOP))
    if guard is None or bottom is None or top is None or not guard < bottom < top:
        return None
    return StackBounds(guard, bottom, top)


class StackGuard:
    """The guard's hook and its one report (module docstring)."""

    def __init__(self, machine: Machine, firmware: Firmware, bounds: StackBounds,
                 depot: StackDepot | None = None, mmu: Mmu | None = None) -> None:  # fmt: skip
        self.machine = machine
        self.depot = depot
        self.firmware = firmware
        self.bounds = bounds
        self.tripped = False
        trap = firmware.symbol_addr(TRAP_START), firmware.symbol_addr(TRAP_END)
        self._trap = (trap[0], trap[1]) if trap[0] is not None and trap[1] is not None else None
        trap_page = getattr(mmu, "trap", None)  # a baseline without translation has none (benchmachine.py)
        self.trapped = trap_page is not None and trap_page(bounds.guard, bounds.bottom, self._on_fill)
        if not self.trapped:  # not page-aligned, or no translation: the ranged memory hook
            machine.uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, self._on_access, None,
                                bounds.guard, bounds.bottom - 1)  # fmt: skip

    def _on_fill(self, page: int, access: int) -> None:
        """A load or store filled the guard's page (mmu.py): the access the memory hook would see."""
        if self.tripped:
            return
        m, b = self.machine, self.bounds
        addr, size = first_access(m, m.regs(), max(page, b.guard), min(page + PAGE_SIZE, b.bottom))
        self.tripped = True
        m.fatal(self.error(_VERBS.get(access, "access"), addr, size), reason="fault")

    def _on_access(self, uc: unicorn.Uc, access: int, addr: int, size: int, value: int, _ud: Any) -> None:
        if self.tripped:
            return
        self.tripped = True
        self.machine.fatal(self.error(_VERBS.get(access, "access"), addr, size), reason="fault")

    def error(self, verb: str, addr: int, size: int) -> StackOverflowError:
        """The report of an access into the guard, from the CPU's state now."""
        m, b = self.machine, self.bounds
        regs = m.regs()
        pc, sp = regs["pc"], regs[SP]
        pcs = m.isa.backtrace(m.phys.read_u32, pc, regs, depth=b.size // 8 + 2,
                              in_ram=lambda a: b.guard <= a and a + 8 <= b.top,
                              is_code=self.firmware.is_code)  # fmt: skip
        symbols = [s[0] for p in pcs if (s := self.firmware.symbol_at(p)) is not None]
        repeated = Counter(symbols).most_common(1)
        func = self.firmware.symbol_at(pc)
        where = func[0] if func else f"{pc:#x}"
        context = "interrupt" if self._in_handler(pcs) else "task"
        used = b.top - sp
        stack: dict[str, Any] = {
            "bottom": b.bottom, "top": b.top, "size": b.size, "guard": b.guard, "sp": sp,
            "used": used, "frames": len(pcs), "context": context,
        }  # fmt: skip
        if repeated:
            stack["repeated"] = {"symbol": repeated[0][0], "frames": repeated[0][1]}
        below = b.bottom - addr
        if sp < b.bottom:  # the stack pointer left the stack: this frame does not fit
            handler = " (interrupt handler)" if context == "interrupt" else ""
            what = (f"stack overflow in {where}{handler}: {verb} of {size} bytes at {addr:#x}, {below} bytes "
                    f"below the stack's bottom; {used} bytes in use of the {b.size}-byte stack (sp {sp:#x}), "
                    f"{len(pcs)} frames")  # fmt: skip
            if repeated and repeated[0][1] > 1:
                what += f" ({repeated[0][1]} in {repeated[0][0]})"
        else:  # sp is inside the stack: not this frame's overflow, a pointer into the guard
            what = (f"{verb} of {size} bytes at {addr:#x} in the stack guard from {where}, with sp {sp:#x} "
                    f"inside the stack ({used} bytes in use): a wild pointer below the stack")  # fmt: skip
        err = m.faults.cpu_fault(what, pc, {"type": verb, "addr": addr, "size": size})
        fields = dict(err.fields, stack=stack)
        fields.pop("pc", None)
        if self.depot is not None and len(pcs) > BACKTRACE_FRAMES:
            fields["origin_site"] = self.depot.save(tuple(pcs[-ORIGIN_FRAMES:]))
        return StackOverflowError(what, addr=addr, pc=pc, **fields)

    def _in_handler(self, pcs: list[int]) -> bool:
        """True when the frame chain passes through the trap vector (a handler's frames)."""
        if self._trap is None:
            return False
        lo, hi = self._trap
        return any(lo <= p < hi for p in pcs[1:])


def first_access(machine: Machine, regs: dict[str, int], lo: int, hi: int) -> tuple[int, int]:
    """(address, width) of the first access the instruction at the PC makes into [lo, hi),
    as a memory hook sees it (the ISA's decoding: `kalloc_machine.isa.accesses`, in the CPU's
    order), the first that starts in [lo, hi), else the first that reaches into it (clipped
    to lo); (lo, 4) for an instruction the decoder does not know (none the SDK's compilers emit)."""
    found = accesses(machine.isa, machine.phys.read, regs["pc"], regs)
    for addr, width in found:
        if lo <= addr < hi:
            return addr, width
    for addr, width in found:
        if addr < hi and lo < addr + width:
            return max(addr, lo), width
    return lo, 4


def leak_roots(roots: list[tuple[int, int]], firmware: Firmware, sp: int) -> list[tuple[int, int]]:
    """The leak scan's roots with the stack cut to its live part, [sp, top).

    Frames below sp are dead: a stale pointer left there would hide a real leak (crt0 no
    longer clears the stack when main returns: with a 256 KiB stack that cost ~100k
    instructions per run). The guard and the dead stack are taken out of the writable
    segments' ranges; an sp outside the stack keeps the whole stack as a root.
    """
    bottom, top = firmware.symbol_addr(BOTTOM), firmware.symbol_addr(TOP)
    if bottom is None or top is None:
        return roots
    lo = firmware.symbol_addr(GUARD) or bottom
    out: list[tuple[int, int]] = []
    for a, b in roots:
        out += [(x, y) for x, y in ((a, min(b, lo)), (max(a, top), b)) if x < y]
    out.append((sp if bottom <= sp <= top else bottom, top))
    return out


class StackFrees:
    """The bridge annotator for frees of stack addresses (module docstring)."""

    def __init__(self, firmware: Firmware, bottom: int, top: int, trap: tuple[int, int] | None) -> None:
        self.firmware, self.bottom, self.top, self.trap = firmware, bottom, top, trap

    def __call__(self, err: KallocError, ra: int, fp: int, bank: RamBank) -> None:
        addr = err.addr
        if err.kind != "invalid-free" or addr is None or not self.bottom <= addr < self.top:
            return
        stack = self.describe(addr, ra, fp, bank)
        err.fields["stack"] = stack
        api, sep, rest = err.message.partition(" of ")
        if sep and ("never allocated" in rest or "not a RAM address" in rest):
            err.message = f"{api} of {addr:#x}, a stack address: {self._phrase(stack)}"

    def describe(self, addr: int, ra: int, fp: int, bank: RamBank) -> dict[str, Any]:
        """{stack, frame, context[, dead]} of a stack address, from the chain at the call."""
        pcs, frame = frames_above(ra, fp, bank), None
        lo = fp
        for i, (_pc, hi) in enumerate(pcs):
            if lo <= addr < hi:
                frame = i
                break
            lo = hi
        if frame is None:
            return {"stack": "task", "frame": None, "context": None, "dead": addr < fp}
        pc = pcs[frame][0]
        trap = self.trap
        exact = frame > 0 and trap is not None and trap[0] <= pcs[frame - 1][0] < trap[1]  # mepc
        sym = self.firmware.symbol_at(pc if exact else pc - 1)
        handler = trap is not None and any(trap[0] <= p < trap[1] for p, _ in pcs[frame + 1 :])
        context = "interrupt" if handler else "task"
        return {"stack": "task", "frame": sym[0] if sym else None, "context": context}

    @staticmethod
    def _phrase(stack: dict[str, Any]) -> str:
        fn = f"{stack['frame']}()" if stack["frame"] else "a function without a symbol"
        if stack["context"] == "interrupt":
            return f"a local in the frame of {fn}, an interrupt handler's frame (handlers run on the task " \
                "stack)"
        if stack["context"] == "task":
            return f"a local in the frame of {fn} on the task stack"
        if stack.get("dead"):
            return "below the caller's frames on the task stack: a dead frame (a local of a function that " \
                "returned)"
        return "on the task stack, in no frame the frame-pointer chain reaches"


def frames_above(ra: int, fp: int, bank: RamBank, depth: int = 64) -> list[tuple[int, int]]:
    """[(return address into the frame's function, the frame's fp)] up the chain from an SDK
    wrapper's frame at `fp` (returning to `ra`): frame i spans [fp of frame i-1, its fp)."""
    lo, hi = bank.base + 8, bank.base + bank.size
    out: list[tuple[int, int]] = []
    pc = ra
    while fp and len(out) < depth and not fp & 3 and lo <= fp <= hi:
        nxt = int.from_bytes(bank.buf[fp - 8 - bank.base : fp - 4 - bank.base], "little")
        if nxt <= fp or nxt & 3 or not lo <= nxt <= hi:
            break
        out.append((pc, nxt))
        pc = int.from_bytes(bank.buf[nxt - 4 - bank.base : nxt - bank.base], "little")
        fp = nxt
    return out


def annotate_frees(bridge: Bridge, firmware: Firmware) -> StackFrees | None:
    """Install the stack-free annotator on `bridge` for an SDK ELF (one that names its stack)."""
    bottom, top = firmware.symbol_addr(BOTTOM), firmware.symbol_addr(TOP)
    if bottom is None or top is None or not bottom < top:
        return None
    start, end = firmware.symbol_addr(TRAP_START), firmware.symbol_addr(TRAP_END)
    frees = StackFrees(firmware, bottom, top, (start, end) if start is not None and end is not None else None)
    bridge.annotators.append(frees)
    return frees


def install(machine: Machine, firmware: Firmware, depot: StackDepot | None = None,
            mmu: Mmu | None = None) -> StackGuard | None:  # fmt: skip
    """The guard of an SDK ELF that has one; else None (and a warning for an SDK ELF without).
    `depot` (the allocator's) keeps the report's origin_site; `mmu` (the machine's translation)
    traps a page-aligned guard (module docstring)."""
    bounds = bounds_of(firmware)
    if bounds is None:
        if firmware.symbol_addr(BOTTOM) is not None and NO_GUARD_WARNING not in firmware.warnings:
            firmware.warnings.append(NO_GUARD_WARNING)
        return None
    return StackGuard(machine, firmware, bounds, depot, mmu)
