"""The run loop: slices of emulation, exact stops, interrupt delivery, idling in wfi.

`RunLoop(machine)` drives one built `Machine` (machine.py) until the firmware exits or
something ends the run; `Machine.run()` calls `RunLoop.run()`. It owns the CPU-side
state between slices; the hooks that end a slice early live with the idle sled
(sled.py), which the machine's MMIO callbacks also use to cut a slice.

Time: `machine.instructions` is the machine's clock: instructions executed plus idle
time skipped in `wfi`. Each slice is `emu_start(pc, until, count=n)` with
n = min(burst, next device deadline - now, budget left); devices are serviced and
interrupts delivered only between slices (docs/architecture.md). The burst is the quantum (100k
by default: a counted slice runs ~6x slower than free-running, and each boundary costs
a few register reads), shortened where short slices pay (`_next_count`): after a wfi,
after a device cut or an interrupt entry (DEVICE_BURST, doubling), and while an
interrupt is pending but masked by the ISA's global mask (mstatus.MIE), so it is taken
within a few instructions of being unmasked. A handler's return to task code (irqstate.py
sees it in the interrupt hook) gives the task back the burst it had when the interrupt
came: a timer tick costs a compute loop three slices (entry to the handler's mtime read,
the read window with the return, the rest to the next deadline), not a ramp of ten. On
Cortex-M too: Unicorn 2.1.4 runs a Thumb IT block to its end when a slice's count runs out
inside it, so each slice takes the instructions the engine really counted (rawcount.py,
`ArmV7M.overrun_reader`) and slice boundaries move nothing; where that counter cannot be
read, Cortex-M keeps its ramp.
`until` is an odd address in the sled's window that nothing executes (below its call
stops): Unicorn invalidates its translation and looks its page up at the end of every
emu_start, which under translation (mmu.py) is a TLB fill unless the page's entry stays.

Reads: an mtime read outside a READ_WINDOW slice is exact without a cut where the cut's boundary
would do nothing (`read_boundary`, from timerport.py): no interrupt pending, every serviced
device waiting for its deadline (`Device.due_only`), no wall-clock poll due, no sled `mret`
run yet in the slice. Unicorn's own counter (rawcount.py) gives the load's time; the callback
does the cut's, the boundary's and the window's bookkeeping and moves the running emu_start's
limit (the engine's `emu_count`) to the window's end, so the boundaries, `Clock.now` at each,
and every read's value are those of the cut (tests/machine/test_read_boundary.py): a timer
tick costs two slices, not three.

Cuts and exact stops: sled.py (the idle sled counts a slice that a hook ended early).
Faults are exact too: traps, refused accesses, page faults, fatal reports, Ctrl-C and
the wall clock inside a slice end it through the sled (sled.py, "Faults"): `instructions`
counts up to and including the faulting instruction. Only a slice that raises out of
`emu_start` (a write into the sled; an exception no hook saw) or a redirect the CPU lost
(Ctrl-C just before `emu_start`) counts to the slice's start (a lower bound, off by less
than a quantum, deterministic), with `RunResult.exact` False.

Run reasons (RunResult.reason): "exit" (ecall exit; exit_code = a0, signed),
"panic" (ecall panic), "fault" (CPU fault), "fatal" (a fatal report: bad ecall, bad
doorbell, or the composer's `fatal()`), "budget" (max_instructions), "timeout"
(wall clock), "wfi" (wfi with nothing that can ever wake it), "interrupted" (the
host asked the run to stop: `interrupt()`, Ctrl-C; not the firmware's doing), and any
reason a `IdleSled.stop_slice` caller gives (the harness's "break").

Limits in every state: the budget bounds each slice and idle step; the wall clock is
read every POLL_SLICES slices, every idle step and (machine.py) WALL_POLL_CALLS
hypercalls. wfi wakes only for the timer when mie.MTIE, a line when mie.MEIE and the
line is enabled (fixed while the CPU sleeps); nothing that can wake it: "wfi" ends the run.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kalloc.errors import KallocError, TimeoutError_
from kalloc_machine.devices import Device
from kalloc_machine.rawcount import counter
from kalloc_machine.sled import SliceStop

if TYPE_CHECKING:
    from kalloc_machine.machine import Machine

# long-module: one state machine (slices, cuts, idle, delivery), with its Cortex-M branches
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
POLL_SLICES = 8  # the wall clock is read every POLL_SLICES slices (a slice is at most a quantum)
IDLE_JUMP = 1 << 20  # the longest idle step (a non-waking injector catches up at most this much)


def _engine_count(uc: Any) -> tuple[ctypes.c_size_t, ctypes.c_size_t] | None:
    """The engine's instruction counter and its limit (`emu_counter`, then `emu_count`: rawcount.py,
    whose probe finds the pair), or None where the counter cannot be located."""
    got = counter(uc)
    if got is None:
        return None
    return got, ctypes.c_size_t.from_address(ctypes.addressof(got) + ctypes.sizeof(got))


def _own(device: Any, method: str) -> bool:
    """Does the device have a `method` of its own (not Device's no-op)?"""
    own = getattr(type(device), method, None) is not getattr(Device, method)
    return own or method in getattr(device, "__dict__", ())


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


class RunLoop:
    """Slices and interrupt delivery for one Machine (module docstring).

    Public state the machine uses: `ending` (set by `Machine.fatal`: the run ends at
    this boundary), `slice_end` (start + count of the running slice), `read_exact`
    (this slice is a READ_WINDOW: mtime reads are not cut), `irq_timer` (the last
    interrupt taken was the timer's), `cuts` (slices ended early at a poking store or
    an mtime read).
    """

    def __init__(self, machine: Machine) -> None:
        m = self.machine = machine
        self.isa, self.uc, self.clock, self.errors, self.faults = m.isa, m.uc, m.clock, m.errors, m.faults
        self.sled = m.sled
        self.timed: list[Any] = [d for d in (*m.devices, m.injector) if d is not None]
        self._timed_key, self._serviced, self._deadlined = (0, -1), self.timed, self.timed  # _sort_timed
        self.clint, self.intc, self.dma = m.clint, m.intc, m.dma
        self.scs = next((d for d in m.devices if d.type == "scs"), None)  # Cortex-M (isa/armv7m_scs.py)
        self.ending: str | None = None  # set by fatal(): the run ends at this boundary
        self.slice_end = 0
        self.read_exact = False
        self.irq_timer = False
        self.cuts = 0
        self._ran = False
        self._timer_taken = 0
        self._idle_time = 0
        self._exact = True
        self._exit_code: int | None = None
        self._wfi_pc = 0
        self._burst = m.quantum  # next slice length while no interrupt waits (see _next_count)
        self._task_burst = m.quantum  # the burst when the last interrupt came from task code
        self.until = self.sled.call_stops[0] - 1  # odd: PC never equals it (module docstring)
        self._pc: int | None = None  # the PC where the next slice starts, when the loop knows it
        self._masked_burst = 1  # next slice length while an interrupt waits for the mask
        self._was_masked = False
        self._read_window = False  # the next slice must be a READ_WINDOW
        self.interrupted, self.wall_deadline = False, float("inf")  # interrupt(); perf_counter() limit
        self.on_poll: Callable[[int], None] | None = None  # every POLL_SLICES slices: kalloc run's progress
        # True while no interrupt may be taken at this boundary (the fast path's blob holds the PC:
        # kalloc_machine/fastpath.py): a pending interrupt waits as if masked. None: never.
        self.defer: Callable[[], bool] | None = None
        # Cortex-M: the instructions a counted emu_start ran past its count (an IT block runs to its end:
        # rawcount.py), added to the slice; None on RV32 (and where the engine's counter cannot be read)
        reader = getattr(self.isa, "overrun_reader", None)
        self._overrun: Callable[[int], int] | None = reader(self.uc) if reader is not None else None
        self._poll = 0  # boundaries before the wall clock and on_poll are asked again (run)
        self._count = 0  # the running slice's firmware instructions from its start (read_boundary moves it)
        self._returns0 = 0  # irq_state.returns when the running slice started
        self._quiet = False  # every serviced device's `service` waits for its deadline (_sort_timed)
        self._emu = _engine_count(self.uc) if m.clint is not None and self.scs is None else None  # RV32

    # -- limits ------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """End the run ("interrupted") at the next boundary; safe from a signal handler, even
        inside a Unicorn callback (the run never resumes: a replay does not matter)."""
        self.interrupted = True
        self.sled.end("interrupted")

    def wall_expired(self) -> bool:  # the wall-clock limit has passed (one perf_counter call)
        return time.perf_counter() > self.wall_deadline

    def expire(self) -> None:
        """From an MMIO callback: the wall-clock limit passed inside a slice; end the run now."""
        if self.ending is None:
            self.ending = "timeout"
            self.errors.append(self._timeout_error())
        self.sled.end("timeout")

    def _timeout_error(self, pc: int | None = None) -> KallocError:
        pc = self.isa.pc(self.uc) if pc is None else pc
        return TimeoutError_(f"wall-clock limit of {self.machine.timeout_s:g} s exceeded", pc=pc,
                             backtrace=self.faults.backtrace(pc))  # fmt: skip

    # -- between slices ---------------------------------------------------------------------

    def _service(self) -> None:
        now = self.clock.now
        if (id(self.timed), len(self.timed)) != self._timed_key:  # (tools append their own: irqalloc's clock)
            self._sort_timed()
        for d in self._serviced:
            d.service(now)

    def _sort_timed(self) -> None:
        """The timed devices whose `service` / `deadline` are their own (not Device's no-ops):
        the ones a boundary asks (a UART has neither)."""
        self._timed_key = (id(self.timed), len(self.timed))
        self._serviced = [d for d in self.timed if _own(d, "service")]
        self._deadlined = [d for d in self.timed if _own(d, "deadline")]
        self._quiet = all(getattr(d, "due_only", False) for d in self._serviced)

    def _next_deadline(self) -> int | None:
        now, soonest = self.clock.now, None
        for d in self._deadlined:
            t = d.deadline()
            if t is not None and t > now and (soonest is None or t < soonest):
                soonest = t
        return soonest

    def _deliver_interrupt(self) -> bool:
        """Take the highest-priority pending enabled interrupt, if any (external first).

        Returns True when an interrupt is pending and enabled but masked by the ISA's
        global mask: the firmware is expected to unmask it soon (see `_next_count`).
        """
        if self.scs is not None:  # Cortex-M: the NVIC's priorities decide (isa/armv7m.py)
            cause, masked = self.isa.next_exception()  # type: ignore[attr-defined]
            if cause and (handler := self.isa.enter_interrupt(self.uc, cause)):
                self._pc = handler
                self.irq_timer = cause == self.isa.timer_cause
                self._timer_taken += self.irq_timer
                self._entered()
            return masked
        ext = self.intc is not None and self.intc.asserted()
        timer = self.clint is not None and self.clint.pending(self.clock.now)
        if not (ext or timer):
            return False
        isa = self.isa
        timer_en, ext_en = isa.pending_enable(self.uc)
        ext, timer = ext and ext_en, timer and timer_en
        if not (ext or timer):
            return False
        if not isa.interrupts_enabled(self.uc) or (self.defer is not None and self.defer()):
            return True
        if ext:
            self._pc = isa.enter_interrupt(self.uc, isa.external_cause)
            self.irq_timer = False
        else:
            self._pc = isa.enter_interrupt(self.uc, isa.timer_cause)
            self._timer_taken += 1
            self.irq_timer = True
        self._entered()
        return False

    def _entered(self) -> None:
        """An interrupt was taken: the depth the bridge trusts goes up (irqstate.py) and the
        handler starts with a short slice; the task's burst is kept for its return (`_slice`)."""
        irq = self.machine.irq_state
        if not irq.depth:
            self._task_burst = self._burst
        irq.entered()
        self._burst = min(DEVICE_BURST, self.machine.quantum)

    def _next_count(self, masked: bool) -> int:
        """The length of the next slice before deadlines and budget (adaptive).

        Short slices cost a little each; a slice that reaches wfi or ecall runs its
        remaining count out in the idle sled, which costs time. So: after a wfi the next
        slice is short (WFI_BURST) and each slice that runs out doubles the next one, up
        to the quantum; while an interrupt waits for the global mask, slices restart at 1
        instruction and double, so the interrupt is taken within a few instructions of
        the `csrsi mstatus` that unmasks it (the usual check-then-wfi idle loop).
        """
        was_masked, self._was_masked = self._was_masked, masked
        if masked:
            self._masked_burst = min(2 * self._masked_burst, self.machine.quantum) if was_masked else 1
            return self._masked_burst
        return self._burst

    def _can_wake(self, timer_en: bool, ext_en: bool) -> bool:
        """wfi wakes on any interrupt pending and enabled, whatever the global mask."""
        if self.scs is not None:  # Cortex-M: pending with the priority to pre-empt, PRIMASK aside
            return bool(self.scs.can_wake())  # type: ignore[attr-defined]
        now = self.clock.now
        return bool((timer_en and self.clint is not None and self.clint.pending(now))
                    or (ext_en and self.intc is not None and self.intc.asserted()))  # fmt: skip

    def _deadlock_error(self, ext_en: bool, enabled: int) -> KallocError:
        """wfi that nothing can wake; names the raised lines that are not a wake-up."""
        why = ""
        pending = self.intc.pending if self.intc is not None else 0
        if pending and not (ext_en and pending & enabled):
            lines = ", ".join(str(n) for n in range(32) if pending >> n & 1)
            why = (f" (line(s) {lines} raised but " + ("not enabled in the interrupt controller)" if ext_en
                   else "external interrupts are off in mie)"))  # fmt: skip
        return TimeoutError_("wfi with nothing to wake it: no timer, DMA transfer or injected interrupt that "
                             f"could wake the CPU is pending or due{why}", pc=self._wfi_pc,
                             backtrace=self.faults.backtrace(self._wfi_pc))  # fmt: skip

    def _idle(self) -> str | None:
        """Fast-forward through wfi to what can wake it. Returns a reason when the run must end.

        Wakers (fixed while the CPU sleeps): the timer when mie.MTIE, a device whose line is
        enabled when mie.MEIE. Idle steps end at the deadlines of the wakers and of the other
        devices (a DMA completion), except the injector's when its line cannot wake: it
        catches up in `service` (exact times, deterministic), at most IDLE_JUMP at a time.
        """
        timer_en, ext_en = self.isa.pending_enable(self.uc)
        enabled = self.intc.enable if (ext_en and self.intc is not None) else 0
        inj = self.machine.injector
        wakers, steps_at = [], []
        for d in self.timed:
            line = -1 if d is self.clint or d is self.scs else getattr(d, "line" if d is inj else "irq", None)
            wakes = timer_en if line == -1 else line is not None and bool(enabled >> line & 1)
            wakers += [d] if wakes else []
            steps_at += [d] if wakes or d is not inj else []
        budget = self.machine.max_instructions
        while True:
            self._service()  # what fell due inside the slice (or the idle step) that reached now
            if self._can_wake(timer_en, ext_en):
                return None
            now = self.clock.now
            if not any((t := d.deadline()) is not None and t > now for d in wakers):
                self.errors.append(self._deadlock_error(ext_en, enabled))
                return "wfi"
            due = [t for d in steps_at if (t := d.deadline()) is not None and t > now]
            target = min(*due, budget, now + IDLE_JUMP)
            self._idle_time += target - now
            self.clock.now = target
            if target >= budget:
                return None  # the loop reports the budget
            if self.interrupted:
                return "interrupted"
            if self.wall_expired():
                self.errors.append(self._timeout_error(self._wfi_pc))
                return "timeout"

    # -- slices -----------------------------------------------------------------------------

    def _slice(self, count: int) -> str | None:
        """Run one slice of at most `count` instructions. Returns a reason when the run ends."""
        uc, isa, sled = self.uc, self.isa, self.sled
        start = self.clock.now
        sled.stop, sled.mem_fault = None, None
        self.slice_end = start + count
        self.read_exact, self._read_window = self._read_window, False
        sled.running = True
        irq = self.machine.irq_state
        returns = self._returns0 = irq.returns
        self._count = count
        try:
            pc, self._pc = (isa.pc(uc) if self._pc is None else self._pc), None
            lost = self._emulate(pc, count)
            count = self._count  # a read boundary in the slice moved its end (read_boundary)
        except UcError as exc:
            sled.running = False
            self._exact = False
            if sled.stop is None or sled.stop.reason != "fault":  # else the hook filed it: keep that one
                self.errors.append(sled.memory_fault_error(exc, self.machine.on_uc_error))
            sled.release()
            return "fault"
        sled.running = False
        sled.release()
        stop = sled.stop
        if stop is None:
            if self.ending is not None or self.interrupted:  # fatal() or interrupt() stopped the slice
                self._exact = False
                return self.ending or "interrupted"
            self.clock.now = start + count - lost
            pc = isa.pc(uc)
            # Only the sled's own code: a harness call that returns as the slice runs out stands
            # on its call stop, elsewhere in the window, and its break hook stops it next slice.
            if sled.holds(pc):
                self.errors.append(self.faults.cpu_fault("jump into the idle sled: not firmware code", pc))
                return "fault"
            self._pc = pc
            self._burst = min(2 * self._burst, self.machine.quantum)
            if irq.returns != returns and not irq.depth and (self.scs is None or self._overrun is not None):
                # task code: its own burst (Cortex-M only where its slices count exactly: rawcount.py)
                self._burst = max(self._burst, self._task_burst)
            return self.ending
        in_sled = sled.leave()
        if in_sled is None:
            in_sled, self._exact = 0, False  # the redirect was lost (Ctrl-C before emu_start): it ran out
        self.clock.now = start + count - in_sled - lost
        if stop.reason == "cut":
            return self._after_cut(stop)
        if stop.reason == "exit":
            self._exit_code = stop.exit_code
            return "exit"
        if stop.reason != "wfi":
            return stop.reason
        self._wfi_pc = stop.pc
        self._burst = min(WFI_BURST, self.machine.quantum)
        self._was_masked = False  # after wfi, the unmasking may be the very next instruction
        isa.set_pc(uc, stop.pc + isa.idle_size)
        self._pc = stop.pc + isa.idle_size
        return self.ending or self._idle()

    def _emulate(self, pc: int, count: int) -> int:
        """Run `count` firmware instructions from pc, or up to a stop; the instructions Unicorn
        counted beyond the ones it was given that were no firmware instruction (the stopped
        slice subtracts them; else 0). One emu_start, unless the CPU ran the sled's `mret`
        (sled.py, "Returns"): then more, each for what the slice still owes, from where the
        last one stopped (one boundary: the same instructions, stops and slice ends as one
        emu_start of `count` firmware instructions)."""
        uc, isa, sled = self.uc, self.isa, self.sled
        sled.redirects = 0
        uc.emu_start(pc | isa.code_bit, self.until, count=count)
        count = self._count  # a read boundary in the slice moved its end (read_boundary)
        if not sled.redirects:
            return 0 if self._overrun is None else -self._overrun(count)  # Cortex-M: ran past an IT block
        total = count  # instructions given to emu_start so far
        while True:
            pc = isa.pc(uc)
            ran = sled.returns_run(pc)
            if sled.stop is not None or self.ending is not None or self.interrupted:
                return ran - (total - count)
            pending = pc == sled.return_at
            owed = count - (total - ran)
            if owed <= 0:
                if pending:  # the slice ended on the sled's mret: its mark was the counted one
                    isa.finish_return(uc)  # type: ignore[attr-defined]  # RISC-V only (return_insn)
                return 0
            total += owed + pending  # the mret it stands on runs first, counted, no firmware's
            uc.emu_start(pc | isa.code_bit, self.until, count=owed + pending)

    def read_boundary(self) -> bool:
        """From the CLINT's mtime read outside a read window (timerport.py): take, in place, the
        boundary its cut would make, and turn the rest of the slice into that boundary's
        READ_WINDOW; False: nothing done, the caller cuts (module docstring, "Reads")."""
        emu, sled, m = self._emu, self.sled, self.machine
        if emu is None or not self._quiet or self._poll < 1 or sled.redirects or sled.stop is not None:
            return False
        if self.ending is not None or self.interrupted or m.irq_state.returns != self._returns0:
            return False
        counted, limit = emu
        start = self.slice_end - self._count
        now = start + counted.value - 1  # instructions before this load: the time its replay would read
        intc, clint = self.intc, self.clint
        if (intc is not None and intc.asserted()) or (clint is not None and clint.pending(now)):
            return False  # the boundary would deliver it, or wait for the mask: a real one
        self.clock.now = now
        burst = min(DEVICE_BURST, m.quantum)
        count = min(burst, m.max_instructions - now, READ_WINDOW)
        deadline = self._next_deadline()
        if deadline is not None:
            count = min(count, deadline - now)
        # what the cut, its boundary and the window slice's start would have done (_after_cut, run, _slice)
        self.cuts += 1
        self._burst, self._was_masked, self._poll = burst, False, self._poll - 1
        self.read_exact = True
        self._count = now - start + count
        self.slice_end = now + count
        limit.value = self._count  # Unicorn stops this emu_start there (no sled mret ran before it)
        return True

    def _after_cut(self, stop: SliceStop) -> str | None:
        m = self.machine
        self.cuts += 1
        self._burst = min(DEVICE_BURST, m.quantum)
        if stop.replay:  # the aborted load was counted; it runs again next slice
            self.clock.now -= 1
            self._read_window = True
        self.isa.set_pc(self.uc, stop.pc)
        self._pc = stop.pc
        if stop.device is not None:
            stop.device.stamp(self.clock.now)
            dma = self.dma
            if stop.device is dma and dma is not None and dma.current is not None:  # who started it
                dma.current.pc = stop.store_pc
                dma.current.backtrace = self.faults.backtrace(stop.store_pc)
        return self.ending

    def allow_resume(self) -> None:
        """The next `run` continues this one (after a break; Machine.allow_resume)."""
        self._ran = False

    def run(self) -> RunResult:
        """Run until the firmware exits or something ends the run (once per allow_resume)."""
        if self._ran:
            raise RuntimeError("a Machine runs once; build a new one")
        self._ran = True
        self._pc = None  # a break, the harness or a snapshot may have moved it since
        m = self.machine
        started = time.perf_counter()
        self.wall_deadline = started + m.timeout_s
        reason: str | None = None
        self._poll = 0
        while reason is None:
            now = self.clock.now
            if self.interrupted:
                reason = "interrupted"
                break
            if now >= m.max_instructions:
                pc = self.isa.pc(self.uc)
                self.errors.append(TimeoutError_(f"instruction budget exhausted ({m.max_instructions})",
                                                 pc=pc, backtrace=self.faults.backtrace(pc),
                                                 budget=m.max_instructions))  # fmt: skip
                reason = "budget"
                break
            self._poll -= 1
            if self._poll < 0:
                self._poll = POLL_SLICES
                if self.wall_expired():
                    self.errors.append(self._timeout_error())
                    reason = "timeout"
                    break
                if self.on_poll is not None:
                    self.on_poll(now)
            self._service()
            if self.ending is not None:
                reason = self.ending
                break
            masked = self._deliver_interrupt()
            if self.ending is not None:  # the entry failed and was reported (Cortex-M: isa/armv7m.py)
                reason = self.ending
                break
            count = min(self._next_count(masked), m.max_instructions - now)
            if self._read_window:
                count = min(count, READ_WINDOW)
            deadline = self._next_deadline()
            if deadline is not None:
                count = min(count, deadline - now)
            reason = self._slice(count)
        return self._result(reason, time.perf_counter() - started)

    def _result(self, reason: str, wall: float) -> RunResult:
        m = self.machine
        counts: dict[int, int] = {}
        if m.clint is not None and self._timer_taken:
            counts[m.clint.irq if m.clint.irq is not None else 0] = self._timer_taken
        if m.intc is not None:
            counts.update(m.intc.claimed)
        return RunResult(
            exit_code=self._exit_code if reason == "exit" else None,
            reason=reason,
            instructions=self.clock.now,
            uart=m.uart.text(),
            errors=list(self.errors),
            irq_counts=dict(sorted(counts.items())),
            wall_s=wall,
            idle=self._idle_time,
            exact=self._exact,
            irq_raised=dict(sorted(m.intc.raised.items())) if m.intc else {},
            dma_transfers=[t.as_dict() for t in m.dma.transfers] if m.dma else [],
        )
