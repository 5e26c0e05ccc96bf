"""`kalloc lab`: a student's allocator (mm_init, mm_malloc, ...) graded in firmware, trace by trace.

The student's file is linked into the lab driver (firmware/lab/: driver.c, memlib.c,
`make -C "$(kalloc sdk)" LAB=1 APP=student.c OUT=student.elf`). For each trace the lab
boots that ELF on a fresh machine, stops at main, calls `lab_init` (the heap region,
reserved from kalloc's page allocator, then mm_init), and performs every trace
operation as one firmware call (`lab_malloc`, `lab_free`, `lab_realloc`, `lab_calloc`:
each a plain call into the student's code), exactly as `kalloc replay --firmware`
drives its shim (tools/fwreplay.py). After every call the lab checks, from Python and
without trusting the student (tools/labcheck.py), what the allocator handed out, writes
its own pattern into each new payload and verifies it later. The first broken rule
stops the trace with a `Violation`, which this module places: the operation number,
the request and its line in the trace file, the blocks, and the function and line in
the student's code — for overwritten contents, the very store that wrote them
(tools/labwatch.py replays the trace with a write watch on the first wrong byte).

Optional detectors, each its own module, each told of every call (`before_call`,
`after_call`) and of the record's changes: compiled KASAN on the student's heap
(tools/labkasan.py, `--sanitize=kasan`), the uninitialised-read hints
(tools/labinit.py, `--uninit`) and the interrupt round (tools/labirq.py, `--irq`).

A call that does not return is a violation too: a CPU fault, a panic or a stack
overflow (kalloc's report: kind, pc, backtrace), or an instruction budget per operation
spent (an infinite loop: where the CPU was).

Figures (tools/labscore.py scores them): peak live payload, peak heap (the exact break
and the committed pages below it), and the instructions the student's code executed
(per operation: deterministic, the same on every host).

Invariants:
 1. A trace's result is a function of (ELF bytes, trace, options): every trace runs on a
    fresh machine, every count is of emulated instructions.
 2. Every operation is exactly one firmware call into the student's code; the lab
    writes guest memory only inside payloads that passed every check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kalloc.replay.trace import ALLOC, CALLOC, FREE, MEMALIGN, REALLOC, Op, Trace, format_op
from kalloc_machine.bridge.kasan import COMPILED_MARKER
from kalloc_machine.report.symbols import Symbolizer
from kalloc_machine.session import RunOptions
from kalloc_machine.tools.harness import Target
from kalloc_machine.tools.labcheck import HeapRecord, Violation, pattern, request_lines
from kalloc_machine.tools.labguard import PayloadGuard
from kalloc_machine.tools.labinit import InitTracker
from kalloc_machine.tools.labirq import IrqRound
from kalloc_machine.tools.labkasan import LabKasan
from kalloc_machine.tools.labplace import at_op, place

REQUIRED = ("lab_init", "mm_init", "mm_malloc", "mm_free", "mm_realloc")
ENTRY_OF = {
    "lab_malloc": "mm_malloc",
    "lab_free": "mm_free",
    "lab_realloc": "mm_realloc",
    "lab_calloc": "mm_calloc",
    "lab_check": "mm_check",
    "lab_init": "mm_init",
}
# A violation's kind -> the trace's status (else "error"): kalloc lab's exit status follows it.
STATUS_OF = {"cpu-fault": "fault", "page-fault": "fault", "stack-overflow": "fault", "timeout": "timeout"}
LAB_QUANTUM = 2_000  # as fwreplay: a call ends its slice at the return stop
PAGE = 4096


class NotALabElf(ValueError):
    """The ELF is not a lab driver firmware (exit status 3)."""


@dataclass(slots=True)
class LabOptions:
    board: str = "default"
    align: int = 8
    heap_max: int = 4 << 20
    op_budget: int = 20_000_000
    mm_check: bool = False  # call mm_check after every operation (when the student wrote one)
    check_all_every: int = 0  # verify every live block every N operations (0: at the end only)
    guard: str = "explain"  # the payload guard (tools/labguard.py): explain | always | off
    sanitize: str = "off"  # "kasan": compiled KASAN on the heap (tools/labkasan.py)
    uninit: bool = False  # uninitialised-read hints (tools/labinit.py)
    irq: bool = False  # the interrupt round (tools/labirq.py)
    seed: int = 0  # the interrupt round's seed
    irq_period: int = 500  # mean instructions between the handler's ticks


@dataclass(slots=True)
class TraceRun:
    """One trace through the student's allocator: its figures, and the violation that stopped it."""

    trace: str
    ops: int = 0  # operations performed
    instructions: int = 0
    skipped: int = 0  # requests on ids that are not live (the trace's own fault): counted, not sent
    record: HeapRecord | None = None
    violation: dict[str, Any] | None = None
    status: str = "ok"  # ok | error | fault | timeout
    figures: dict[str, Any] = field(default_factory=dict)
    hints: list[dict[str, Any]] | None = None  # --uninit: the hints (tools/labinit.py)
    irq: dict[str, int] | None = None  # --irq: the round's counters (tools/labirq.py)


