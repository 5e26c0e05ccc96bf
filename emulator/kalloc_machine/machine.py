"""The machine: a Unicorn CPU, the board's RAM and devices, and the composer's interface.

`Machine(board, firmware)` picks the board's ISA (`isa_for(board.cpu.isa)`), maps one
host buffer per RAM bank into Unicorn with `mem_map_ptr` and exposes the same buffers
as `machine.phys` (a PhysMem), loads the firmware's segments, maps the devices and the
hypercall doorbells, and builds the parts that run it:

    faults   FaultReporter (faults.py): cpu-fault errors and the backtrace
    sled     IdleSled (sled.py): the idle sled and the hooks that end a slice exactly
    loop     RunLoop (runloop.py): slices, time, interrupt delivery, wfi; `run()`

This module holds the building and the MMIO side: the device and doorbell callbacks
(which cut a slice through `sled.cut` when a store moves a deadline or an mtime read
must be exact) and what the composer (session.py) calls: `report`, `fatal`,
`irq_line`, `regs`, `backtrace`, `console_write`, `run`.

Invariants:
 1. MMIO callbacks change only device registers and queues, and end a slice only
    through `sled.cut` or `fatal` (the run is ending), both exact through the idle sled:
    never with emu_stop (a stopped store replays; docs/architecture.md).
 2. Guest RAM is one host buffer per bank, shared by Unicorn and `phys`; `host_buffers`
    keeps them (and their ctypes anchors) alive as long as the machine.
 3. The machine's ISA is the board's: nothing here names a register or an encoding.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import Any

import unicorn

from kalloc.errors import BadArgumentError, KallocError
from kalloc.physmem import PhysMem, RamBank, anonymous_buffer
from kalloc_machine.boardspec import Board, DeviceSpec
from kalloc_machine.devices import Clint, Clock, Device, Intc, IrqInjector, Uart
from kalloc_machine.dmaengine import DmaEngine
from kalloc_machine.elf import Firmware
from kalloc_machine.faults import FaultReporter
from kalloc_machine.hostlimits import sigint_stops
from kalloc_machine.irqstate import IrqState
from kalloc_machine.isa import Isa, isa_for
from kalloc_machine.memlayout import DOORBELL_BASE, DOORBELL_SIZE, IDLE_SLED_SIZE
from kalloc_machine.rawmmio import escape, map_raw
from kalloc_machine.report.errorlog import ErrorLog
from kalloc_machine.runloop import RunLoop, RunResult
from kalloc_machine.sled import IdleSled, UcErrorHook
from kalloc_machine.timerport import TimerPort

__all__ = ["Machine", "RunResult"]

WALL_POLL_CALLS = 4096  # a slice of costly hypercalls still meets --timeout (runloop.py, "Limits")


class Machine:
    """One emulated machine, ready to `run()` once.

    Attributes for the composer: `phys` (PhysMem over guest RAM), `on_hypercall`
    (called as on_hypercall(service, block_addr) from the doorbell callback),
    `on_uc_error` (asked first when a slice ends in a UcError: a refused TLB fill,
    mmu.py, turns it into a page-fault report; None means "not mine"), `dma` (the
    DmaEngine, whose `check` it may replace), `intc`, `clint`, `uart`, `firmware`,
    `board`, `isa`, `uc`, `errors`, `clock`, `max_instructions` (the harness moves it).
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
        self.isa: Isa = isa_for(board.cpu.isa)
        self.max_instructions = max_instructions
        self.timeout_s = timeout_s
        self.quantum = quantum or board.cpu.quantum
        self.seed = seed
        self.clock = Clock()
        self.errors = ErrorLog()  # deduplicated and capped as filed (report/errorlog.py)
        self.before_error: list[Callable[[], None]] = []  # called before an error is filed (fastpath.py)
        self.on_hypercall: Callable[[int, int], None] = self._no_hypercall_handler
        self.on_uc_error: UcErrorHook | None = None
        self.uc = unicorn.Uc(self.isa.uc_arch, self.isa.uc_mode)
        self.isa.setup(self.uc)
        self.isa.bind(firmware.isa)
        self.host_buffers: list[Any] = []  # host buffers and ctypes views Unicorn points into
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
        self.faults = FaultReporter(self.isa, self.uc, self.phys, firmware, self._regions())
        self.sled = IdleSled(self.isa, self.uc, self.phys, self.faults, self.errors)
        self.sled.install(firmware.wfi_pcs)
        self.irq_state = IrqState(self.isa, self.uc, self.clock)  # the caller context's truth (irqstate.py)
        self.irq_state.install(firmware)
        self.sled.on_exception_return = self.irq_state.returned  # Isa.return_intno (EXC_RETURN, mret)
        self.loop = RunLoop(self)
        self._calls = 0  # hypercalls so far: the wall clock is read every WALL_POLL_CALLS of them
        self._fatal_pc = -1  # the pc of the instruction whose `fatal` ended the run
        # Cortex-M: the IT state the engine's own fill of the doorbell page restored, put back (mmu.py)
        self.doorbell_settle: Callable[[], None] | None = None
        self.report_interrupts = False  # True: an interrupted run returns its result (kalloc run)
        self.isa.set_pc(self.uc, firmware.entry)

    # -- building the machine -------------------------------------------------------

    def _map_ram(self) -> PhysMem:
        banks = []
        for spec in self.board.ram:
            buf = anonymous_buffer(spec.size)
            anchor = ctypes.c_char.from_buffer(buf)
            self.host_buffers += [buf, anchor]
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
        dma_spec = self.board.device("dma")
        if dma_spec is not None:
            self.dma = DmaEngine(dma_spec, self.clock, self.board, self.phys, self._raise_irq, self.report)
            self.devices.append(self.dma)
        self.devices += self.isa.core_devices(self)  # the CPU's own (Cortex-M: the System Control Space)
        for dev in self.devices:
            if dev is self.clint:  # raw ctypes callbacks: a tick's ten accesses (timerport.py)
                self.host_buffers += TimerPort(self, dev).map()
                continue
            if hasattr(dev, "map_raw"):  # a device with raw callbacks of its own (Cortex-M's SCS)
                self.host_buffers += dev.map_raw(self)
                continue
            self.uc.mmio_map(dev.base, dev.size, self._mmio_read, dev, self._mmio_write, dev)
        # the doorbell without the binding's per-call wrappers (rawmmio.py: ~9% of an empty hypercall)
        self.host_buffers += map_raw(self.uc, DOORBELL_BASE, DOORBELL_SIZE, self._mmio_read, self._doorbell,
                                     guarded=True)  # fmt: skip

    def _regions(self) -> list[tuple[int, int, str]]:
        """What is mapped outside RAM, for fault messages (faults.py)."""
        spans = [(d.base, d.base + d.size, f"the {d.name} device's MMIO registers") for d in self.devices]
        spans.append((DOORBELL_BASE, DOORBELL_BASE + DOORBELL_SIZE, "the hypercall doorbells (MMIO)"))
        base = self.isa.sled_base
        spans.append((base, base + IDLE_SLED_SIZE, "the machine's idle sled"))
        return spans

    # -- public API for the composer -----------------------------------------------------

    @property
    def instructions(self) -> int:
        """Machine time at the last slice boundary."""
        return self.clock.now

    def report(self, err: KallocError) -> None:
        """Record a non-fatal error (counted on its first twin, or suppressed past the cap: ErrorLog).
        Safe from any callback."""
        for fn in self.before_error:
            fn()
        self.errors.add(err)

    def fatal(self, err: KallocError, reason: str = "fatal") -> None:
        """Record an error that ends the run (with `reason`: "fault" for a stack overflow). Safe
        from any callback: inside a slice the CPU goes to the idle sled (sled.end), so the run's
        instruction count stays exact; the run never resumes."""
        if self.sled.running:  # one instruction, one report: Unicorn splits a misaligned store into
            pc = self.isa.pc(self.uc)  # bytes, one callback each (an SCS register, the doorbell); after
            if self.loop.ending is not None and (pc == self._fatal_pc or self.sled.holds(pc)):
                return  # the first, the PC is the sled's (or, in an IT block, still the store's)
            self._fatal_pc = pc
        for fn in self.before_error:
            fn()
        self.errors.append(err)
        if self.loop.ending is None:
            self.loop.ending = reason
        self.sled.end(reason)

    def irq_line(self) -> int:
        """The line whose handler runs now (meaningful only in interrupt context): the timer's
        when the timer was the last interrupt taken, else the line the handler claimed."""
        if self.loop.irq_timer or self.intc is None:
            return self.clint.irq or 0 if self.clint is not None else 0
        return self.intc.last_claimed

    def uart_output(self) -> str:
        return self.uart.text()

    def console_write(self, data: bytes) -> None:
        """Append bytes to the UART output (the CONSOLE_WRITE hypercall)."""
        self.uart.send(data)

    def regs(self) -> dict[str, int]:
        """pc and the general registers by name (`Isa.read_regs`)."""
        return self.isa.read_regs(self.uc)

    def backtrace(self, pc: int, regs: dict[str, int] | None = None, depth: int = 16) -> list[int]:
        """The frame-pointer backtrace from pc of the CPU's current state, or of `regs` (`depth`:
        FaultReporter.backtrace's)."""
        return self.faults.backtrace(pc, regs, depth)

    @property
    def cuts(self) -> int:
        """Slices ended early, exactly, at a poking store or an mtime read."""
        return self.loop.cuts

    def interrupt(self) -> None:
        """Ask the run to end at the next boundary, reason "interrupted" (Ctrl-C; safe from a
        signal handler, even inside a Unicorn callback: the run never resumes)."""
        self.loop.interrupt()

    def run(self) -> RunResult:
        """Run the firmware until it exits or something ends the run (runloop.py).

        A machine runs once, unless `allow_resume` says a break ended the last run.
        Ctrl-C stops it cleanly (hostlimits.py); then, unless `report_interrupts`, this
        raises KeyboardInterrupt (outside any Unicorn callback).
        """
        self.irq_state.resync()
        with sigint_stops(self):
            result = self.loop.run()
        if result.reason == "interrupted" and not self.report_interrupts:
            raise KeyboardInterrupt
        return result

    # -- breaks (the harness: tools/harness.py) ----------------------------------------------

    @property
    def can_break(self) -> bool:
        """True inside a slice no hook has ended yet: a code hook may `request_break`."""
        return not self.sled.stopping

    def request_break(self, pc: int) -> None:
        """From a code hook at pc: end the slice exactly there; `run()` returns "break"
        (the caller puts the PC back at pc, and takes the uncounted instruction off)."""
        self.sled.stop_slice("break", pc)

    def allow_resume(self) -> None:
        """Let the next `run()` continue this run where the last one stopped (a break)."""
        self.loop.allow_resume()

    # -- MMIO callbacks (record and queue only; invariant 1) ---------------------------------

    def _mmio_read(self, uc: unicorn.Uc, offset: int, size: int, dev: Device | None) -> int:
        if dev is None and self.doorbell_settle is not None:  # a doorbell read (mmu.py, "Doorbell")
            self.doorbell_settle()
        if dev is self.clint and dev is not None and dev.is_mtime(offset) and not self.loop.read_exact:
            self.sled.cut(replay=True)  # the load runs again at a boundary, where time is exact
            return 0
        return dev.read(offset, size) if dev is not None else 0

    def _mmio_write(self, uc: unicorn.Uc, offset: int, size: int, value: int, dev: Device) -> None:
        dev.write(offset, size, value)
        if dev.poked:
            dev.poked = False
            self.deadline_moved(dev, dev.deadline())

    def deadline_moved(self, dev: Device, deadline: int | None, in_place: Callable[[], bool] | None = None,
                       ) -> None:  # fmt: skip
        """From the MMIO callback of a store that moved `dev`'s deadline (every device's, the raw ports'
        too: timerport.py, isa/armv7m_scsport.py): the one rule of sled.py's "Cuts". A deadline before
        the running slice's end cuts the slice after the store (`IdleSled.cut`), so the device is
        stamped at the store's exact time, unless `in_place` stamped it there and says so (SysTick's
        start); a DMA start is always cut, so the transfer is timed from the exact store."""
        if (deadline is not None and (deadline < self.loop.slice_end or dev is self.dma)
                and (in_place is None or not in_place())):  # fmt: skip
            self.sled.cut(replay=False, device=dev)

    def _doorbell(self, _uc: Any, offset: int, size: int, value: int, _ud: Any) -> None:
        # the ctypes callback itself (rawmmio.map_raw, guarded): no exception leaves it but by `escape`
        try:
            if self.doorbell_settle is not None:
                self.doorbell_settle()
            if offset & 3 or size != 4:
                self.fatal(BadArgumentError(
                    f"doorbell store of {size} bytes at offset {offset:#x}: a hypercall is one 32-bit `sw` "
                    "to DOORBELL_BASE + 4*service", addr=DOORBELL_BASE + offset,
                ))  # fmt: skip
                return
            try:
                self.on_hypercall(offset >> 2, value & 0xFFFF_FFFF)
            except KallocError as err:
                self.fatal(err)
            self._calls += 1
            if not self._calls % WALL_POLL_CALLS and self.loop.wall_expired():
                self.loop.expire()
        except BaseException as exc:
            escape(self.uc, exc)

    def _no_hypercall_handler(self, service: int, block: int) -> None:
        self.report(BadArgumentError(f"hypercall {service} with block {block:#x}: no hypercall handler",
                                     addr=block, service=service))  # fmt: skip

    def _raise_irq(self, line: int) -> None:
        if self.intc is not None:
            self.intc.raise_line(line)
