"""Idling in wfi: the run loop fast-forwards machine time to what can wake the CPU.

`WfiIdle(loop)` is asked by the run loop (runloop.py) when a slice stopped at a marked `wfi`
(sled.py): `run()` services the devices, and while nothing can wake the CPU moves `Clock.now`
to the next deadline that matters, in steps of at most IDLE_JUMP. wfi wakes on any interrupt
pending and enabled, whatever the global mask: the timer when mie.MTIE, a line when mie.MEIE
and the line is enabled in the interrupt controller (fixed while the CPU sleeps; on Cortex-M,
the SCS decides: `can_wake`). Nothing that can ever wake it: the run ends, "wfi", with a
timeout error naming the raised lines that are not a wake-up.

Data: `time` (the idle time skipped so far: RunResult.idle), `pc` (the last wfi's address).

Invariants:
 1. Time moves only here and at slice boundaries; the budget bounds each step, and the
    interrupt flag and the wall clock are read after each one.
 2. The injector's deadline is a step only when its line can wake the CPU: otherwise it
    catches up in its `service` (exact times, deterministic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.errors import KallocError, TimeoutError_

if TYPE_CHECKING:
    from kalloc_machine.runloop import RunLoop

IDLE_JUMP = 1 << 20  # the longest idle step (a non-waking injector catches up at most this much)


class WfiIdle:
    """The wfi fast-forward of one run loop (module docstring)."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self.time = 0  # idle time skipped in wfi (RunResult.idle)
        self.pc = 0  # the address of the wfi the CPU sleeps in

    def can_wake(self, timer_en: bool, ext_en: bool) -> bool:
        """wfi wakes on any interrupt pending and enabled, whatever the global mask."""
        loop = self.loop
        if loop.scs is not None:  # Cortex-M: pending with the priority to pre-empt, PRIMASK aside
            return bool(loop.scs.can_wake())  # type: ignore[attr-defined]
        now = loop.clock.now
        return bool((timer_en and loop.clint is not None and loop.clint.pending(now))
                    or (ext_en and loop.intc is not None and loop.intc.asserted()))  # fmt: skip

    def deadlock_error(self, ext_en: bool, enabled: int) -> KallocError:
        """wfi that nothing can wake; names the raised lines that are not a wake-up."""
        intc, why = self.loop.intc, ""
        pending = intc.pending if intc is not None else 0
        if pending and not (ext_en and pending & enabled):
            lines = ", ".join(str(n) for n in range(32) if pending >> n & 1)
            why = (f" (line(s) {lines} raised but " + ("not enabled in the interrupt controller)" if ext_en
                   else "external interrupts are off in mie)"))  # fmt: skip
        return TimeoutError_("wfi with nothing to wake it: no timer, DMA transfer or injected interrupt that "
                             f"could wake the CPU is pending or due{why}", pc=self.pc,
                             backtrace=self.loop.faults.backtrace(self.pc))  # fmt: skip

    def run(self) -> str | None:
        """Fast-forward through wfi to what can wake it. Returns a reason when the run must end.

        Wakers (fixed while the CPU sleeps): the timer when mie.MTIE, a device whose line is
        enabled when mie.MEIE. Idle steps end at the deadlines of the wakers and of the other
        devices (a DMA completion), except the injector's when its line cannot wake (invariant 2).
        """
        loop = self.loop
        timer_en, ext_en = loop.isa.pending_enable(loop.uc)
        enabled = loop.intc.enable if (ext_en and loop.intc is not None) else 0
        inj = loop.machine.injector
        wakers, steps_at = [], []
        for d in loop.deadlined:  # a timed device without a deadline neither wakes nor steps
            line = -1 if d is loop.clint or d is loop.scs else getattr(d, "line" if d is inj else "irq", None)
            wakes = timer_en if line == -1 else line is not None and bool(enabled >> line & 1)
            wakers += [d] if wakes else []
            steps_at += [d] if wakes or d is not inj else []
        budget = loop.machine.max_instructions
        while True:
            loop.service()  # what fell due inside the slice (or the idle step) that reached now
            if self.can_wake(timer_en, ext_en):
                return None
            now = loop.clock.now
            if not any((t := d.deadline()) is not None and t > now for d in wakers):
                loop.errors.append(self.deadlock_error(ext_en, enabled))
                return "wfi"
            due = [t for d in steps_at if (t := d.deadline()) is not None and t > now]
            target = min(*due, budget, now + IDLE_JUMP)
            self.time += target - now
            loop.clock.now = target
            if target >= budget:
                return None  # the loop reports the budget
            if loop.interrupted:
                return "interrupted"
            if loop.wall_expired():
                loop.errors.append(loop.timeout_error(self.pc))
                return "timeout"