def check_elf(elf: str, sanitize: str = "off", *, isa: str = "rv32imac") -> None:
    """NotALabElf when `elf` lacks the lab driver or a required mm_* function (or, for
    sanitize="kasan", compiled KASAN checks), or is not built for `isa` (the board's)."""
    from kalloc_machine.elf import load_firmware

    try:
        fw = load_firmware(elf, isa)
    except Exception as exc:  # ElfError, OSError: one line
        raise NotALabElf(f"{elf}: {exc}") from None
    missing = [name for name in REQUIRED if fw.symbol_addr(name) is None]
    if missing:
        raise NotALabElf(
            f"{Path(elf).name} is not a lab firmware: no {', '.join(missing)} (build it with "
            'make -C "$(kalloc sdk)" LAB=1 APP=/abs/student.c OUT=/abs/student.elf)'
        )
    if fw.symbol_addr("lab_irq_start") is None:  # the driver before lab_heap_reserve was called first
        raise NotALabElf(
            f"{Path(elf).name} was built with an older lab driver: rebuild it (LAB=1) with this SDK"
        )
    if sanitize == "kasan" and fw.symbol_addr(COMPILED_MARKER) is None:
        raise NotALabElf(
            f"{Path(elf).name} has no compiled KASAN checks: --sanitize=kasan needs it built with "
            'KASAN=1 (make -C "$(kalloc sdk)" LAB=1 KASAN=1 APP=/abs/student.c OUT=/abs/student.elf)'
        )


class LabMachine:
    """The student's ELF booted, stopped at main, heap reserved and mm_init run."""

    def __init__(self, elf: str, options: LabOptions) -> None:
        self.options = options
        self.target = Target(
            RunOptions(
                firmware=elf,
                board=options.board,
                sanitize=options.sanitize,
                quantum=LAB_QUANTUM,
                max_instructions=1 << 62,
                timeout_s=3600.0,
            )
        )
        self.target.run_to("main")
        self.has = 0
        self.symbolizer = Symbolizer(self.target.firmware, None)
        self.guard: PayloadGuard | None = None
        self.exts: list[Any] = []  # the optional detectors (module doc)
        self.irq: IrqRound | None = None
        self.op = -1  # the operation in progress (-1: mm_init)

    def start(self, record: HeapRecord) -> None:
        """The region (Violation "init-failed" when refused), the detectors, then the student's mm_init."""
        t, o = self.target, self.options
        t.write_u32("lab_heap_max", o.heap_max)
        if self.call("lab_heap_reserve")[0] != 0:
            raise Violation(
                "init-failed",
                f"the page allocator could not reserve a {o.heap_max} byte "
                "heap on this board (lower --heap-max)",
            )
        record.lo = record.brk = t.read_u32("lab_heap_lo")
        record.limit = record.lo + t.read_u32("lab_heap_max")
        if o.sanitize == "kasan":
            self.exts.append(LabKasan(self, record))
        if o.uninit:
            self.exts.append(InitTracker(self, record))
        result, _ = self.call("lab_init")
        self.has = self.call("lab_has")[0]
        if result != 0:
            raise Violation(
                "init-failed", f"mm_init returned {result - (1 << 32) if result >> 31 else result}, not 0"
            )
        if o.guard == "always":
            self.guard = PayloadGuard(self, record)
        if o.irq:
            self.irq = IrqRound(self, record, o.seed, o.irq_period)
            self.exts.append(self.irq)

    def call(self, function: str, *args: int) -> tuple[int, int]:
        """(a0, instructions) of one call; Violation when it does not return."""
        t, m = self.target, self.target.machine
        uc = m.uc
        entry, stop_at = t.function_addr(function), t.call_sites.stop_for(None)
        saved = uc.context_save()
        for ext in self.exts:
            ext.before_call(function, args)
        m.isa.call_setup(uc, entry, args, stop_at)
        before = m.instructions
        stop = t.run(until=stop_at, instructions=self.options.op_budget)
        seen = [v for v in (ext.after_call(function) for ext in self.exts) if v is not None]
        if stop.reason != "break":
            hit = self.guard.take() if self.guard is not None else None
            raise hit or next(iter(seen), None) or self._stopped(function, stop.reason)  # the cause first
        if seen:
            raise seen[0]
        a0 = m.isa.return_value(uc)
        uc.context_restore(saved)
        return a0, m.instructions - before

    def _stopped(self, function: str, reason: str) -> Violation:
        """The violation of a call that did not return: kalloc's report, or the budget's."""
        entry = ENTRY_OF.get(function, function)
        if reason == "instructions":
            frames = self.frames(self.target.machine.isa.pc(self.target.machine.uc))
            v = Violation(
                "timeout",
                f"{entry} did not return within {self.options.op_budget:,} instructions "
                "(an infinite loop?): the CPU was here",
            )
            v.frames = frames
            return v
        report = self.target.report(consult=True)
        errors = [e for e in report["errors"] if e["severity"] == "error"] or report["errors"]
        if not errors:
            return Violation("fault", f"{entry} did not return ({reason})")
        e = errors[0]
        v = Violation(e["kind"], f"{entry}: {e['message']}")
        v.frames = [f for f in e.get("backtrace") or [] if f.get("pc") is not None]
        return v

    def frames(self, pc: int) -> list[dict[str, Any]]:
        """The backtrace from pc of the CPU's current state, as frames, without the harness's call stop."""
        pcs = self.target.machine.backtrace(pc)
        trace = self.symbolizer.trace(pcs, first_is_return=False)
        return [f for f in trace if not self.target.call_sites.holds(f["pc"])]

    def locate(self, function: str) -> dict[str, Any]:
        """The frame of a function's entry: where a wrong answer of it is blamed."""
        return self.symbolizer.frame(self.target.addr(function))


