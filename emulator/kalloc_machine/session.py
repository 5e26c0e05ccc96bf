"""One run: board + firmware + allocator + bridge, executed, and its report. The composition root.

`Session` composes the parts the way `kalloc run` (and the tests, the harness and the
pytest plugin) use them: load the board and the ELF, build the machine, build the
allocator over the machine's RAM with the firmware image (and a KASAN shadow) reserved,
connect the hypercall bridge and serve its service families, install the bridge parts
(virtual-pointer guards, commit accounting, KASAN, fault injection, DMA checks) each
with the machine, allocator and bridge it needs, run, then collect leaks and end-of-run
checks into the JSON report (report/json_report.py) and the exit status.

Exit status (docs/abi.md): 0 clean; 1–63 the firmware's own exit code
(larger clamp to 63); 64 kalloc found an error (an `internal` one — kalloc's own bug —
included); 65 CPU fault (a panic counts as one); 66 instruction budget or timeout;
130 interrupted (Ctrl-C: hostlimits.py); 2 usage error; 3 bad input. kalloc's codes win over the firmware's.

Invariants:
 1. The JSON report is a function of (firmware bytes, board, options, seed).
 2. Leaks are only judged when the firmware exited by itself: after a fault
    every live object would be "leaked", which says nothing.
 3. A Python exception in kalloc while the firmware runs ends the run with an
    `internal` report (kalloc_machine.bridge.internal), never a traceback.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kalloc import Config, Kalloc, kmemleak
from kalloc.errors import KallocError, TimeoutError_
from kalloc.failslab import FailConfig
from kalloc.vmalloc import Vmalloc
from kalloc_machine import fastpath, memlayout, mmu
from kalloc_machine.board import Board, load_board
from kalloc_machine.bridge import abi, commit, faultinject, kasan, stackguard, vmbridge
from kalloc_machine.bridge.dmacheck import DmaCheck
from kalloc_machine.bridge.doorbell import Bridge
from kalloc_machine.bridge.internal import internal_error
from kalloc_machine.bridge.record import Recorder
from kalloc_machine.bridge.record import attach as attach_recorder
from kalloc_machine.bridge.services import serve_standard
from kalloc_machine.bridge.services.misc import bootinfo_bytes
from kalloc_machine.bridge.services.tags import install as install_tags
from kalloc_machine.bridge.services.vmalloc import VmallocServices
from kalloc_machine.elf import Firmware, load_firmware
from kalloc_machine.hostlimits import EXIT_INTERRUPTED, BoundedPhys, HostLimit, sigint_stops
from kalloc_machine.machine import Machine, RunResult
from kalloc_machine.report import suppressions
from kalloc_machine.report.interrupts import annotate_interrupt_context, dma_section, interrupts_section
from kalloc_machine.report.json_report import error_entry
from kalloc_machine.report.leaks import leak_errors, leaks_section
from kalloc_machine.report.symbols import Symbolizer
from kalloc_machine.report.tags import TagTracker

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
    fail_nth: tuple[int, ...] = ()  # issue 5: fault injection (bridge/faultinject.py)
    fail_prob: float = 0.0
    fail_site: str | None = None
    fail_context: str = "any"
    fail_cache: str | None = None
    max_errors: int = 1000  # issue 12: distinct errors kept, the rest counted (report/errorlog.py)
    suppress: tuple[str, ...] = ()  # issue 13: suppressions files (report/suppressions.py)
    percpu_cache: int = 0  # issue 14: per-CPU magazines of N objects (kalloc.percpu; 0: plain SLUB)
    fastpath: str = "off"  # issue 14: "on" serves magazine hits in firmware (kalloc_machine/fastpath.py)


@dataclass(slots=True)
class RunOutcome:
    report: dict[str, Any]
    exit_status: int
    wall_s: float
    result: RunResult


class Session:
    """A booted machine with its allocator and bridge, ready to run."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.board, self.firmware, self.firmware_name = _load(options)
        self.machine = self._build_machine()
        self.machine.errors.max_errors = options.max_errors  # error storms: report/errorlog.py
        image = (memlayout.FIRMWARE_LOAD, self.firmware.image_end, "firmware")
        self.kasan_mode = kasan.mode_for(options.sanitize, self.firmware)  # compiled / hook / None
        shadow = self._shadow_reservation()
        config = Config(sanitize=options.sanitize, seed=options.seed, quarantine_bytes=options.quarantine)
        self.ka = Kalloc(self.machine.phys, config, reserved=[image] if shadow is None else [image, shadow])
        self.percpu_note = fastpath.magazines(self.ka, options)  # issue 14: before anything binds ka.malloc
        from kalloc.heaps import make_heap  # issue 6: the C library face's policy (--heap)
        from kalloc.heaps.arena import ArenaHeap

        # Virtual memory (issue 6): kalloc's page tables and the CPU's translation through them.
        self.vm = Vmalloc(self.ka)
        self.mmu = mmu.install(self.machine, self.vm)
        self.heap = make_heap(options.heap, self.ka, self.vm)
        if isinstance(self.heap, ArenaHeap) and self.mmu.hole[0]:  # Cortex-M: the SCS at 0xE000_E000
            self.heap.end = self.mmu.hole[0]  # (docs/architecture.md, "The Cortex-M machine")
        self._wire_bridge()
        self.commit = commit.install(self.bridge, self.ka, self.vm)  # committed pages per kind, headroom
        self.stackguard = stackguard.install(self.machine, self.firmware, self.ka.depot, self.mmu)  # overflow
        stackguard.annotate_frees(self.bridge, self.firmware)  # a freed stack address: whose frame
        self.kasan = kasan.install(self.bridge, self.machine, self.ka, self.firmware, self.kasan_mode, shadow)
        self.faults = self._fault_injection()
        if self.machine.dma is not None:  # transfers judged against the allocator (issue 4)
            sanitize = self.ka.config.sanitize != "off"
            check = DmaCheck(self.machine.dma, self.ka, sanitize=sanitize, exempt=((image[0], image[1]),))
            self.machine.dma.check = self.vmguards.dma_check(check)  # virtual addresses refused first
        self.still_reachable: list[Any] = []
        self._scan_expired: Any = lambda: False  # the leak scan's wall clock / Ctrl-C (_end_checks)
        self.report_interrupts = False  # kalloc run: an interrupted run is reported (hostlimits.py)
        self.fastpath: fastpath.FastPath | None = None
        self.fastpath_note: str | None = None
        if options.fastpath == "on":  # issue 14: the blob, the patches, the drains (fastpath.py)
            self.fastpath, self.fastpath_note = fastpath.install(self)
        try:  # --suppress FILE...: known errors left out of the report
            self.suppressions = suppressions.load(options.suppress)
        except suppressions.SuppressionError as exc:
            raise BadInput(str(exc)) from None

    # -- building ---------------------------------------------------------------------------------

    def _build_machine(self) -> Machine:
        o = self.options
        try:
            return Machine(self.board, self.firmware, max_instructions=o.max_instructions,
                           timeout_s=o.timeout_s, quantum=o.quantum, seed=o.seed, irq_at=o.irq_at,
                           irq_every=o.irq_every, irq_jitter=o.irq_jitter)  # fmt: skip
        except ValueError as exc:  # the injector on a board without a test line
            raise BadInput(f"board {o.board}: {exc}") from None

    def _shadow_reservation(self) -> tuple[int, int, str] | None:
        """The compiled-KASAN mode's guest shadow: reserved RAM, label "shadow" (else None)."""
        if self.kasan_mode != "compiled":
            return None
        try:
            return kasan.shadow_reservation(self.machine.phys, self.firmware.image_end)
        except ValueError as exc:
            raise BadInput(f"board {self.options.board}: {exc}") from None

    def _wire_bridge(self) -> None:
        """The doorbell's bridge, its service families and the virtual-pointer guards."""
        m = self.machine
        self.bridge = Bridge(m, self.ka)
        self.services = serve_standard(self.bridge, self.ka, console=m.console_write,
                                       irq_line=m.irq_line, heap=self.heap,
                                       bootinfo=bootinfo_bytes(self.board, m.phys))  # fmt: skip
        self.bridge.serve("vmalloc", VmallocServices(self.vm, m.phys, self.services.irq))
        self.tags = TagTracker(self.ka, depth=lambda: m.irq_state.depth, clock=lambda: m.instructions,
                               report=m.report)  # issue 18: kalloc_tag_push, --budgets  # fmt: skip
        install_tags(self.bridge, self.tags, m.phys)
        self.vmguards = vmbridge.install(self.bridge, self.vm, console=m.console_write,
                                         arena=self.options.heap == "arena")  # fmt: skip
        m.on_hypercall = self.bridge.__call__  # a bound method: no slot_tp_call per hypercall

    def _fault_injection(self) -> faultinject.FaultInjector | None:
        o = self.options
        config = FailConfig(nth=o.fail_nth, probability=o.fail_prob, site=o.fail_site,
                            context=o.fail_context, cache=o.fail_cache, seed=o.seed)  # fmt: skip
        try:
            return faultinject.install(self.bridge, self.machine, self.ka, self.firmware, config)
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def record(self) -> Recorder:
        """Record the run's allocation trace (`kalloc run --record`): call before `run()`."""
        if self.fastpath is not None:  # a trace records every call as the call is made
            self.fastpath.unpatch()
            self.fastpath, self.fastpath_note = None, "--record records every call"
        rec = attach_recorder(self.ka, self.services.libc)
        rec.tag_of = self.tags.tag_for  # issue 18: the trace's @tag
        return rec

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        start = time.perf_counter()
        self.machine.report_interrupts = self.report_interrupts
        with sigint_stops(self.machine) as sigints:  # Ctrl-C: end "interrupted" (hostlimits.py)
            result = self._run_machine(start)
            if self.fastpath is not None:  # the ring's last records, before the end-of-run checks
                filed = len(self.machine.errors)
                try:
                    self.fastpath.drain()
                except Exception as exc:  # kalloc's own bug: an `internal` report, not a traceback
                    self.machine.errors.append(internal_error(exc, "replaying the fast path's ring"))
                result.errors.extend(self.machine.errors[filed:])  # what the replay filed (a corrupt ring)
            errors: list[KallocError] = list(result.errors)
            errors.extend(self.machine.errors.admit(self.ka.reports))  # deduplicated, capped
            self.ka.reports.clear()
            if result.reason == "exit":
                errors.extend(self.machine.errors.admit(self._end_checks(result, sigints)))
        if result.reason == "interrupted" and not self.report_interrupts:
            raise KeyboardInterrupt  # not `kalloc run`: Ctrl-C aborts the caller (hostlimits.py)
        if self.faults is not None:
            self.faults.link_fault(errors)
        wall = time.perf_counter() - start
        report = self.build_report(result, errors)
        return RunOutcome(report, report["exit_code"], wall, result)

    def _run_machine(self, start: float) -> RunResult:
        """machine.run(), or, when kalloc's own code raised out of it, the run so far with the error."""
        try:
            return self.machine.run()
        except KallocError as err:  # reported where it was raised, never caught on the way
            return self._stopped(err, start)
        except Exception as exc:
            return self._stopped(internal_error(exc, "running the firmware"), start)

    def _stopped(self, err: KallocError, start: float) -> RunResult:
        """The RunResult of a run an exception ended (reason "fatal"), from the machine's public state.

        The timer's interrupt count is the machine's own; a run ended this way lists the
        interrupt controller's lines only.
        """
        m, intc = self.machine, self.machine.intc
        return RunResult(exit_code=None, reason="fatal", instructions=m.instructions, uart=m.uart_output(),
                         errors=[*m.errors, err],
                         irq_counts=dict(sorted(intc.claimed.items())) if intc else {},
                         wall_s=time.perf_counter() - start, exact=False,
                         irq_raised=dict(sorted(intc.raised.items())) if intc else {},
                         dma_transfers=[t.as_dict() for t in m.dma.transfers] if m.dma else [])  # fmt: skip

    def _end_checks(self, result: RunResult, sigints: list[int]) -> list[KallocError]:
        """Poisoned memory overwritten and leaks, after the firmware exited by itself.

        The leak scan honours --timeout and Ctrl-C (hostlimits.BoundedPhys): cut short, it
        judges no leaks and the run's end becomes "timeout" or "interrupted"."""
        loop = self.machine.loop
        self._scan_expired = lambda: bool(sigints[0]) or loop.wall_expired()
        try:
            return [*self.ka.check_poison(), *self.find_leaks()]
        except HostLimit:
            result.reason = "interrupted" if sigints[0] else "timeout"
            if sigints[0]:
                return []
            return [TimeoutError_(f"wall-clock limit of {self.options.timeout_s:g} s exceeded in the leak "
                                  "scan after the firmware exited: leaks not judged")]  # fmt: skip
        except Exception as exc:  # kalloc's own bug: an `internal` report, not a traceback
            return [internal_error(exc, "checking the allocator after the firmware exited")]

    def find_leaks(self) -> list[KallocError]:
        """Unreferenced live objects at exit, one error per allocation site and class (definitely or
        indirectly lost, kmemleak's scan split as Valgrind's Memcheck does: report/leaks.py).

        Objects some root still points to are "still reachable": listed in the report,
        not errors (docs/user-guide.md, "Leaks").
        """
        fw = self.firmware
        roots = [(seg.vaddr, seg.vaddr + seg.memsz) for seg in fw.segments if seg.flags & 2]
        roots = stackguard.leak_roots(roots, fw, self.machine.regs()["sp"])  # the live stack only
        # Virtual memory: arena objects and vmalloc areas are read through the page tables.
        objects = sorted([*self.ka.live_allocations(), *self.heap.live_allocations(),
                          *vmbridge.vmalloc_allocations(self.vm)], key=lambda o: o.addr)  # fmt: skip
        phys = BoundedPhys(vmbridge.VirtualPhys(self.machine.phys, self.vm), self._scan_expired)
        result = kmemleak.scan(phys, objects,  # type: ignore[arg-type]
                               roots,
                               self.machine.regs().values())  # fmt: skip
        self.still_reachable = result.reachable
        return leak_errors(result)  # one per (site, definitely / indirectly lost): report/leaks.py

    # -- the report -------------------------------------------------------------------------------

    def build_report(self, result: RunResult, errors: list[KallocError]) -> dict[str, Any]:
        """The JSON report of a run that ended with `result`, judged with `errors` (also the harness's)."""
        sym = Symbolizer(self.firmware, self.ka.depot)
        entries = [error_entry(e, sym) for e in errors]
        fatal = errors[-1] if errors and result.reason in ("fault", "panic", "fatal") else None
        errors, entries, suppressed = self.suppressions.apply(errors, entries, fatal)  # --suppress
        for entry, err in zip(entries, errors, strict=True):
            annotate_interrupt_context(entry, err, sym, self.firmware)
        stats = self.ka.stats()
        opts = asdict(self.options)
        opts.pop("firmware")
        opts.pop("timeout_s")
        opts.pop("suppress")  # host paths: the `suppressions` key names the files
        for key, default in (("percpu_cache", 0), ("fastpath", "off")):  # issue 14: additive, shown when set
            if opts[key] == default:
                opts.pop(key)
        opts["board"] = self.board.label or opts["board"]  # a board file: name@sha256:digest, no host path
        irq = self.services.irq
        return {
            "kalloc_version": VERSION,
            "abi_version": abi.ABI_VERSION,
            "board": self.board.name,
            "isa": self.machine.isa.name,  # additive: the text report's registers line (isa.report_registers)
            "firmware": self.firmware_name,
            "options": opts,
            "exit_code": exit_status(result, errors, self.machine.errors.suppressed_error),
            "firmware_exit_code": result.exit_code,
            "end": result.reason,
            "instructions": result.instructions,
            "uart": result.uart,
            "errors": entries,
            **self.machine.errors.section(),  # {"suppressed": {count, by_kind}} past --max-errors, else {}
            **suppressed,  # {"suppressions": {files, count, used}} with --suppress, else {}
            **self.tags.section(),  # {"tags": {...}} once firmware pushed a tag or --budgets, else {}
            "leaks": leaks_section(entries, self.still_reachable),
            "warnings_firmware": list(self.firmware.warnings),
            "interrupts": {
                "lines": {str(k): v for k, v in sorted(result.irq_counts.items())},
                "context_allocations": asdict(irq.irq),
                **interrupts_section(result, self.machine, irq.lines, self.ka),
            },
            "dma": dma_section(result, self.machine, errors),
            "hypercalls": self.bridge.call_counts(),
            "allocator": stats,
            "buddyinfo": self.ka.buddyinfo(),
            "slabinfo": self.ka.slabinfo(),
            "zoneinfo": self.ka.zoneinfo(),
            "commit": self.commit.section(errors),
            "vm": {**self.vm.stats(), **self.mmu.stats()},
            **fastpath.sections(self),  # issue 14: `percpu`, `fastpath` (additive: only when asked for)
        }


