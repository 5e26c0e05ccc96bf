"""Exact stops: the idle sled, and the hooks that send the CPU into it.

`IdleSled(isa, uc, phys, faults, errors)` maps the sled (at `Isa.sled_base`:
memlayout.IDLE_SLED_BASE on RV32, 0x7800_0000 on Cortex-M, which never executes above
0xE000_0000), execute-only, `Isa.idle_sled`: SLED_LEN - 1 nops and a jump back) and installs the
CPU-side Unicorn hooks: the interrupt hook (ecall exit/panic, CPU faults, and the
marked `wfi`s) and the memory-fault hook. It installs no code hook: with Unicorn's
instruction count on, every UC_HOOK_CODE hook, even one ranged on a single address,
costs every instruction of the slice (measured: one ranged hook makes a compute loop
2.5× slower; `kalloc bench --only emulation`).
Each records why the slice ends in `stop` (a `SliceStop`) and points the PC into the
sled; the run loop (runloop.py) reads `stop` and `leave()` at the boundary.

Cuts (exact mid-slice boundaries): a store that moves a deadline earlier than the
slice's end (an mtimecmp write; every DMA start) and an mtime read (outside a
READ_WINDOW slice, runloop.py) end the slice right there. The MMIO callback points the PC into the
idle sled (no emu_stop: Unicorn abandons the instruction after its device effect, and
nothing replays that we did not choose): a store resumes at the next instruction, an
mtime load is replayed at the boundary, where time is exact. Measured on the demo:
timer interrupts taken 0-1 instructions after mtimecmp (was up to a quantum), DMA
completions on time, mtime reads within READ_WINDOW instructions.

Exact stops through the idle sled (memlayout.IDLE_SLED_BASE): Unicorn does not say how
many instructions ran when a slice stops early, so the loop never stops a slice early
when it can avoid it. When the CPU reaches `wfi`, an `ecall`, or a fault reported
through the interrupt hook, the hook records why and points the PC into an
execute-only run of `nop`s that loops on itself (`Isa.idle_sled`). The slice runs
out its count there; where the PC stands when it ends, and the laps the sled counted
in a register (`Isa.sled_counter`, the firmware's value saved on entry and restored
by `leave`), give the instructions spent in the sled, so count - sled = instructions
executed before the stop, exactly.

Returns (RISC-V): a marked `mret` (irqstate.py) traps into the interrupt hook, which sends the
CPU to a real `mret` placed after the sled's code (`return_at`): QEMU performs the return
(helper_mret writes mstatus without the TLB flush that a register write changing MPP costs,
csr.c's write_mstatus; a flush and its refills cost a tick ~10% of a 100k-instruction
period). Unicorn counts that `mret` too: the run loop subtracts the ones that ran
(`returns_run`) and runs the slice on until it has executed its count of firmware
instructions (runloop.py, `_emulate`); one the slice ended on is performed at the boundary
(`Isa.finish_return`), uncounted, as the hook used to.

Each `wfi` of the loaded image is marked (`Isa.idle_mark`: an encoding that traps as
an illegal instruction): the interrupt hook sees the trap at a marked address and
stops the slice there as the old code hook did before the `wfi` ran. The firmware
reading its own code sees the mark (the fault report's disassembly says `wfi`); a
`wfi` written at run time is not marked and halts as Unicorn's does, as before.


Faults end a slice exactly too (`fault`): every fault the machine can see in a hook
(an illegal instruction or other trap in the interrupt hook; an unmapped or protected
access in the memory hook; under translation, mmu.py's TLB-fill hook for a refused page,
an access the page's permissions forbid or an unmapped address; a fatal report through
`Machine.fatal`, e.g. a stack overflow or a bad hypercall; Ctrl-C and the wall clock
inside a slice) files its error and sends the CPU into the sled, so the run's
`instructions` is exact: every instruction executed up to and including the faulting
one (a fetch fault counts the jump, not the instruction never fetched). For the access
not to raise, the memory hook answers "handled" after mapping a scratch page over an
unmapped address (`release` unmaps it at the boundary), and the fill hook points the
page at the sled's `fault_sink`, a page nothing else uses (mmu.py maps it; `release` calls the
`on_release` callbacks: the MMU flushes its TLB). Only a write into the sled itself
(execute-only, non-translated machine) and errors Unicorn raises without any hook still
end in a UcError: then `exact` is False (runloop.py).

The sled's window (IDLE_SLED_SIZE at `Isa.sled_base`) is laid out once, here, for every
ISA: the sled's own code from its base (`holds`), the harness's call stops in its second
half (`call_stops`, tools/callsites.py), and its last page, the fault sink (`fault_sink`).
Nothing outside this module restates the layout: it asks the machine's sled.

Data: `stop` (None while the slice runs on), `mem_fault`
(what the memory hook saw, for the report of a slice that raised), `running` (set by
the run loop around `emu_start`; cuts and breaks only happen inside a slice).

Invariants:
 1. Hooks only record and move the PC into the sled: they never stop Unicorn.
 2. The first stop of a slice wins: a cut or break after a stop is ignored.
 3. Instructions executed in a stopped slice = count - `leave()`, exactly: the sled's
    counter and PC give its own instructions; the firmware's counter register is the
    value it had when the stop sent it into the sled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import unicorn
from unicorn import UcError

from kalloc.errors import BadArgumentError, KallocError
from kalloc_machine.bridge import abi
from kalloc_machine.memlayout import IDLE_SLED_SIZE, gaps
from kalloc_machine.rawregs import batch_reader, write_batch

if TYPE_CHECKING:
    from kalloc.physmem import PhysMem
    from kalloc_machine.devices import Device
    from kalloc_machine.faults import FaultReporter, MemFault
    from kalloc_machine.isa import Isa

# Instructions per lap: the counter, SLED_LEN - 2 nops and a jump back. Each run translates
# the sled once (TCG: ~1.6 µs per instruction): 1024 costs ~4 ms, against ~39 ms for the
# whole 16k-instruction window (measured on Unicorn 2.1.4).
SLED_LEN = 1024
PAGE = 0x1000


def fault_sink(base: int) -> int:
    """The last page of the sled's window at `base`: where a faulting access is sent so that it
    does not raise (mmu.py maps it, read/write/execute; firmware never reaches it: translation
    refuses it)."""
    return base + IDLE_SLED_SIZE - PAGE


def call_stop_window(base: int) -> tuple[int, int]:
    """[lo, hi) of the harness's call stops (tools/callsites.py) in the sled's window at `base`:
    its second half, up to the fault sink. Mapped with the sled (execute), never run by it."""
    return base + IDLE_SLED_SIZE // 2, fault_sink(base)


_UNMAPPED = (unicorn.UC_MEM_READ_UNMAPPED, unicorn.UC_MEM_WRITE_UNMAPPED, unicorn.UC_MEM_FETCH_UNMAPPED)
UcErrorHook = Callable[[UcError], KallocError | None]


@dataclass(slots=True)
class SliceStop:
    """Why a hook sent the CPU into the idle sled (or stopped it)."""

    reason: str  # "exit" | "panic" | "fault" | "fatal" | "wfi" | "cut" | a stop_slice reason
    pc: int = 0  # wfi: the wfi's address; cut: where to resume
    exit_code: int | None = None
    replay: bool = False  # cut: the instruction at pc was aborted and runs again (not counted)
    device: Device | None = None  # cut: the device whose store poked, to stamp
    store_pc: int = 0  # cut: the MMIO access's own pc


class IdleSled:
    """The sled and the stop hooks of one machine (module docstring)."""

    def __init__(self, isa: Isa, uc: unicorn.Uc, phys: PhysMem, faults: FaultReporter,
                 errors: list[KallocError]) -> None:  # fmt: skip
        self.isa, self.uc, self.phys, self.faults, self.errors = isa, uc, phys, faults, errors
        self.base = isa.sled_base  # memlayout.IDLE_SLED_BASE, or the ISA's own (Cortex-M)
        self.fault_sink = fault_sink(self.base)  # mmu.py maps it (module docstring)
        self.call_stops = call_stop_window(self.base)  # the harness's return addresses (callsites.py)
        assert isa.sled_step * SLED_LEN <= IDLE_SLED_SIZE - PAGE
        self.on_exception_return: Callable[[int], None] | None = None  # Isa.return_intno seen (irqstate)
        self.stop: SliceStop | None = None
        self._saved: int | None = None  # the firmware's sled_counter register while in the sled
        self.wfi_pcs: frozenset[int] = frozenset()
        self.mem_fault: MemFault | None = None
        self.running = False
        self.scratch: list[tuple[int, int]] = []  # pages mapped over an unmapped access (release)
        self.on_release: list[Callable[[], None]] = []  # after a slice a fault ended (mmu: TLB flush)
        self.fault_spans: dict[tuple[int, int], int] = {}  # the memory-fault hook: (lo, hi) -> handle
        self.mapped = [(b.base, b.end) for b in phys.banks]  # what the hook leaves: RAM, `uncover`'s spans
        self._faulted = False
        self.translated = False  # mmu.py's fill hook sees faults first (the memory hook then never maps)
        # RISC-V: a real `mret` after the sled's code, where a marked one is sent ("Returns")
        insn: bytes | None = getattr(isa, "return_insn", None)
        self.return_insn = insn
        self.return_at = self.base + SLED_LEN * isa.sled_step if insn else None
        self.redirects = 0  # marked returns sent to return_at since the run loop zeroed it
        self._read_counter: Callable[[], tuple[int, ...] | None] | None = None  # `_counter`
        self.it_blocks = isa.it_blocks  # else redirect_lost is never asked (RV32 pays nothing)

    def install(self, wfi_pcs: list[int]) -> None:
        """Map the idle sled, mark every wfi of the loaded image, add the CPU-side hooks."""
        uc, isa = self.uc, self.isa
        uc.mem_map(self.base, IDLE_SLED_SIZE - PAGE, unicorn.UC_PROT_EXEC)
        uc.mem_write(self.base, isa.idle_sled(self.base, SLED_LEN))
        if self.return_at is not None and self.return_insn:
            uc.mem_write(self.return_at, self.return_insn)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        self._cover()  # not RAM: mapped rwx, the hook never fires there (_cover)
        if isa.undefined_intno >= 0:  # an ISA whose undefined instructions no interrupt reports
            uc.hook_add(unicorn.UC_HOOK_INSN_INVALID, self._on_invalid)
        marked = []
        for pc in wfi_pcs:
            if self.phys.bank_of(pc) is not None:
                self.phys.write(pc, isa.idle_mark)
                marked.append(pc)
        self.wfi_pcs = frozenset(marked)

    def is_marked_wfi(self, pc: int) -> bool:
        """Is pc a wfi of the image, still carrying the machine's mark (not rewritten since)?"""
        return pc in self.wfi_pcs and self.phys.read(pc, len(self.isa.idle_mark)) == self.isa.idle_mark

    def enter(self, synced: bool = False) -> bool:
        """Point the CPU into the sled, its lap counter zeroed (the firmware's value kept); False, nothing
        written, in a Thumb IT block (Isa.redirect_lost: the PC would be lost; the slice runs on).
        synced: called from a fault, fill or interrupt hook (the engine synced the CPU state)."""
        uc = self.uc
        if self.it_blocks and self.isa.redirect_lost(uc, synced):
            return False
        if self._saved is None:
            self._saved = self._counter()
        write_batch(uc, (self.isa.sled_counter,), (0,))
        self.isa.set_pc(uc, self.base)
        return True

    def _counter(self) -> int:
        """The sled_counter register (one untyped ctypes call: rawregs.batch_reader)."""
        if self._read_counter is None:
            self._read_counter = batch_reader(self.uc, (self.isa.sled_counter,))
        got = self._read_counter()
        return int(got[0]) if got is not None else int(self.uc.reg_read(self.isa.sled_counter))

    def holds(self, pc: int) -> bool:
        """Is pc in the sled's own code (not elsewhere in its window: call stops, fault sink)?"""
        return self.base <= pc < self.base + SLED_LEN * self.isa.sled_step

    def leave(self) -> int | None:
        """At the boundary of a stopped slice: the instructions the sled ran (invariant 3),
        or None when the CPU is not in the sled (the redirect was lost: Ctrl-C before
        emu_start); gives the firmware its counter register back."""
        uc, isa = self.uc, self.isa
        saved, self._saved = self._saved, None
        pc = isa.pc(uc)
        laps = self._counter()
        if saved is not None:
            write_batch(uc, (isa.sled_counter,), (saved,))
        if saved is None or not self.holds(pc):
            return None
        offset = (pc - self.base) // isa.sled_step
        return laps * SLED_LEN if offset == 0 else (laps - 1) * SLED_LEN + offset

    # -- stops (from hooks and callbacks; invariant 1) ----------------------------------------

    @property
    def stopping(self) -> bool:
        """True when no slice runs or a hook has already ended this one."""
        return self.stop is not None or not self.running

    def stop_slice(self, reason: str, pc: int) -> None:
        """From a code hook: end the slice exactly here; `run()` returns `reason` and the
        CPU resumes at pc when run again (the caller sets it)."""
        self.stop = SliceStop(reason, pc=pc)
        self.enter()

    def end(self, reason: str) -> None:
        """From any callback inside a slice: the run ends; the slice ends exactly here (no
        emu_stop: the count stays exact). A stop already recorded stands (the run loop reads
        the ending reason after it)."""
        if self.running and self.stop is None:
            self.stop_slice(reason, self.isa.pc(self.uc))

    def fault(self, err: KallocError, reason: str = "fault") -> bool:
        """From a fault, fill or interrupt hook: the instruction at the PC faulted. Files `err` if it
        is the slice's first fault (a later one is not filed) and sends the CPU into the sled, so the
        slice ends exactly here. False, "decline": the CPU is not on its way to the sled (a Thumb IT
        block, Isa.redirect_lost, or an earlier stop's redirect was lost): the hook must decline the
        access so that emu_start raises (one report, its count a lower bound); taken, the
        instruction would run on, again and again. The one place of this rule (mmu.py asks it)."""
        stop = self.stop
        if stop is not None and stop.reason not in ("cut", "wfi", "break"):
            return self._saved is not None  # a second access of the faulting instruction: take it
        self.errors.append(err)
        self._faulted = True
        self.stop = SliceStop(reason, pc=self.isa.pc(self.uc))
        return self.enter(synced=True)

    def flush_on_release(self) -> None:
        """A hook pointed an access at the fault sink without `fault` (a trap's fatal report,
        mmu.py): run `on_release` after this slice all the same."""
        self._faulted = True

    def release(self) -> None:
        """At the boundary after a slice: unmap the scratch pages and run `on_release` if a
        fault ended it (module docstring)."""
        if not self._faulted and not self.scratch:
            return
        self._faulted = False
        for base, size in self.scratch:
            self.uc.mem_unmap(base, size)
        self.scratch.clear()
        for callback in self.on_release:
            callback()

    def cut(self, *, replay: bool, device: Device | None = None) -> None:
        """End the slice at the current MMIO access, exactly (module docstring, "Cuts").

        Sends the CPU into the idle sled from inside the callback: Unicorn abandons the
        instruction there (the store's device effect is done; nothing after it runs),
        and the sled counts the rest of the slice. No emu_stop, so nothing replays that
        we did not choose: a store resumes after itself, a replayed mtime load at itself.
        """
        if not self.running or self.stop is not None:
            return
        isa, uc = self.isa, self.uc
        pc = store_pc = isa.pc(uc)
        if not replay:
            try:
                pc += isa.insn_size(self.phys.read(pc, 2))
            except ValueError:
                return  # code outside RAM: leave the deadline to the next boundary
        self.stop = SliceStop("cut", pc=pc, replay=replay, device=device, store_pc=store_pc)
        self.enter()

    def _on_intr(self, uc: unicorn.Uc, intno: int, _ud: Any) -> None:
        isa = self.isa
        if intno == isa.ecall_intno:
            nr, a0, _a1 = isa.syscall_args(uc)
            if nr == abi.ECALL_EXIT:
                self.stop = SliceStop("exit", exit_code=a0 - (1 << 32) if a0 & 0x8000_0000 else a0)
            elif nr == abi.ECALL_PANIC:
                pc = isa.pc(uc) - isa.ecall_size
                self.errors.append(self.faults.cpu_fault(f"firmware panic: {self._cstr(a0)}", pc))
                self.stop = SliceStop("panic")
            else:
                pc = isa.pc(uc) - isa.ecall_size
                self.errors.append(BadArgumentError(
                    f"ecall number {nr} does not exist (exit is {abi.ECALL_EXIT}, panic {abi.ECALL_PANIC})",
                    pc=pc, backtrace=self.faults.backtrace(pc), service=nr,
                ))  # fmt: skip
                self.stop = SliceStop("fatal")
        elif intno == isa.illegal_intno and self.is_marked_wfi(pc := isa.pc(uc) - isa.fault_pc_adjust):
            self.stop = SliceStop("wfi", pc=pc)
        elif intno == isa.return_intno and self._exception_return(uc):  # the return the CPU leaves to us
            return
        else:
            pc = isa.pc(uc) - isa.fault_pc_adjust
            faults = self.faults
            text = f"{isa.fault_name(intno)}: {faults.instruction_at(pc)}{faults.not_code(pc)}"
            self.fault(faults.cpu_fault(text, pc))
            return
        self.enter(synced=True)

    def _exception_return(self, uc: unicorn.Uc) -> bool:
        """A return from an interrupt, performed (Isa.exception_return) or sent to the real one at
        return_at ("Returns"); irqstate hears of it. False: not a return."""
        at, isa = self.return_at, self.isa
        if at is None:
            if not isa.exception_return(uc):
                return False
            to = isa.pc(uc)
        else:
            got = isa.return_via(uc, at)  # type: ignore[attr-defined]  # RISC-V only (return_insn)
            if got is None:
                return False
            to, self.redirects = got, self.redirects + 1
        if self.on_exception_return is not None:
            self.on_exception_return(to)
        return True

    def returns_run(self, pc: int) -> int:
        """The sled's `mret`s the CPU ran since `redirects` was zeroed, the CPU now at pc (one it
        stands on has not run). Unicorn counted each: none is a firmware instruction."""
        return self.redirects - (pc == self.return_at)

    def _on_invalid(self, uc: unicorn.Uc, _ud: Any) -> bool:
        """An undefined instruction (Cortex-M: Unicorn would raise out of emu_start): a fault at
        the PC, reported and counted exactly like a trap."""
        if not self.running:
            return False
        isa, faults = self.isa, self.faults
        pc = isa.pc(uc)
        text = f"{isa.fault_name(isa.undefined_intno)}: {faults.instruction_at(pc)}{faults.not_code(pc)}"
        return self.fault(faults.cpu_fault(text, pc))

    def uncover(self, lo: int, hi: int) -> None:
        """[lo, hi) is mapped besides RAM (the fast path's window): the memory-fault hook leaves it too."""
        self.mapped.append((lo, hi))
        self._cover()

    def _cover(self) -> None:
        """The memory-fault hook over every address but `mapped`: Unicorn 2.1.4 sends every store
        to a page any memory hook covers down its slow path (performance.md, "Stores and the TLB")."""
        for h in self.fault_spans.values():
            self.uc.hook_del(h)
        kinds, add = unicorn.UC_HOOK_MEM_UNMAPPED | unicorn.UC_HOOK_MEM_PROT, self.uc.hook_add
        spans = gaps(self.mapped, 2**64)
        self.fault_spans = {(lo, hi): add(kinds, self._on_mem_fault, None, lo, hi) for lo, hi in spans}

    def _on_mem_fault(self, uc: unicorn.Uc, access: int, addr: int, size: int, value: int, _ud: Any) -> bool:
        """An unmapped or protected access: reported and sent to the sled (exact), except a
        write into the execute-only sled, which Unicorn would perform: it raises (inexact)."""
        self.mem_fault = fault = (access, addr, size, self.isa.pc(uc))
        if not self.running or access == unicorn.UC_MEM_WRITE_PROT or self.translated:
            return False  # under translation, mapping a page here does not stop the CPU: raise
        if access in _UNMAPPED:  # map a page over it, so the access does not raise (release)
            base, end = addr & ~(PAGE - 1), (addr + max(size, 1) + PAGE - 1) & ~(PAGE - 1)
            try:
                uc.mem_map(base, end - base, unicorn.UC_PROT_ALL)
            except UcError:  # part of it is mapped after all: leave it to the UcError
                return False
            self.scratch.append((base, end - base))  # (declined: unmapped at the boundary all the same)
        return self.fault(self.faults.access_error(*fault))

    def memory_fault_error(self, exc: UcError, on_uc_error: UcErrorHook | None) -> KallocError:
        """The error for a slice that raised: `on_uc_error` first (a refused TLB fill is a
        page fault, mmu.py), else a cpu-fault from what the memory hook saw."""
        err = on_uc_error(exc) if on_uc_error is not None else None
        return err if err is not None else self.faults.memory_fault(exc, self.mem_fault)

    def _cstr(self, addr: int) -> str:
        try:
            return self.phys.read_cstr(addr, 256).decode("utf-8", "replace")
        except ValueError:
            return f"<message at {addr:#x} is not a string in RAM>"