OnOp = Callable[[int, LabMachine], None]


def run_trace(
    elf: str,
    trace: Trace,
    options: LabOptions,
    *,
    path: str | None = None,
    stop_after: int | None = None,
    on_op: OnOp | None = None,
    watch: bool = False,
) -> TraceRun:
    """One trace through the student's allocator on a fresh machine (module doc)."""
    lab = LabMachine(elf, options)
    run = TraceRun(trace.name)
    record = HeapRecord(options.align, lab.target.phys.read)
    run.record = record
    i = -1
    try:
        lab.start(record)
        for i, op in enumerate(trace.ops):
            if stop_after is not None and i > stop_after:
                break
            lab.op = i
            run.instructions += _perform(lab, record, op, i, run)
            run.ops += 1
            if on_op is not None:
                on_op(i, lab)
        else:
            if lab.irq is not None:
                run.irq = lab.irq.stop()
            record.verify_all("by the end of the trace")
    except Violation as v:
        if lab.irq is not None:
            lab.irq.explain(v)
        run.violation = place(v, lab, trace, i, path, None if watch else elf, options)
        run.status = STATUS_OF.get(v.kind, "error")
        if options.guard == "explain" and not watch and not v.extra:
            guarded = run_trace(
                elf, trace, replace(options, guard="always"), path=path, stop_after=i, watch=True
            )
            if guarded.violation is not None and guarded.violation["kind"] == "payload-access":
                run.violation, run.status = guarded.violation, "error"  # the cause of what was seen
    if lab.irq is not None and run.irq is None:
        run.irq = lab.irq.counters()
    tracker = next((e for e in lab.exts if isinstance(e, InitTracker)), None)
    if tracker is not None:
        lines = request_lines(path, trace)
        run.hints = tracker.report(lambda k: at_op(trace, lines, k))
    return run


