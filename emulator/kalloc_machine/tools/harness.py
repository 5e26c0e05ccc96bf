"""A firmware under test: boot it, run it to a symbol, call into it, poke it, snapshot it.

`Target(RunOptions(...))` composes a `Session` (kalloc_machine.session) and adds what a test
needs beyond `kalloc run`:

- `run(until=SYMBOL|ADDR, instructions=N)`: run until the CPU is about to execute
  `until` (a one-address UC_HOOK_CODE), or for N more instructions, or to the end.
  Stops are exact: the hook sends the CPU into the machine's idle sled, as a `wfi`
  does, so the instruction count is exact and the run can resume from there.
- `call(FUNCTION, *args)`: a0..a7 = args, ra = a call stop (tools/callsites.py: an
  address in the machine's idle-sled window the sled never runs, where one range hook
  waits), pc = the function; run until it returns; a0 is the result. The ISA's calling
  convention does it (`Isa.call_setup`: on Cortex-M r0..r3 and lr, at most 4 arguments).
  The CPU's registers are put back afterwards (`context_save`/`context_restore`), so
  the firmware continues where it stood. A name the ELF lacks raises `MissingFunction`
  (one line: dropped by --gc-sections, inlined, or unknown, and how to keep it:
  tools/missing.py).
- Call sites (tools/callsites.py): each Python line that calls (the test's, with the
  pytest plugin's `origin`) gets its own return stop, so an allocation made during a
  call has the called function's frames and then, as its outermost frame, the test:
  `{"pc": null, "symbol": "test_foo", "file": "tests/test_x.py", "line": 12}`.
- memory by symbol or address: `addr`, `read`, `write`, `read_u32`, `write_u32`,
  `read_cstr` (through the same memoryviews the allocator uses: no Unicorn call).
- `ka` (the allocator, to drive directly), `report()` (the JSON report of what ran
  so far), `finish()` (run to the end and judge it as `kalloc run` does: poison
  checks and leaks when the firmware exited), `text()` (the CLI's text report).
- `snapshot()` / `restore(snap)` (kalloc_machine.snapshot).

Errors the machine or the allocator report accumulate in `errors()`; nothing raises
for them (the pytest plugin turns them into a failed test). A `call` or `run(until=)`
that ends any other way (fault, exit, budget) raises `StopError` with the report text.

Invariants:
 1. `Target(opts).finish()` gives the same report as `Session(opts).run()`, and so does
    any sequence of stops and resumes, HOST_COUNTERS aside (`comparable`).
 2. A break or an instruction count stops the machine between slices, never from a
    memory callback (docs/architecture.md: a stopped store replays).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import unicorn

from kalloc.errors import KallocError
from kalloc_machine.machine import Machine, RunResult
from kalloc_machine.report.render import render_text
from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.snapshot import Snapshot
from kalloc_machine.tools.callsites import CallOrigin, CallSites

CALL_BUDGET = 50_000_000  # instructions a `call` may take before it is called a runaway


# Report fields that count host-side caching, not firmware behaviour: Unicorn's TLB misses
# depend on where emulation was stopped and restarted (a break, a restore flushes it).
HOST_COUNTERS = (("vm", "tlb_fills"),)


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """`report` without HOST_COUNTERS: what a restored run must reproduce exactly."""
    out = dict(report)
    for section, key in HOST_COUNTERS:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


class MissingFunction(KeyError):
    """`call` of a function the firmware does not have; the message is one line (tools/missing.py)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Hooks:
    """The Unicorn hooks a Target added: kept by snapshots as they are (the hooks stay in Unicorn)."""

    def __init__(self) -> None:
        self.breaks: dict[int, int] = {}  # breakpoint address -> its (persistent) code hook
        self.calls: int | None = None  # the range hook on the call stops

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hooks:
        return self


