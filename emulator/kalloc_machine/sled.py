"""Exact stops: the idle sled, and the hooks that send the CPU into it.

`IdleSled(isa, uc, phys, faults, errors)` maps the sled (memlayout.IDLE_SLED_BASE,
execute-only, `Isa.idle_sled`: SLED_LEN - 1 nops and a jump back) and installs the
CPU-side Unicorn hooks: the interrupt hook (ecall exit/panic, CPU faults), one code
hook per `wfi` of the ELF, the lap hook on the sled's jump and the memory-fault hook.
Each records why the slice ends in `stop` (a `SliceStop`) and points the PC into the
sled; the run loop (runloop.py) reads `stop`, `laps` and the PC at the boundary.

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
when it can avoid it. When the CPU reaches `wfi` (a code hook on each `wfi` found in
the ELF), an `ecall`, or a fault reported through the interrupt hook, the hook records
why and points the PC into an execute-only run of `nop`s that loops on itself
(`Isa.idle_sled`). The slice runs out its count there; where the PC stands when it
ends (plus a counter of laps, from a hook on the loop's jump) gives the instructions
spent in the sled, so count - sled = instructions executed before the stop, exactly.


Data: `stop` (None while the slice runs on), `laps` (sled laps this slice), `mem_fault`
(what the memory hook saw, for the report of a slice that raised), `running` (set by
the run loop around `emu_start`; cuts and breaks only happen inside a slice).

Invariants:
 1. Hooks only record and move the PC into the sled: they never stop Unicorn.
 2. The first stop of a slice wins: a cut or break after a stop is ignored.
 3. Instructions executed in a stopped slice = count - (laps * SLED_LEN + the PC's
    offset in the sled / sled_step), exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import unicorn
from unicorn import UcError

from kalloc.errors import BadArgumentError, KallocError
from kalloc_machine.bridge import abi
from kalloc_machine.memlayout import IDLE_SLED_BASE, IDLE_SLED_SIZE

if TYPE_CHECKING:
    from kalloc.physmem import PhysMem
    from kalloc_machine.devices import Device
    from kalloc_machine.faults import FaultReporter, MemFault
    from kalloc_machine.isa import Isa

# Instructions per lap: SLED_LEN - 1 nops and a jump back. Each run translates the sled
# once (TCG: ~1.6 µs per instruction) and each lap calls the lap hook once: 1024 costs
# ~4 ms to translate and ~1.6 ms per 100k burnt instructions, against ~39 ms and ~4 ms
# for the whole 16k-instruction window (measured on Unicorn 2.1.4).
SLED_LEN = 1024
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
        self.jump = IDLE_SLED_BASE + isa.sled_step * (SLED_LEN - 1)
        assert isa.sled_step * SLED_LEN <= IDLE_SLED_SIZE
        self.stop: SliceStop | None = None
        self.laps = 0
        self.mem_fault: MemFault | None = None
        self.running = False

    def install(self, wfi_pcs: list[int]) -> None:
        """Map the idle sled and add the CPU-side hooks (wfi hooks: one per wfi in the ELF)."""
        uc, isa = self.uc, self.isa
        uc.mem_map(IDLE_SLED_BASE, IDLE_SLED_SIZE, unicorn.UC_PROT_EXEC)
        uc.mem_write(IDLE_SLED_BASE, isa.idle_sled(IDLE_SLED_BASE, SLED_LEN))
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED | unicorn.UC_HOOK_MEM_PROT, self._on_mem_fault)
        uc.hook_add(unicorn.UC_HOOK_CODE, self._on_sled_lap, None, self.jump, self.jump)
        for pc in wfi_pcs:  # ranged hooks: free everywhere else
            uc.hook_add(unicorn.UC_HOOK_CODE, self._on_wfi, None, pc, pc)

    # -- stops (from hooks and callbacks; invariant 1) ----------------------------------------

    @property
    def stopping(self) -> bool:
        """True when no slice runs or a hook has already ended this one."""
        return self.stop is not None or not self.running

    def stop_slice(self, reason: str, pc: int) -> None:
        """From a code hook: end the slice exactly here; `run()` returns `reason` and the
        CPU resumes at pc when run again (the caller sets it)."""
        self.stop = SliceStop(reason, pc=pc)
        self.isa.set_pc(self.uc, IDLE_SLED_BASE)

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
        isa.set_pc(uc, IDLE_SLED_BASE)

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
        else:
            pc = isa.pc(uc) - isa.fault_pc_adjust
            faults = self.faults
            self.errors.append(faults.cpu_fault(f"{isa.fault_name(intno)}: {faults.instruction_at(pc)}", pc))
            self.stop = SliceStop("fault")
        isa.set_pc(uc, IDLE_SLED_BASE)

    def _on_wfi(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self.stop = SliceStop("wfi", pc=address)
        self.isa.set_pc(uc, IDLE_SLED_BASE)

    def _on_sled_lap(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self.laps += 1

    def _on_mem_fault(self, uc: unicorn.Uc, access: int, addr: int, size: int, value: int, _ud: Any) -> bool:
        self.mem_fault = (access, addr, size, self.isa.pc(uc))
        return False

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
