"""The run loop: slices of emulation, exact stops, interrupt delivery, idling in wfi.

`RunLoop(machine)` drives one built `Machine` (machine.py) until the firmware exits or
something ends the run; `Machine.run()` calls `RunLoop.run()`. It owns the CPU-side
state between slices; the hooks that end a slice early live with the idle sled
(sled.py), which the machine's MMIO callbacks also use to cut a slice.

Time: `machine.instructions` is the machine's clock: instructions executed plus idle time skipped in
`wfi`. Each slice is `emu_start(pc, until, count=n)` with n = min(burst, next device deadline - now,
budget left); devices are serviced and interrupts delivered only between slices. The burst is the
quantum (100k by default), shortened where short slices pay (`_next_count`): after a wfi, a device
cut or an interrupt entry (DEVICE_BURST, doubling); while an interrupt waits for the ISA's global
mask (from 1, doubling: taken within a few instructions of the unmasking); while `defer` holds it
back (the PC in the fast path's blob: DEFER_BURST steps, never doubled, so the quantum moves
nothing). A handler's return to task code gives the task back the burst it had when the interrupt
came: a timer tick costs a compute loop two slices (entry to the end of the handler's read window,
its return included; the rest to the next deadline). On Cortex-M too: Unicorn 2.1.4 runs a Thumb IT
block to its end when a slice's count runs out inside it, so each slice takes the instructions the
engine really counted (rawcount.py, `ArmV7M.overrun_reader`); where that counter cannot be read,
Cortex-M keeps its ramp. Slices run in `CountedRun` (slicecount.py); wfi: `WfiIdle` (wfiidle.py).

Reads: an mtime read outside a READ_WINDOW slice is exact without a cut where the cut's
boundary would do nothing (`read_boundary`, from timerport.py: no interrupt pending, serviced
devices `Device.due_only`, no wall-clock poll due, no sled `mret` yet in the slice): Unicorn's
counter gives the load's time, the callback does the cut's, the boundary's and the window's
bookkeeping and moves the running emu_start's end to the window's (`CountedRun.move_end`).
Boundaries, `Clock.now` and every read are those of the cut (tests/machine/test_read_boundary.py).

Cuts and exact stops: sled.py (the idle sled counts a slice that a hook ended early). Faults
are exact too: traps, refused accesses, page faults, fatal reports, Ctrl-C and the wall clock
inside a slice end it through the sled (sled.py, "Faults"): `instructions` counts up to and
including the faulting instruction. Only a slice that raises out of `emu_start` (a write into
the sled; an exception no hook saw; a fault inside a Thumb IT block) or a redirect the CPU lost
(Ctrl-C just before `emu_start`) counts to the slice's start (a lower bound, off by less than a
quantum, deterministic), with `RunResult.exact` False.

Run reasons (RunResult.reason): "exit" (ecall exit; exit_code = a0, signed),
"panic" (ecall panic), "fault" (CPU fault), "fatal" (a fatal report: bad ecall, bad
doorbell, or the composer's `fatal()`), "budget" (max_instructions), "timeout"
(wall clock), "wfi" (wfi with nothing that can ever wake it), "interrupted" (the
host asked the run to stop: `interrupt()`, Ctrl-C; not the firmware's doing), and any
reason a `IdleSled.stop_slice` caller gives (the harness's "break").

Limits in every state: the budget bounds each slice and idle step; the wall clock is
read every POLL_SLICES slices, every idle step and (machine.py) WALL_POLL_CALLS hypercalls.

Invariants:
 1. Unicorn is never stopped from a memory or MMIO callback unless the run is ending.
 2. Time moves only at boundaries; devices see `Clock.now` = the start of the slice.
 3. Firmware misbehaviour never raises out of `run()`: it becomes a KallocError in
    `RunResult.errors` and a reason. (A bug in Python code run from a hook does raise.)
 4. Same board, firmware, options and seed: the same RunResult, wall_s aside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kalloc.errors import KallocError, TimeoutError_
from kalloc_machine.devices import Device
from kalloc_machine.runresult import RunResult, run_result
from kalloc_machine.sled import SliceStop
from kalloc_machine.slicecount import CountedRun
from kalloc_machine.wfiidle import WfiIdle

if TYPE_CHECKING:
    from kalloc_machine.machine import Machine

WFI_BURST = 256  # first slice after a wfi: an idle loop's wake-up work is short
# First slice after an interrupt entry or a device cut: a cut burns the rest of its slice in the
# sled and handlers touch devices soon after entry; starting small and doubling bounds that burn.
DEVICE_BURST = 256
DEFER_BURST = 16  # steps while `defer` holds an interrupt back (the PC in the blob): never doubled
# After an mtime read at an exact boundary, the next slice is this short and its mtime reads are
# not cut: kalloc_now() reads hi, lo, hi, each within READ_WINDOW instructions of the first.
READ_WINDOW = 64
POLL_SLICES = 8  # the wall clock is read every POLL_SLICES slices (a slice is at most a quantum)


def _own(device: Any, method: str) -> bool:
    """Does the device have a `method` of its own (not Device's no-op; none: not its own)?"""
    mine = getattr(type(device), method, None)
    return mine not in (None, getattr(Device, method)) or method in getattr(device, "__dict__", ())


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
        # add_timed: the timed devices, those whose service / deadline a boundary asks, and whether
        # every serviced one waits for its deadline
        self.timed: tuple[Any, ...] = ()
        self.serviced: tuple[Any, ...] = self.timed
        self.deadlined: tuple[Any, ...] = self.timed
        self._quiet = False
        self.add_timed(*(d for d in (*m.devices, m.injector) if d is not None))
        self.clint, self.intc, self.dma = m.clint, m.intc, m.dma
        self.scs = next((d for d in m.devices if d.type == "scs"), None)  # Cortex-M (isa/armv7m_scs.py)
        self.ending: str | None = None  # set by fatal(): the run ends at this boundary
        self.slice_end = 0
        self.read_exact = False
        self.irq_timer = False
        self.cuts = 0
        self._ran, self._timer_taken, self._exact = False, 0, True
        self._exit_code: int | None = None
        self.idle = WfiIdle(self)  # the wfi fast-forward (wfiidle.py)
        self._burst = m.quantum  # next slice length while no interrupt waits (see _next_count)
        self._task_burst = m.quantum  # the burst when the last interrupt came from task code
        until = self.sled.call_stops[0] - 1  # odd: PC never equals it (slicecount.py)
        movable = m.clint is not None and self.scs is None  # RV32: the CLINT's reads take boundaries in place
        self.counted = CountedRun(self.uc, self.isa, self.sled, until, movable=movable)
        self._masked_burst, self._was_masked, self._deferred = 1, False, False  # a waiting interrupt's
        self._read_window = False  # the next slice must be a READ_WINDOW
        self.interrupted, self.wall_deadline = False, float("inf")  # interrupt(); perf_counter() limit
        self.on_poll: Callable[[int], None] | None = None  # every POLL_SLICES slices: kalloc run's progress
        # True while no interrupt may be taken at this boundary (the fast path's blob holds the PC:
        # kalloc_machine/fastpath.py): a pending interrupt waits as if masked. None: never.
        self.defer: Callable[[], bool] | None = None
        self._poll, self._returns0 = 0, 0  # boundaries to the next wall-clock poll; irq returns at start

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
            self.errors.append(self.timeout_error())
        self.sled.end("timeout")

    def timeout_error(self, pc: int | None = None) -> KallocError:
        """The wall-clock limit's error, at pc (default: the CPU's)."""
        pc = self.isa.pc(self.uc) if pc is None else pc
        return TimeoutError_(f"wall-clock limit of {self.machine.timeout_s:g} s exceeded", pc=pc,
                             backtrace=self.faults.backtrace(pc))  # fmt: skip

    # -- between slices ---------------------------------------------------------------------

    def add_timed(self, *devices: Any) -> None:
        """Add devices (or any object with `service(now)`, optionally `deadline()`: the fast path,
        a tool's clock) to those a boundary serves; the lists a boundary asks are rebuilt here
        once: only the ones whose `service` / `deadline` are their own (a UART has neither)."""
        self.timed += devices
        self.serviced = tuple(d for d in self.timed if _own(d, "service"))
        self.deadlined = tuple(d for d in self.timed if _own(d, "deadline"))
        self._quiet = all(getattr(d, "due_only", False) for d in self.serviced)

    def service(self) -> None:
        """Serve the timed devices at `Clock.now` (a boundary, an idle step)."""
        now = self.clock.now
        for d in self.serviced:
            d.service(now)

    def _next_deadline(self) -> int | None:
        now, soonest = self.clock.now, None
        for d in self.deadlined:
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
            if cause and self.isa.enter_interrupt(self.uc, cause):
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
        self._deferred = self.defer is not None and self.defer()  # the PC is in the fast path's blob
        if not isa.interrupts_enabled(self.uc) or self._deferred:
            return True
        if ext:
            isa.enter_interrupt(self.uc, isa.external_cause)
            self.irq_timer = False
        else:
            isa.enter_interrupt(self.uc, isa.timer_cause)
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
        """The length of the next slice before deadlines and budget (adaptive): short after a wfi
        (WFI_BURST), a cut or an entry (DEVICE_BURST), each slice that runs out doubling the next
        up to the quantum; while an interrupt waits for the global mask, from 1 instruction,
        doubling: it is taken within a few instructions of the `csrsi mstatus` that unmasks it."""
        was_masked, self._was_masked = self._was_masked, masked
        if self._deferred:  # fixed steps out of the blob: the same boundaries whatever the quantum
            self._deferred = self._was_masked = False
            return min(DEFER_BURST, self.machine.quantum)
        if masked:
            self._masked_burst = min(2 * self._masked_burst, self.machine.quantum) if was_masked else 1
            return self._masked_burst
        return self._burst

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
        counted = self.counted
        try:
            lost = counted.run(isa.pc(uc), count, self._ended)
            count = counted.count  # a read boundary in the slice moved its end (read_boundary)
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
            self._burst = min(2 * self._burst, self.machine.quantum)
            if irq.returns != returns and not irq.depth and (self.scs is None or counted.overrun is not None):
                # task code: its own burst (Cortex-M only where its slices count exactly: rawcount.py)
                self._burst = max(self._burst, self._task_burst)
            return self.ending
        in_sled = sled.leave()
        if in_sled is None:  # the redirect was lost (Ctrl-C; an IT block): it ran out, the CPU goes on
            in_sled, self._exact, stop.pc, stop.replay = 0, False, isa.pc(uc), False  # where it stands
        self.clock.now = start + count - in_sled - lost
        if stop.reason == "cut":
            return self._after_cut(stop)
        if stop.reason == "exit":
            self._exit_code = stop.exit_code
            return "exit"
        if stop.reason != "wfi":
            return stop.reason
        self.idle.pc = stop.pc
        self._burst = min(WFI_BURST, self.machine.quantum)
        self._was_masked = False  # after wfi, the unmasking may be the very next instruction
        isa.set_pc(uc, stop.pc + isa.idle_size)
        return self.ending or self.idle.run()

    def _ended(self) -> bool:  # the run ends at this boundary (fatal(), interrupt())
        return self.ending is not None or self.interrupted

    def read_boundary(self) -> bool:
        """From the CLINT's mtime read outside a read window (timerport.py): take, in place, the
        boundary its cut would make, and turn the rest of the slice into that boundary's
        READ_WINDOW; False: nothing done, the caller cuts (module docstring, "Reads")."""
        counted, sled, m = self.counted, self.sled, self.machine
        if not counted.movable or not self._quiet or self._poll < 1 or sled.redirects or sled.stop:
            return False
        if self._ended() or m.irq_state.returns != self._returns0:
            return False
        start = self.slice_end - counted.count
        now = start + counted.counted() - 1  # instructions before this load: the time its replay would read
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
        self.slice_end = now + count
        counted.move_end(now - start + count)  # Unicorn stops this emu_start there (no sled mret ran yet)
        return True

    def _after_cut(self, stop: SliceStop) -> str | None:
        m = self.machine
        self.cuts += 1
        self._burst = min(DEVICE_BURST, m.quantum)
        if stop.replay:  # the aborted load was counted; it runs again next slice
            self.clock.now -= 1
            self._read_window = True
        self.isa.set_pc(self.uc, stop.pc)
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
                    self.errors.append(self.timeout_error())
                    reason = "timeout"
                    break
                if self.on_poll is not None:
                    self.on_poll(now)
            self.service()
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
        wall = time.perf_counter() - started
        return run_result(m, reason, wall, exit_code=self._exit_code, exact=self._exact,
                          timer_taken=self._timer_taken, idle=self.idle.time)  # fmt: skip