def _load(options: RunOptions) -> tuple[Board, Firmware, str]:
    """The board and the firmware of a run (BadInput when either cannot be used)."""
    from kalloc_machine.sdk import resolve_firmware

    try:
        board = load_board(options.board)
    except (ValueError, OSError) as exc:
        raise BadInput(f"board {options.board}: {exc}") from None
    try:
        fw_path = str(resolve_firmware(options.firmware, board.cpu.isa))  # a path, or a shipped name
    except FileNotFoundError as exc:
        raise BadInput(f"firmware {exc}") from None
    try:
        firmware = load_firmware(fw_path, board.cpu.isa)  # read for the board's ISA
        firmware.check_fits(board)
    except (ValueError, OSError) as exc:
        name, text = Path(fw_path).name, str(exc)  # the ELF reader's messages name the file already
        raise BadInput(f"firmware {text if text.startswith(name + ':') else f'{name}: {text}'}") from None
    return board, firmware, Path(fw_path).name


def exit_status(result: RunResult, errors: list[KallocError], suppressed_error: bool = False) -> int:
    """The process exit status for a run (module docstring)."""
    if result.reason == "interrupted":
        return EXIT_INTERRUPTED  # the host stopped the run: never the firmware's fault
    if any(e.kind == "internal" for e in errors):
        return EXIT_ERROR  # kalloc's own bug: whatever the firmware did after it is not to be trusted
    if result.reason in ("budget", "timeout", "wfi"):
        return EXIT_TIMEOUT
    if result.reason in ("fault", "panic"):
        return EXIT_FAULT
    if any(e.severity == "error" for e in errors) or suppressed_error or result.reason != "exit":
        return EXIT_ERROR
    code = result.exit_code or 0
    return min(max(code, 0), 63) if code >= 0 else 63


def run(options: RunOptions) -> RunOutcome:
    """Boot, run and report in one call."""
    return Session(options).run()