def _perform(lab: LabMachine, rec: HeapRecord, op: Op, i: int, run: TraceRun) -> int:
    """One request, its checks and the lab's pattern writes; the instructions it took."""
    target = lab.target
    if lab.guard is not None:
        lab.guard.current = op.id
    if (op.kind in (ALLOC, MEMALIGN, CALLOC) and op.id in rec.blocks) or (
        op.kind in (REALLOC, FREE) and (op.id not in rec.blocks)
    ):
        run.skipped += 1
        return 0
    if op.kind == FREE:
        block = rec.blocks[op.id]
        rec.verify(block, f"before mm_free of object {op.id}")
        _, n = lab.call("lab_free", block.addr)
        rec.remove(op.id)
        where = block.addr
    elif op.kind == REALLOC:
        where, n = _realloc(lab, rec, op, i)
    else:
        where, n = _alloc(lab, rec, op, i)
    rec.set_break(target.read_u32("lab_heap_brk"), target.read_u32("lab_heap_lo"))
    hit = lab.guard.take() if lab.guard is not None else None
    if hit is not None:  # after the checks of what the call returned: an overlap is reported as one
        raise hit
    rec.verify_around(where, f"during operation {i + 1} ({format_op(op)})")
    if lab.irq is not None:
        lab.irq.after_op(i)
    every = lab.options.check_all_every
    if every and (i + 1) % every == 0:
        rec.verify_all(f"by operation {i + 1}")
    if lab.options.mm_check and lab.has & 2:
        ok, _ = lab.call("lab_check")
        if ok == 0:
            raise Violation(
                "mm-check",
                f"mm_check returned 0 after operation {i + 1}: the student's own "
                "checker found the heap inconsistent",
            )
    return n


def _alloc(lab: LabMachine, rec: HeapRecord, op: Op, i: int) -> tuple[int, int]:
    size = op.nbytes
    calloc = op.kind == CALLOC and lab.has & 1
    if size > 0xFFFF_FFFF and not calloc:
        return 0, 0  # n * size overflows: no mm_calloc to ask, and mm_malloc cannot be asked for it
    if calloc:
        addr, n = lab.call("lab_calloc", op.arg, op.size)
        what = f"mm_calloc({op.arg}, {op.size})"
    else:
        addr, n = lab.call("lab_malloc", size)
        what = f"mm_malloc({size})"
    if size > 0xFFFF_FFFF:  # calloc's n * size overflows a size_t: NULL is the only right answer
        if addr:
            raise Violation("calloc-overflow", f"{what} overflows a 32-bit size_t, yet returned {addr:#x}")
        return 0, n
    if addr == 0:
        if size == 0:
            return 0, n
        raise Violation(
            "out-of-memory",
            f"{what} returned NULL (heap {rec.brk - rec.lo:,} of at most "
            f"{rec.limit - rec.lo:,} bytes; --heap-max raises it)",
        )
    rec.set_break(lab.target.read_u32("lab_heap_brk"), lab.target.read_u32("lab_heap_lo"))
    rec.check_new(what, addr, size)
    if calloc and any(lab.target.phys.read(addr, size)):
        raise Violation(
            "calloc-not-zeroed",
            f"{what} returned {addr:#x}, whose bytes are not all zero",
            [{"id": op.id, "addr": addr, "size": size}],
        )
    data = pattern(op.id, size)
    lab.target.write(addr, data)
    rec.add(op.id, addr, size, data, i)
    return addr, n


def _realloc(lab: LabMachine, rec: HeapRecord, op: Op, i: int) -> tuple[int, int]:
    old = rec.blocks[op.id]
    rec.verify(old, f"before mm_realloc of object {op.id}")
    addr, n = lab.call("lab_realloc", old.addr, op.size)
    what = f"mm_realloc({old.addr:#x}, {op.size})"
    if op.size == 0:  # realloc(p, 0) frees p (CS:APP's rule); the lab forgets the block
        rec.remove(op.id)
        return old.addr, n
    if addr == 0:
        raise Violation(
            "out-of-memory",
            f"{what} returned NULL (heap {rec.brk - rec.lo:,} of at most {rec.limit - rec.lo:,} bytes)",
            [old.as_dict()],
        )
    rec.set_break(lab.target.read_u32("lab_heap_brk"), lab.target.read_u32("lab_heap_lo"))
    rec.check_new(what, addr, op.size, ignore=op.id)
    keep = min(old.size, op.size)
    got = lab.target.phys.read(addr, keep)
    if got != old.data[:keep]:
        off = next(k for k in range(keep) if got[k] != old.data[k])
        raise Violation(
            "realloc-lost-data",
            f"{what} returned {addr:#x} but did not keep the first {keep} bytes: "
            f"byte {off} is {got[off]:#04x}, was {old.data[off]:#04x}",
            [old.as_dict(), {"id": op.id, "addr": addr, "size": op.size}],
        )
    rec.remove(op.id)
    tail = pattern(op.id + (i + 1) * 7919, op.size, keep)
    lab.target.write(addr + keep, tail)
    rec.add(op.id, addr, op.size, old.data[:keep] + tail, i)
    return addr, n