class StopError(Exception):
    """The firmware did not stop where the test asked; the message is the text report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(slots=True)
class Stop:
    """Where a `run` ended: reason ("break", "instructions", "exit", "fault", ...), pc, clock."""

    reason: str
    pc: int
    instructions: int
    result: RunResult


class Target:
    """One booted firmware under test (module doc)."""

    def __init__(self, options: RunOptions | None = None, **kw: Any) -> None:
        self.options = options or RunOptions(**kw)
        self.session = Session(self.options)
        self.machine: Machine = self.session.machine
        self.ka = self.session.ka
        self.firmware = self.session.firmware
        self.phys = self.machine.phys
        self._ka_errors: list[KallocError] = []  # the allocator's reports, in order
        self._judged: list[KallocError] = []  # end-of-run checks (poison, leaks)
        self.last: RunResult | None = None
        self.finished = False
        self._skip_break: int | None = None
        self.autocheck = False  # the pytest plugin: fail on errors the test never looked at
        self._hooks = _Hooks()
        self._armed: int | None = None  # the breakpoint of the run in progress
        self.origin: CallOrigin | None = None  # the pytest plugin's test, for the call sites
        self.call_sites = CallSites(*self.machine.sled.call_stops)  # each calling line's return stop

    # -- addresses and memory ---------------------------------------------------------------

    def addr(self, where: str | int) -> int:
        """The address of a symbol (or an address, returned as is). KeyError for an unknown name."""
        if isinstance(where, int):
            return where
        a = self.firmware.symbol_addr(where)
        if a is None:
            raise KeyError(f"{self.firmware.name} has no symbol {where!r}")
        return a

    def sizeof(self, symbol: str) -> int:
        """The ELF size of a symbol (0 when the ELF does not say)."""
        a = self.addr(symbol)
        return next((size for addr, size, name in self.firmware.symbols if name == symbol and addr == a), 0)

    def read(self, where: str | int, n: int | None = None) -> bytes:
        """n bytes at a symbol or address (default: the symbol's size)."""
        if n is None:
            n = self.sizeof(where) if isinstance(where, str) else 0
        return self.phys.read(self.addr(where), n)

    def write(self, where: str | int, data: bytes) -> None:
        self.phys.write(self.addr(where), data)

    def read_u32(self, where: str | int) -> int:
        return self.phys.read_u32(self.addr(where))

    def write_u32(self, where: str | int, value: int) -> None:
        self.phys.write_u32(self.addr(where), value & 0xFFFF_FFFF)

    def read_cstr(self, where: str | int, limit: int = 4096) -> str:
        return self.phys.read_cstr(self.addr(where), limit).decode("utf-8", "replace")

    def reg(self, name: str) -> int:
        """A register by ABI name (`a0`, `sp`, `pc`, ...)."""
        return self.machine.regs()[name]

    @property
    def instructions(self) -> int:
        return self.machine.instructions

    @property
    def uart(self) -> str:
        return self.machine.uart_output()

    # -- running ------------------------------------------------------------------------------

    def _on_break(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        if address != self._armed or not self.machine.can_break:
            return  # already stopping (this is the idle sled burning a slice out)
        if self._skip_break == address:
            self._skip_break = None  # resuming from this very address: not a new hit
            return
        self.machine.request_break(address)

    def run(self, until: str | int | None = None, *, instructions: int | None = None) -> Stop:
        """Run until the CPU reaches `until`, after `instructions` more, or to the end of the run.

        Returns the Stop. The machine can run again after a "break" or "instructions" stop.
        MissingFunction (a KeyError, one line) when `until` names code the ELF lacks.
        """
        if self.finished:
            raise RuntimeError("the firmware has finished; restore a snapshot to run it again")
        m, uc = self.machine, self.machine.uc
        target = None
        if until is not None:
            target = self.function_addr(until, what="run")
            self._hook(target)
            self._skip_break = target if m.isa.pc(uc) == target else None
        self._armed = target
        budget = m.max_instructions
        if instructions is not None:
            m.max_instructions = min(budget, m.instructions + instructions)
        m.allow_resume()  # its run loop picks up where it stopped
        try:
            result = m.run()
        finally:
            m.max_instructions = budget
            self._armed = None
        reason = result.reason
        if reason == "budget" and instructions is not None and m.instructions < budget:
            m.errors.pop()  # the budget error is ours, not the board's
            result.errors.pop()
            reason = "instructions"
        if reason == "break" and target is not None:  # only an armed breakpoint stops as "break"
            # Unicorn counted the instruction at `target`, which the hook kept from running:
            # it runs on resume (as an aborted mtime load does, kalloc_machine.machine).
            m.clock.now -= 1
            m.isa.set_pc(uc, target)
        self._ka_errors.extend(self.ka.reports)
        self.ka.reports.clear()
        self.last = result
        if reason not in ("break", "instructions"):
            self._finish(result)
        return Stop(reason, m.isa.pc(uc), m.instructions, result)

    def _hook(self, target: int) -> None:
        """The code hook that stops at `target` (kept once added: adding a hook retranslates code)."""
        hooks, uc = self._hooks, self.machine.uc
        if self.call_sites.holds(target):
            if hooks.calls is None:  # one hook for every call stop: each hook costs every instruction
                lo, hi = self.call_sites.lo, self.call_sites.hi
                uc.mem_write(lo, self.machine.isa.idle_sled(lo, (hi - lo) // 4))  # never runs: harmless
                hooks.calls = uc.hook_add(unicorn.UC_HOOK_CODE, self._on_break, None, lo, hi - 1)
                uc.ctl_remove_cache(lo, hi)
        elif target not in hooks.breaks:
            hooks.breaks[target] = uc.hook_add(unicorn.UC_HOOK_CODE, self._on_break, None, target, target)
            uc.ctl_remove_cache(target, target + 4)

    def function_addr(self, function: str | int, *, what: str = "call") -> int:
        """The address of code to call or stop at; MissingFunction (one line: why, how to keep it)
        for a name the ELF lacks, as `what(name)` says it."""
        if isinstance(function, int):
            return function
        a = self.firmware.symbol_addr(function)
        if a is None:
            from kalloc_machine.sdk import resolve_firmware
            from kalloc_machine.tools.missing import why_missing

            names = [name for _, _, name in self.firmware.symbols]
            why = why_missing(resolve_firmware(self.options.firmware, self.machine.isa.name), function, names)
            raise MissingFunction(f"{what}({function!r}): {why}")
        return a

    def call(self, function: str | int, *args: int, budget: int = CALL_BUDGET, signed: bool = False) -> int:
        """Call a firmware function with up to 8 integer arguments and return a0.

        Context: the firmware must have set itself up (stack, interrupts): call after
        `run(until="main")` or any later stop. Registers are restored afterwards.
        Raises MissingFunction (a KeyError) for a name the firmware lacks, StopError
        when the function does not return (fault, exit, budget).
        """
        if len(args) > 8:
            raise ValueError("at most 8 register arguments (a0..a7)")
        uc = self.machine.uc
        entry, stop_at = self.function_addr(function), self.call_sites.stop_for(self.origin)
        saved = uc.context_save()
        self.machine.isa.call_setup(uc, entry, args, stop_at)  # the ISA's convention
        stop = self.run(until=stop_at, instructions=budget)
        if stop.reason != "break":
            raise StopError(f"{function}{args} did not return ({stop.reason}):\n{self.text()}", self.report())
        a0 = self.machine.isa.return_value(uc)
        uc.context_restore(saved)
        return a0 - (1 << 32) if signed and a0 & 0x8000_0000 else a0

    def run_to(self, until: str | int, *, budget: int = CALL_BUDGET) -> Stop:
        """Run until `until` is reached; StopError if the run ends before."""
        stop = self.run(until=until, instructions=budget)
        if stop.reason != "break":
            raise StopError(f"did not reach {until} ({stop.reason}):\n{self.text()}", self.report())
        return stop

    def finish(self) -> RunOutcome:
        """Run to the end (unless it already ended) and return the outcome, as `kalloc run` would."""
        if not self.finished:
            self.run()
        assert self.last is not None
        report = self.report()
        return RunOutcome(report, report["exit_code"], self.last.wall_s, self.last)

    def _finish(self, result: RunResult) -> None:
        """End-of-run judgement (kalloc_machine.session, Session.run)."""
        self.finished = True
        judged: list[KallocError] = []
        if result.reason == "exit":
            judged.extend(self.ka.check_poison())
            judged.extend(self.session.find_leaks())
        self._judged = judged
        if self.session.faults is not None:
            self.session.faults.link_fault(self._all_errors())

    # -- reports --------------------------------------------------------------------------------

    def _all_errors(self) -> list[KallocError]:
        return [*self.machine.errors, *self._ka_errors, *self._judged]

    def errors(self) -> list[dict[str, Any]]:
        """The errors and warnings so far, as report entries (kind, severity, message, ...)."""
        return self.report()["errors"]

    def take_errors(self) -> list[dict[str, Any]]:
        """The errors so far, then forget them (a test that expected them handled them)."""
        out = self.errors()
        self.machine.errors.clear()
        self._ka_errors.clear()
        self._judged.clear()
        return out

    def report(self, *, consult: bool = True) -> dict[str, Any]:
        """The JSON report (docs/user-guide.md) of everything run so far.

        consult=True marks the errors as looked at (the pytest plugin's check after a test).
        """
        if consult:
            self.autocheck = False
        result = self.last
        if result is None:  # nothing ran yet: an empty run at the entry point
            result = RunResult(None, "none", self.machine.instructions, self.uart, [], {}, 0.0)
        result.errors = list(self.machine.errors)
        report = self.session.build_report(result, self._all_errors())
        self.call_sites.attribute(report)
        return report

    def text(self, *, quiet: bool = True, width: int | None = None) -> str:
        """The text report `kalloc run` prints piped (quiet: UART, end, errors, summary): one line per
        fact (report/console.py); `width`: wrapped at that many columns instead."""
        from rich.console import Console

        from kalloc_machine.report.console import report_console

        buf = io.StringIO()
        con = report_console(file=buf, color=False) if width is None else Console(
            file=buf, width=width, highlight=False, color_system=None, soft_wrap=False)  # fmt: skip
        render_text(self.report(), con, quiet=quiet)
        return buf.getvalue()

    # -- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The whole state now: CPU, RAM, devices, allocator, this harness (kalloc_machine.snapshot)."""
        return Snapshot.take(self.session, extra=(self,))

    def restore(self, snap: Snapshot) -> None:
        if snap.session is not self.session:
            raise ValueError("a snapshot restores only into the target it was taken from")
        snap.restore()
