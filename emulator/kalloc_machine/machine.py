"""The machine: a Unicorn CPU, the board's RAM and devices, and the run loop.

`Machine(board, firmware)` maps one host buffer per RAM bank into Unicorn with
`mem_map_ptr` and exposes the same buffers as `machine.phys` (a PhysMem), loads the
firmware's segments, maps the devices and the hypercall doorbells, and `run()` executes
it in slices until the firmware exits or something ends the run.

Time: `machine.instructions` is the machine's clock: instructions executed plus idle
time skipped in `wfi`. Each slice is `emu_start(pc, UNTIL, count=n)` with
n = min(burst, next device deadline - now, budget left); devices are serviced and
interrupts delivered only between slices (DESIGN.md). The burst is the quantum (100k
by default: a counted slice runs ~6x slower than free-running, and each boundary costs
a few register reads), shortened where short slices pay (`_next_count`): after a wfi,
and while an interrupt is pending but masked by mstatus.MIE, so it is taken within a
few instructions of being unmasked.

Cuts (exact mid-slice boundaries): a store that moves a deadline earlier than the
slice's end (an mtimecmp write; every DMA start) and an mtime read (outside a
READ_WINDOW slice) end the slice right there. The MMIO callback points the PC into the
idle sled (no emu_stop: Unicorn abandons the instruction after its device effect, and
nothing replays that we did not choose): a store resumes at the next instruction, an
mtime load is replayed at the boundary, where time is exact. Measured on the demo:
timer interrupts taken 0-1 instructions after mtimecmp (was up to a quantum), DMA
completions on time, mtime reads within READ_WINDOW instructions.

Exact stops through the idle sled (memlayout.IDLE_SLED_BASE): Unicorn does not say how
many instructions ran when a slice stops early, so the machine never stops a slice
early when it can avoid it. When the CPU reaches `wfi` (a code hook on each `wfi`
found in the ELF), an `ecall`, or a fault reported through the interrupt hook, the hook
records why and points the PC into an execute-only run of `nop`s that loops on itself.
The slice runs out its count there; where the PC stands when it ends (plus a counter of
laps, from a hook on the loop's jump) gives the instructions spent in the sled, so
count - sled = instructions executed before the stop, exactly.

Approximate counts: a memory fault (Unicorn raises out of `emu_start`) and a fatal
error reported from an MMIO callback (`fatal()` stops the emulator: the run is ending)
stop mid-slice with no way to count; `instructions` is then the clock at the start of
that slice (a lower bound, off by less than one quantum, still deterministic) and
`RunResult.exact` is False.

Run reasons (RunResult.reason): "exit" (ecall exit; exit_code = a0, signed),
"panic" (ecall panic), "fault" (CPU fault), "fatal" (a fatal report: bad ecall, bad
doorbell, or the composer's `fatal()`), "budget" (max_instructions), "timeout"
(wall clock), "wfi" (wfi with nothing that can ever wake it).

Invariants:
 1. Unicorn is never stopped from a memory or MMIO callback unless the run is ending.
 2. Time moves only at boundaries; devices see `Clock.now` = the start of the slice.
 3. Firmware misbehaviour never raises out of `run()`: it becomes a KallocError in
    `RunResult.errors` and a reason. (A bug in Python code run from a hook does raise.)
 4. Same board, firmware, options and seed: the same RunResult, wall_s aside.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import unicorn
from unicorn import UcError

from kalloc.errors import BadArgumentError, CpuFaultError, KallocError, TimeoutError_
from kalloc.physmem import PhysMem, RamBank, anonymous_buffer
from kalloc_machine.board import Board, DeviceSpec
from kalloc_machine.bridge import abi
from kalloc_machine.devices import Clint, Clock, Device, DmaEngine, Intc, IrqInjector, Uart
from kalloc_machine.elf import Firmware
from kalloc_machine.isa import CAUSE_EXTERNAL, CAUSE_TIMER, RiscV32
from kalloc_machine.memlayout import DOORBELL_BASE, DOORBELL_SIZE, IDLE_SLED_BASE, IDLE_SLED_SIZE

UNTIL = 0xFFFF_FFFF  # an odd address: PC never equals it, so `until` never stops a slice
NOP = (0x0000_0013).to_bytes(4, "little")  # addi x0, x0, 0
# Instructions per lap: SLED_LEN - 1 nops and a jump back. Each run translates the sled
# once (TCG: ~1.6 µs per instruction) and each lap calls the lap hook once: 1024 costs
# ~4 ms to translate and ~1.6 ms per 100k burnt instructions, against ~39 ms and ~4 ms
# for the whole 16k-instruction window (measured on Unicorn 2.1.4).
SLED_LEN = 1024
assert 4 * SLED_LEN <= IDLE_SLED_SIZE
SLED_JUMP = IDLE_SLED_BASE + 4 * (SLED_LEN - 1)
WFI_BURST = 256  # first slice after a wfi: an idle loop's wake-up work is short
# First slice after an interrupt entry or a device cut. A cut (mtime read, mtimecmp
# write, DMA start) burns the rest of its slice in the idle sled, and handlers touch
# devices within a few hundred instructions of entry (kalloc_timer_set reads mtime,
# then writes mtimecmp): starting small and doubling bounds that burn by the work done
# since the last cut. Measured with `kalloc bench --only emulation`.
DEVICE_BURST = 256
# After an mtime read was replayed at an exact boundary, the next slice is this short and
# mtime reads inside it are not cut again: kalloc_now() reads mtime three times (hi, lo,
# hi), so every read sees the time within READ_WINDOW instructions, for 2 boundaries.
READ_WINDOW = 64

_ACCESS = {  # Unicorn memory-hook access type -> (verb, what went wrong)
    unicorn.UC_MEM_READ_UNMAPPED: ("read", "unmapped"),
    unicorn.UC_MEM_WRITE_UNMAPPED: ("write", "unmapped"),
    unicorn.UC_MEM_FETCH_UNMAPPED: ("fetch", "unmapped"),
    unicorn.UC_MEM_READ_PROT: ("read", "protected"),
    unicorn.UC_MEM_WRITE_PROT: ("write", "protected"),
    unicorn.UC_MEM_FETCH_PROT: ("fetch", "protected"),
}


def _jal_x0(offset: int) -> bytes:
    """`jal x0, offset` (a plain jump), encoded."""
    imm = offset & 0x1F_FFFF
    insn = (0x6F | ((imm >> 20) & 1) << 31 | ((imm >> 1) & 0x3FF) << 21
            | ((imm >> 11) & 1) << 20 | ((imm >> 12) & 0xFF) << 12)  # fmt: skip
    return insn.to_bytes(4, "little")


@dataclass(slots=True)
class RunResult:
    """How a run ended and what it produced."""

    exit_code: int | None
    reason: str
    instructions: int
    uart: str
    errors: list[KallocError]
    irq_counts: dict[int, int]  # line -> interrupts taken (timer: entries; intc lines: claims)
    wall_s: float
    idle: int = 0  # of `instructions`, the idle time skipped in wfi
    exact: bool = True  # False: `instructions` is the start of the slice the run stopped in
    irq_raised: dict[int, int] = field(default_factory=dict)  # intc line -> times raised
    dma_transfers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Stop:
    """Why a hook sent the CPU into the idle sled (or stopped it)."""

    reason: str  # "exit" | "panic" | "fault" | "fatal" | "wfi"
    pc: int = 0  # wfi: the wfi's address; cut: where to resume
    exit_code: int | None = None
    replay: bool = False  # cut: the instruction at pc was aborted and runs again (not counted)
    device: Device | None = None  # cut: the device whose store poked, to stamp
    store_pc: int = 0  # cut: the MMIO access's own pc


class Machine:
    """One emulated machine, ready to `run()` once.

    Attributes for the composer: `phys` (PhysMem over guest RAM), `on_hypercall`
    (called as on_hypercall(service, block_addr) from the doorbell callback), `dma`
    (the DmaEngine, whose `check` it may replace), `intc`, `clint`, `uart`, `firmware`,
    `board`, `isa`, `uc`.
    """

    def __init__(
        self,
        board: Board,
        firmware: Firmware,
        *,
        max_instructions: int = 1_000_000_000,
        timeout_s: float = 60.0,
        quantum: int | None = None,
        seed: int = 0,
        irq_at: Iterable[int] = (),
        irq_every: int = 0,
        irq_jitter: int = 0,
    ) -> None:
        firmware.check_fits(board)
        self.board = board
        self.firmware = firmware
        self.isa = RiscV32()
        self.max_instructions = max_instructions
        self.timeout_s = timeout_s
        self.quantum = quantum or board.cpu.quantum
        self.seed = seed
        self.clock = Clock()
        self.errors: list[KallocError] = []
        self.on_hypercall: Callable[[int, int], None] = self._no_hypercall_handler
        # Asked first when a slice ends in a UcError: a refused TLB fill (emulator/mmu.py)
        # turns it into a page-fault report; None means "not mine".
        self.on_uc_error: Callable[[UcError], KallocError | None] | None = None
        self.uc = unicorn.Uc(self.isa.uc_arch, self.isa.uc_mode)
        self._keep: list[Any] = []  # host buffers and ctypes views Unicorn points into
        self.phys = self._map_ram()
        self._load(firmware)
        self.devices: list[Device] = []
        self.uart = Uart(DeviceSpec("console", "uart", 0, 0), self.clock)  # replaced if mapped
        self.clint: Clint | None = None
        self.intc: Intc | None = None
        self.dma: DmaEngine | None = None
        self._map_devices()
        self.injector: IrqInjector | None = None
        if irq_at or irq_every:
            if self.intc is None or board.test_irq is None:
                raise ValueError(f"board '{board.name}' has no interrupt controller for the test line")
            self.injector = IrqInjector(board.test_irq, self._raise_irq, irq_at=irq_at, irq_every=irq_every,
                                        irq_jitter=irq_jitter, seed=seed)  # fmt: skip
        self._map_sled()
        self._install_hooks()
        self._timer_taken = 0
        self._stop: _Stop | None = None
        self._laps = 0
        self._mem_fault: tuple[int, int, int, int] | None = None  # access, addr, size, pc
        self._ending: str | None = None  # set by fatal(): the run ends at this boundary
        self._running = False
        self._ran = False
        self._idle_time = 0
        self._exact = True
        self._exit_code: int | None = None
        self._wfi_pc = 0
        self._burst = self.quantum  # next slice length while no interrupt waits (see _next_count)
        self._masked_burst = 1  # next slice length while an interrupt waits for mstatus.MIE
        self._was_masked = False
        self._slice_end = 0  # start + count of the running slice
        self._read_exact = False  # this slice is a READ_WINDOW: mtime reads are not cut
        self._read_window = False  # the next slice must be a READ_WINDOW
        self.cuts = 0  # slices ended early at a poking store or an mtime read (exact)
        self._irq_timer = False  # the last interrupt taken was the timer's
        self.isa.set_pc(self.uc, firmware.entry)

    # -- building the machine -------------------------------------------------------

    def _map_ram(self) -> PhysMem:
        banks = []
        for spec in self.board.ram:
            buf = anonymous_buffer(spec.size)
            anchor = ctypes.c_char.from_buffer(buf)
            self._keep += [buf, anchor]
            self.uc.mem_map_ptr(spec.base, spec.size, unicorn.UC_PROT_ALL, ctypes.addressof(anchor))
            banks.append(RamBank(spec.name, spec.base, spec.size, memoryview(buf), dma=spec.dma))
        return PhysMem(banks)

    def _load(self, firmware: Firmware) -> None:
        for seg in firmware.segments:
            self.phys.write(seg.paddr, seg.data)
            self.phys.fill(seg.paddr + len(seg.data), seg.memsz - len(seg.data), 0)

    def _map_devices(self) -> None:
        for spec in self.board.devices:
            dev: Device
            if spec.type == "uart":
                dev = self.uart = Uart(spec, self.clock)
            elif spec.type == "clint":
                dev = self.clint = Clint(spec, self.clock)
            elif spec.type == "intc":
                dev = self.intc = Intc(spec, self.clock)
            else:  # "dma": board.py admits no other type
                continue
            self.devices.append(dev)
        spec = self.board.device("dma")
        if spec is not None:
            self.dma = DmaEngine(spec, self.clock, self.board, self.phys, self._raise_irq, self.report)
            self.devices.append(self.dma)
        for dev in self.devices:
            self.uc.mmio_map(dev.base, dev.size, self._mmio_read, dev, self._mmio_write, dev)
        self.uc.mmio_map(DOORBELL_BASE, DOORBELL_SIZE, self._mmio_read, None, self._doorbell, None)

    def _map_sled(self) -> None:
        self.uc.mem_map(IDLE_SLED_BASE, IDLE_SLED_SIZE, unicorn.UC_PROT_EXEC)
        self.uc.mem_write(IDLE_SLED_BASE, NOP * (SLED_LEN - 1) + _jal_x0(IDLE_SLED_BASE - SLED_JUMP))

    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED | unicorn.UC_HOOK_MEM_PROT, self._on_mem_fault)
        uc.hook_add(unicorn.UC_HOOK_CODE, self._on_sled_lap, None, SLED_JUMP, SLED_JUMP)
        for pc in self.firmware.wfi_pcs:  # ranged hooks: free everywhere else
            uc.hook_add(unicorn.UC_HOOK_CODE, self._on_wfi, None, pc, pc)

    # -- public API for the composer -----------------------------------------------------

    @property
    def instructions(self) -> int:
        """Machine time at the last slice boundary."""
        return self.clock.now

    def report(self, err: KallocError) -> None:
        """Record a non-fatal error. Safe from any callback."""
        self.errors.append(err)

    def fatal(self, err: KallocError) -> None:
        """Record an error that ends the run. Safe from any callback: stopping the emulator
        from an MMIO callback is allowed here because the run never resumes."""
        self.errors.append(err)
        if self._ending is None:
            self._ending = "fatal"
        if self._running:
            self.uc.emu_stop()

    def irq_line(self) -> int:
        """The line whose handler runs now (meaningful only in interrupt context): the timer's
        when the timer was the last interrupt taken, else the line the handler claimed."""
        if self._irq_timer or self.intc is None:
            return self.clint.irq or 0 if self.clint is not None else 0
        return self.intc.last_claimed

    def uart_output(self) -> str:
        return self.uart.text()

    def console_write(self, data: bytes) -> None:
        """Append bytes to the UART output (the CONSOLE_WRITE hypercall)."""
        self.uart.send(data)

    def regs(self) -> dict[str, int]:
        """pc and x1..x31 by ABI name."""
        return self.isa.read_regs(self.uc)

    # -- callbacks (record and queue only; module invariant 1) ------------------------------

    def _mmio_read(self, uc: unicorn.Uc, offset: int, size: int, dev: Device | None) -> int:
        if dev is self.clint and dev is not None and dev.is_mtime(offset) and not self._read_exact:
            self._cut(replay=True)  # the load runs again at a boundary, where time is exact
            return 0
        return dev.read(offset, size) if dev is not None else 0

    def _mmio_write(self, uc: unicorn.Uc, offset: int, size: int, value: int, dev: Device) -> None:
        dev.write(offset, size, value)
        if dev.poked:
            dev.poked = False
            deadline = dev.deadline()
            # a DMA start is always cut, so the transfer is timed from the exact store
            if deadline is not None and (deadline < self._slice_end or dev is self.dma):
                self._cut(replay=False, device=dev)

    def _cut(self, *, replay: bool, device: Device | None = None) -> None:
        """End the slice at the current MMIO access, exactly (module docstring, "Cuts").

        Sends the CPU into the idle sled from inside the callback: Unicorn abandons the
        instruction there (the store's device effect is done; nothing after it runs),
        and the sled counts the rest of the slice. No emu_stop, so nothing replays that
        we did not choose: a store resumes after itself, a replayed mtime load at itself.
        """
        if not self._running or self._stop is not None:
            return
        pc = self.isa.pc(self.uc)
        if not replay:
            try:
                pc += 4 if self.phys.read(pc, 2)[0] & 3 == 3 else 2
            except ValueError:
                return  # code outside RAM: leave the deadline to the next boundary
        self._stop = _Stop("cut", pc=pc, replay=replay, device=device, store_pc=self.isa.pc(self.uc))
        self.isa.set_pc(self.uc, IDLE_SLED_BASE)

    def _doorbell(self, uc: unicorn.Uc, offset: int, size: int, value: int, _ud: Any) -> None:
        if offset & 3 or size != 4:
            self.fatal(BadArgumentError(
                f"doorbell store of {size} bytes at offset {offset:#x}: a hypercall is one 32-bit `sw` "
                "to DOORBELL_BASE + 4*service", addr=DOORBELL_BASE + offset,
            ))  # fmt: skip
            return
        try:
            self.on_hypercall(offset // 4, value & 0xFFFF_FFFF)
        except KallocError as err:
            self.fatal(err)

    def _no_hypercall_handler(self, service: int, block: int) -> None:
        self.report(BadArgumentError(f"hypercall {service} with block {block:#x}: no hypercall handler",
                                     addr=block, service=service))  # fmt: skip

    def _on_intr(self, uc: unicorn.Uc, intno: int, _ud: Any) -> None:
        isa = self.isa
        if intno == isa.ecall_intno:
            nr, a0, _a1 = isa.syscall_args(uc)
            if nr == abi.ECALL_EXIT:
                self._stop = _Stop("exit", exit_code=a0 - (1 << 32) if a0 & 0x8000_0000 else a0)
            elif nr == abi.ECALL_PANIC:
                pc = isa.pc(uc) - 4
                self.errors.append(self._fault_error(f"firmware panic: {self._cstr(a0)}", pc))
                self._stop = _Stop("panic")
            else:
                pc = isa.pc(uc) - 4
                self.errors.append(BadArgumentError(
                    f"ecall number {nr} does not exist (exit is {abi.ECALL_EXIT}, panic {abi.ECALL_PANIC})",
                    pc=pc, backtrace=self._backtrace(pc), service=nr,
                ))  # fmt: skip
                self._stop = _Stop("fatal")
        else:
            pc = isa.pc(uc) - isa.fault_pc_adjust
            self.errors.append(self._fault_error(f"{isa.fault_name(intno)}: {self._instruction_at(pc)}", pc))
            self._stop = _Stop("fault")
        isa.set_pc(uc, IDLE_SLED_BASE)

    def _on_wfi(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self._stop = _Stop("wfi", pc=address)
        self.isa.set_pc(uc, IDLE_SLED_BASE)

    def _on_sled_lap(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self._laps += 1

    def _on_mem_fault(self, uc: unicorn.Uc, access: int, addr: int, size: int, value: int, _ud: Any) -> bool:
        self._mem_fault = (access, addr, size, self.isa.pc(uc))
        return False

    # -- reports ----------------------------------------------------------------------------

    def _cstr(self, addr: int) -> str:
        try:
            return self.phys.read_cstr(addr, 256).decode("utf-8", "replace")
        except ValueError:
            return f"<message at {addr:#x} is not a string in RAM>"

    def _backtrace(self, pc: int, regs: dict[str, int] | None = None) -> list[int]:
        """The fp-chain backtrace of the CPU's current state, starting at pc."""
        regs = regs or self.isa.read_regs(self.uc)
        ra = regs["ra"]
        pcs = self.isa.backtrace(self.phys.read_u32, pc, ra, regs["s0"],
                                 in_ram=lambda a: self.phys.contains(a, 8),
                                 is_code=self.firmware.is_code)  # fmt: skip
        # A leaf's epilogue may restore s0 before the faulting instruction: the walk then
        # starts at the caller's caller. ra still returns into the direct caller; in any
        # other state ra is either pcs[1] or points back into the faulting function.
        fw = self.firmware
        if len(pcs) > 1 and ra != pcs[1] and fw.is_code(ra):
            here, there = fw.symbol_at(pc), fw.symbol_at(ra - 1)
            if here is None or there is None or here[0] != there[0]:
                pcs.insert(1, ra)
        return pcs

    def _instruction_at(self, pc: int) -> str:
        bank = self.phys.bank_of(pc)
        if bank is None:
            return "??"
        return self.firmware.disassemble(pc, self.phys.read(pc, min(4, bank.end - pc)))

    def _fault_error(self, message: str, pc: int, access: dict[str, Any] | None = None) -> CpuFaultError:
        regs = self.isa.read_regs(self.uc)
        regs["pc"] = pc
        return CpuFaultError(
            message,
            addr=access["addr"] if access else pc,
            pc=pc,
            instruction=self._instruction_at(pc),
            registers=regs,
            backtrace=self._backtrace(pc, regs),
            access=access,
        )

    def _memory_fault_error(self, exc: UcError) -> KallocError:
        if self.on_uc_error is not None:
            err = self.on_uc_error(exc)
            if err is not None:
                return err
        if self._mem_fault is None:
            pc = self.isa.pc(self.uc)
            return self._fault_error(f"the CPU stopped: {exc}", pc)
        access, addr, size, pc = self._mem_fault
        verb, what = _ACCESS.get(access, ("access", "bad"))
        if verb == "fetch":  # pc is the target; ra is most likely the call site (jalr)
            regs = self.isa.read_regs(self.uc)
            err = self._fault_error(f"jump to {what} address {addr:#x} (ra = {regs['ra']:#x})", addr,
                                    {"type": verb, "addr": addr, "size": size})  # fmt: skip
            if regs["ra"]:
                err.fields["backtrace"] = [addr, *self._backtrace(regs["ra"], regs)]
            return err
        msg = f"{verb} of {size} bytes at {what} address {addr:#x}"
        return self._fault_error(msg, pc, {"type": verb, "addr": addr, "size": size})

    # -- the run loop --------------------------------------------------------------------------

    def _raise_irq(self, line: int) -> None:
        if self.intc is not None:
            self.intc.raise_line(line)

    def _timed(self) -> list[Any]:
        return [d for d in (*self.devices, self.injector) if d is not None]

    def _service(self) -> None:
        now = self.clock.now
        for d in self._timed():
            d.service(now)

    def _next_deadline(self) -> int | None:
        now = self.clock.now
        due = [t for d in self._timed() if (t := d.deadline()) is not None and t > now]
        return min(due) if due else None

    def _deliver_interrupt(self) -> bool:
        """Take the highest-priority pending enabled interrupt, if any (external first).

        Returns True when an interrupt is pending and enabled in mie but masked by
        mstatus.MIE: the firmware is expected to unmask it soon (see `_next_count`).
        """
        now = self.clock.now
        ext = self.intc is not None and self.intc.asserted()
        timer = self.clint is not None and self.clint.pending(now)
        if not (ext or timer):
            return False
        timer_en, ext_en = self.isa.pending_enable(self.uc)
        ext, timer = ext and ext_en, timer and timer_en
        if not (ext or timer):
            return False
        if not self.isa.interrupts_enabled(self.uc):
            return True
        if ext:
            self.isa.enter_interrupt(self.uc, CAUSE_EXTERNAL)
            self._irq_timer = False
        else:
            self.isa.enter_interrupt(self.uc, CAUSE_TIMER)
            self._timer_taken += 1
            self._irq_timer = True
        self._burst = min(DEVICE_BURST, self.quantum)
        return False

    def _next_count(self, masked: bool) -> int:
        """The length of the next slice before deadlines and budget (adaptive).

        Short slices cost a little each; a slice that reaches wfi or ecall runs its
        remaining count out in the idle sled, which costs time. So: after a wfi the next
        slice is short (WFI_BURST) and each slice that runs out doubles the next one, up
        to the quantum; while an interrupt waits for mstatus.MIE, slices restart at 1
        instruction and double, so the interrupt is taken within a few instructions of
        the `csrsi mstatus` that unmasks it (the usual check-then-wfi idle loop).
        """
        was_masked, self._was_masked = self._was_masked, masked
        if masked:
            self._masked_burst = min(2 * self._masked_burst, self.quantum) if was_masked else 1
            return self._masked_burst
        return self._burst

    def _can_wake(self) -> bool:
        """wfi wakes on any interrupt pending and enabled in mie, whatever mstatus.MIE."""
        timer_en, ext_en = self.isa.pending_enable(self.uc)
        now = self.clock.now
        return bool((timer_en and self.clint is not None and self.clint.pending(now))
                    or (ext_en and self.intc is not None and self.intc.asserted()))  # fmt: skip

    def _idle(self) -> str | None:
        """Fast-forward through wfi. Returns a reason when the run must end."""
        while True:
            self._service()  # what fell due inside the slice that reached wfi
            if self._can_wake():
                return None
            deadline = self._next_deadline()
            if deadline is None:
                self.errors.append(TimeoutError_(
                    "wfi with nothing to wake it: no timer, DMA transfer or injected interrupt is pending "
                    "or enabled", pc=self._wfi_pc, backtrace=self._backtrace(self._wfi_pc),
                ))  # fmt: skip
                return "wfi"
            target = min(deadline, self.max_instructions)
            self._idle_time += target - self.clock.now
            self.clock.now = target
            if target >= self.max_instructions:
                return None  # the loop reports the budget

    def _slice(self, count: int) -> str | None:
        """Run one slice of at most `count` instructions. Returns a reason when the run ends."""
        uc = self.uc
        start = self.clock.now
        self._stop, self._laps, self._mem_fault = None, 0, None
        self._slice_end = start + count
        self._read_exact, self._read_window = self._read_window, False
        self._running = True
        try:
            uc.emu_start(self.isa.pc(uc), UNTIL, count=count)
        except UcError as exc:
            self._running = False
            self._exact = False
            self.errors.append(self._memory_fault_error(exc))
            return "fault"
        self._running = False
        stop = self._stop
        if stop is None:
            if self._ending is not None:  # fatal() from a callback stopped the slice
                self._exact = False
                return self._ending
            pc = self.isa.pc(uc)
            if IDLE_SLED_BASE <= pc < IDLE_SLED_BASE + IDLE_SLED_SIZE:
                self.clock.now = start + count
                self.errors.append(self._fault_error("jump into the idle sled: not firmware code", pc))
                return "fault"
            self.clock.now = start + count
            self._burst = min(2 * self._burst, self.quantum)
            return self._ending
        in_sled = self._laps * SLED_LEN + (self.isa.pc(uc) - IDLE_SLED_BASE) // 4
        self.clock.now = start + count - in_sled
        if stop.reason == "cut":
            self.cuts += 1
            self._burst = min(DEVICE_BURST, self.quantum)
            if stop.replay:  # the aborted load was counted; it runs again next slice
                self.clock.now -= 1
                self._read_window = True
            self.isa.set_pc(uc, stop.pc)
            if stop.device is not None:
                stop.device.stamp(self.clock.now)
                if stop.device is self.dma and self.dma.current is not None:  # who started it
                    self.dma.current.pc = stop.store_pc
                    self.dma.current.backtrace = self._backtrace(stop.store_pc)
            return self._ending
        if stop.reason == "exit":
            self._exit_code = stop.exit_code
            return "exit"
        if stop.reason != "wfi":
            return stop.reason
        self._wfi_pc = stop.pc
        self._burst = min(WFI_BURST, self.quantum)
        self._was_masked = False  # after wfi, the unmasking may be the very next instruction
        self.isa.set_pc(uc, stop.pc + 4)
        return self._ending or self._idle()

    def run(self) -> RunResult:
        """Run the firmware until it exits or something ends the run."""
        if self._ran:
            raise RuntimeError("a Machine runs once; build a new one")
        self._ran = True
        started = time.perf_counter()
        reason: str | None = None
        while reason is None:
            now = self.clock.now
            if now >= self.max_instructions:
                pc = self.isa.pc(self.uc)
                self.errors.append(TimeoutError_(f"instruction budget exhausted ({self.max_instructions})",
                                                 pc=pc, backtrace=self._backtrace(pc),
                                                 budget=self.max_instructions))  # fmt: skip
                reason = "budget"
                break
            if time.perf_counter() - started > self.timeout_s:
                self.errors.append(TimeoutError_(f"wall-clock limit of {self.timeout_s:g} s exceeded",
                                                 pc=self.isa.pc(self.uc)))  # fmt: skip
                reason = "timeout"
                break
            self._service()
            if self._ending is not None:
                reason = self._ending
                break
            masked = self._deliver_interrupt()
            count = min(self._next_count(masked), self.max_instructions - now)
            if self._read_window:
                count = min(count, READ_WINDOW)
            deadline = self._next_deadline()
            if deadline is not None:
                count = min(count, deadline - now)
            reason = self._slice(count)
        return self._result(reason, time.perf_counter() - started)

    def _result(self, reason: str, wall: float) -> RunResult:
        counts: dict[int, int] = {}
        if self.clint is not None and self._timer_taken:
            counts[self.clint.irq if self.clint.irq is not None else 0] = self._timer_taken
        if self.intc is not None:
            counts.update(self.intc.claimed)
        return RunResult(
            exit_code=self._exit_code if reason == "exit" else None,
            reason=reason,
            instructions=self.clock.now,
            uart=self.uart.text(),
            errors=list(self.errors),
            irq_counts=dict(sorted(counts.items())),
            wall_s=wall,
            idle=self._idle_time,
            exact=self._exact,
            irq_raised=dict(sorted(self.intc.raised.items())) if self.intc else {},
            dma_transfers=[t.as_dict() for t in self.dma.transfers] if self.dma else [],
        )
