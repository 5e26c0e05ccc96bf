"""One run: board + firmware + allocator + bridge, executed, and its report.

`Session` composes the parts the way `kalloc run` (and the tests, and later the
pytest plugin) use them: load the board and the ELF, build the machine, build
the allocator over the machine's RAM with the firmware image reserved, connect
the hypercall bridge, run, then collect leaks and end-of-run checks into the
report (emulator/report.py) and the exit status.

Exit status (DESIGN.md, docs/abi.md): 0 clean; 1–63 the firmware's own exit
code (larger clamp to 63); 64 kalloc found an error; 65 CPU fault (a panic
counts as one); 66 instruction budget or timeout; 2 usage error; 3 bad input.
kalloc's codes win over the firmware's.

Invariants:
 1. The JSON report is a function of (firmware bytes, board, options, seed).
 2. Leaks are only judged when the firmware exited by itself: after a fault
    every live object would be "leaked", which says nothing.
"""

from __future__ import annotations

import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kalloc import Config, Kalloc, kmemleak
from kalloc.errors import KallocError, LeakError
from kalloc.failslab import FailConfig
from kalloc.vmalloc import Vmalloc
from kalloc_machine import memlayout, mmu
from kalloc_machine.board import Board, load_board
from kalloc_machine.bridge import abi, commit, faultinject, kasan, vmbridge
from kalloc_machine.bridge.dmacheck import DmaCheck
from kalloc_machine.bridge.hypercall import Bridge
from kalloc_machine.elf import Firmware, load_firmware
from kalloc_machine.machine import Machine, RunResult
from kalloc_machine.report.interrupts import annotate_interrupt_context, dma_section, interrupts_section
from kalloc_machine.report.model import Symbolizer, error_entry

VERSION = "0.1.0"

EXIT_ERROR = 64
EXIT_FAULT = 65
EXIT_TIMEOUT = 66
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3


class BadInput(Exception):
    """A board or ELF that cannot be used (exit status 3)."""


@dataclass(slots=True)
class RunOptions:
    firmware: str | None = None  # None: the shipped demo
    board: str = "default"
    seed: int = 0
    sanitize: str = "poison"
    max_instructions: int = 500_000_000
    timeout_s: float = 120.0
    quantum: int = 100_000
    irq_every: int = 0  # the test-interrupt injector (issue 4): period, jitter, explicit times
    irq_jitter: int = 0
    irq_at: tuple[int, ...] = ()
    heap: str = "kmalloc"  # the policy behind the C library face (kalloc.heaps, issue 6)
    quarantine: int | None = None  # issue 5: kasan quarantine bytes (None: the allocator's default)
    fail_nth: tuple[int, ...] = ()  # issue 5: fault injection (emulator/faultinject.py)
    fail_prob: float = 0.0
    fail_site: str | None = None
    fail_context: str = "any"
    fail_cache: str | None = None


@dataclass(slots=True)
class RunOutcome:
    report: dict[str, Any]
    exit_status: int
    wall_s: float
    result: RunResult


