"""The points of `kalloc campaign --irq-allocs`: the exact instruction count of each task allocation.

"Every allocation from task context pre-empted once by a handler that allocates (the
handler the firmware registers)": `alloc_times(options)` runs the firmware unperturbed
once more, with an intercept at the hypercall bridge (the fault injector with nothing to
fail, as campaign.RequestCounter) that, at each allocation request made from task context
with interrupts on, ends the emulation slice right after the hypercall's store
(`IdleSled.cut`, as a device store that moves a deadline does). A recorder among the run
loop's timed devices reads the clock at the boundary that follows: the exact instruction
count T of that store, the store included. `kalloc run --irq-at T` then raises the test
line at that very boundary, so the handler runs right after the allocation returned its
pointer to the firmware, before the allocating code's next instruction.

Invariants:
 1. Exact: a cut ends its slice after the store, and a run with `--irq-at T` ends a slice
    at T too (the injector's deadline), with the same state before it (nothing was
    perturbed earlier). An interrupt pending but masked at an allocation may be taken a
    few instructions apart in the two runs (the masked-burst slices start anew at a cut):
    the points are then still deterministic, only not at the allocation's very boundary.
 2. Allocations from a handler or with interrupts off are not points (no handler can
    pre-empt them); the points are in request order, each once.
 3. The counting run's own report is not kept: the campaign's baseline is the plain run.
"""

from __future__ import annotations

from typing import Any

from kalloc.config import Context
from kalloc.failslab import FailConfig
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.campaign import RequestCounter, unperturbed


class _Clock:
    """A timed device of the run loop that only reads the clock at the boundary after a cut."""

    irq = None  # no interrupt line: never a waker (RunLoop._idle)

    def __init__(self) -> None:
        self.armed = False
        self.times: list[int] = []

    def service(self, now: int) -> None:
        if self.armed:
            self.armed = False
            self.times.append(now)


class _CutAtTaskAllocations(RequestCounter):
    """RequestCounter that also cuts the slice after each allocation request from task context, irqs on."""

    def __init__(self, session: Session, clock: _Clock) -> None:
        super().__init__(session, FailConfig())
        self.clock = clock
        self.sled = session.machine.sled

    def __call__(self, service: int, caller: Any, args: list[int]) -> tuple[int, int] | None:
        before = len(self.handles)
        answer = super().__call__(service, caller, args)
        if len(self.handles) != before and caller.context is Context.TASK:
            self.clock.armed = True
            self.sled.cut(replay=False)  # the slice ends after this store: the clock is exact there
        return answer


def alloc_times(options: RunOptions) -> list[int]:
    """The instruction count right after each task-context allocation's hypercall, unperturbed."""
    session = Session(unperturbed(options))
    clock = _Clock()
    _CutAtTaskAllocations(session, clock)
    session.machine.loop.add_timed(clock)
    session.run()
    return clock.times