class Session:
    """A booted machine with its allocator and bridge, ready to run."""

    def __init__(self, options: RunOptions) -> None:
        from kalloc_machine.sdk import default_firmware

        self.options = options
        fw_path = options.firmware or str(default_firmware())
        try:
            self.board: Board = load_board(options.board)
        except (ValueError, OSError) as exc:
            raise BadInput(f"board {options.board}: {exc}") from None
        try:
            self.firmware: Firmware = load_firmware(fw_path)
            self.firmware.check_fits(self.board)
        except (ValueError, OSError) as exc:
            raise BadInput(f"firmware {Path(fw_path).name}: {exc}") from None
        self.firmware_name = Path(fw_path).name
        try:
            self.machine = Machine(
                self.board,
                self.firmware,
                max_instructions=options.max_instructions,
                timeout_s=options.timeout_s,
                quantum=options.quantum,
                seed=options.seed,
                irq_at=options.irq_at,
                irq_every=options.irq_every,
                irq_jitter=options.irq_jitter,
            )
        except ValueError as exc:  # the injector on a board without a test line
            raise BadInput(f"board {options.board}: {exc}") from None
        image = (memlayout.FIRMWARE_LOAD, self.firmware.image_end, "firmware")
        reserved = [image]
        self.kasan_mode = kasan.mode_for(options.sanitize, self.firmware)  # compiled / hook / None
        shadow = None
        if self.kasan_mode == "compiled":  # the guest shadow: reserved RAM, label "shadow"
            try:
                shadow = kasan.shadow_reservation(self.machine.phys, self.firmware.image_end)
            except ValueError as exc:
                raise BadInput(f"board {options.board}: {exc}") from None
            reserved.append(shadow)
        config = Config(sanitize=options.sanitize, seed=options.seed, quarantine_bytes=options.quarantine)
        self.ka = Kalloc(self.machine.phys, config, reserved=reserved)
        self.bridge = Bridge(self.machine, self.ka, console=self.machine.console_write)
        self.bridge.bootinfo = self._bootinfo()
        self.machine.on_hypercall = self.bridge
        from kalloc.heaps import make_heap  # issue 6: the C library face's policy (--heap)

        # Virtual memory (issue 6): kalloc's page tables, the CPU's translation through them,
        # the vmalloc services and the virtual-pointer checks of the bridge (emulator/vmbridge.py).
        self.vm = Vmalloc(self.ka)
        self.mmu = mmu.install(self.machine, self.vm)
        self.heap = make_heap(options.heap, self.ka, self.vm)
        self.bridge.libc = self.heap
        self.vmsvc = vmbridge.install(self)
        self.commit = commit.install(self)  # committed pages per kind, high water, headroom
        self.kasan = kasan.install(self, self.kasan_mode, shadow)
        try:
            self.faults = faultinject.install(self, FailConfig(
                nth=options.fail_nth, probability=options.fail_prob, site=options.fail_site,
                context=options.fail_context, cache=options.fail_cache, seed=options.seed))  # fmt: skip
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if self.machine.dma is not None:  # transfers judged against the allocator (issue 4)
            sanitize = self.ka.config.sanitize != "off"
            check = DmaCheck(self.machine.dma, self.ka, sanitize=sanitize, exempt=((image[0], image[1]),))
            self.machine.dma.check = self.vmsvc.dma_check(check)  # virtual addresses refused first
        self.still_reachable: list[Any] = []

    def _bootinfo(self) -> bytes:
        board = self.board
        values: dict[str, int] = {
            "magic": abi.BOOTINFO_MAGIC,
            "abi_version": abi.ABI_VERSION,
            "ram_base": min(b.base for b in self.machine.phys.banks),
            "ram_end": max(b.end for b in self.machine.phys.banks),
        }
        for dev_type, key in (
            ("uart", "uart_base"),
            ("clint", "clint_base"),
            ("intc", "intc_base"),
            ("dma", "dma_base"),
        ):
            dev = board.device(dev_type)
            values[key] = dev.base if dev else 0
        dma = board.device("dma")
        values["dma_irq"] = dma.irq if dma and dma.irq else 0
        values["timer_irq"] = 0  # the CLINT timer is not an INTC line: mcause 7
        values["test_irq"] = board.test_irq or 0
        banks = self.machine.phys.banks[: abi.BOOTINFO_MAX_BANKS]
        values["nbanks"] = len(banks)
        for i, bank in enumerate(banks):
            values[f"bank{i}_base"] = bank.base
            values[f"bank{i}_size"] = bank.size
            values[f"bank{i}_flags"] = abi.BANK_DMA if bank.dma else 0
        return struct.pack(f"<{len(abi.BOOTINFO_FIELDS)}I", *(values.get(f, 0) for f in abi.BOOTINFO_FIELDS))

    def run(self) -> RunOutcome:
        start = time.perf_counter()
        result = self.machine.run()
        errors: list[KallocError] = list(result.errors)
        errors.extend(self.ka.reports)
        self.ka.reports.clear()
        if result.reason == "exit":
            errors.extend(self.ka.check_poison())
            errors.extend(self._leaks())
        if self.faults is not None:
            self.faults.link_fault(errors)
        wall = time.perf_counter() - start
        report = self._report(result, errors)
        return RunOutcome(report, report["exit_code"], wall, result)

    def _leaks(self) -> list[KallocError]:
        """Unreferenced live objects at exit, one error per allocation site (kmemleak-style).

        Objects some root still points to are "still reachable": listed in the report,
        not errors (DESIGN.md, "Leaks").
        """
        fw = self.firmware
        roots = [(seg.vaddr, seg.vaddr + seg.memsz) for seg in fw.segments if seg.flags & 2]
        lo, hi = fw.symbol_addr("__kalloc_stack_bottom"), fw.symbol_addr("__kalloc_stack_top")
        if lo is not None and hi is not None:
            roots.append((lo, hi))
        # Virtual memory: arena objects and vmalloc areas are read through the page tables.
        objects = sorted([*self.ka.live_allocations(), *self.heap.live_allocations(),
                          *vmbridge.vmalloc_allocations(self.vm)], key=lambda o: o.addr)  # fmt: skip
        result = kmemleak.scan(vmbridge.VirtualPhys(self.machine.phys, self.vm), objects,  # type: ignore[arg-type]
                               roots,
                               self.machine.regs().values())  # fmt: skip
        self.still_reachable = result.reachable
        groups: dict[int, list[Any]] = {}
        for a in result.lost:
            groups.setdefault(a.site, []).append(a)
        leaks = []
        for site, objs in groups.items():
            total = sum(o.size for o in objs)
            leaks.append(
                LeakError(
                    f"{len(objs)} object(s), {total} bytes, allocated here and unreferenced at exit",
                    addr=objs[0].addr,
                    site=site,
                    count=len(objs),
                    bytes=total,
                    objects=[{"addr": o.addr, "size": o.size, "kind": o.kind} for o in objs[:16]],
                )
            )
        return leaks

    def _report(self, result: RunResult, errors: list[KallocError]) -> dict[str, Any]:
        sym = Symbolizer(self.firmware, self.ka.depot)
        entries = [error_entry(e, sym) for e in errors]
        for entry, err in zip(entries, errors, strict=True):
            annotate_interrupt_context(entry, err, sym, self.firmware)
        stats = self.ka.stats()
        exit_code = exit_status(result, errors)
        leaks = [e for e in entries if e["kind"] == "leak"]
        opts = asdict(self.options)
        opts.pop("firmware")
        opts.pop("timeout_s")
        return {
            "kalloc_version": VERSION,
            "abi_version": abi.ABI_VERSION,
            "board": self.board.name,
            "firmware": self.firmware_name,
            "options": opts,
            "exit_code": exit_code,
            "firmware_exit_code": result.exit_code,
            "end": result.reason,
            "instructions": result.instructions,
            "uart": result.uart,
            "errors": entries,
            "leaks": {
                "count": sum(e.get("count", 0) for e in leaks),
                "bytes": sum(e.get("bytes", 0) for e in leaks),
                "sites": len(leaks),
                "still_reachable": {
                    "count": len(self.still_reachable),
                    "bytes": sum(o.size for o in self.still_reachable),
                },
            },
            "warnings_firmware": list(self.firmware.warnings),
            "interrupts": {
                "lines": {str(k): v for k, v in sorted(result.irq_counts.items())},
                "context_allocations": asdict(self.bridge.stats.irq),
                **interrupts_section(result, self.machine, self.bridge.stats.lines, self.ka),
            },
            "dma": dma_section(result, self.machine, errors),
            "hypercalls": self.bridge.call_counts(),
            "allocator": stats,
            "buddyinfo": self.ka.buddyinfo(),
            "slabinfo": self.ka.slabinfo(),
            "zoneinfo": self.ka.zoneinfo(),
            "commit": self.commit.section(errors),
            "vm": {**self.vm.stats(), **self.mmu.stats()},
        }


def exit_status(result: RunResult, errors: list[KallocError]) -> int:
    """The process exit status for a run (module docstring)."""
    if result.reason in ("budget", "timeout", "wfi"):
        return EXIT_TIMEOUT
    if result.reason in ("fault", "panic"):
        return EXIT_FAULT
    if any(e.severity == "error" for e in errors) or result.reason != "exit":
        return EXIT_ERROR
    code = result.exit_code or 0
    return min(max(code, 0), 63) if code >= 0 else 63


def run(options: RunOptions) -> RunOutcome:
    """Boot, run and report in one call."""
    return Session(options).run()
