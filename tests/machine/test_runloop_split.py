"""Issue 14, fifth session: the run loop's debt (runloop.py, slicecount.py, wfiidle.py, runresult.py).

Timed devices are added through `RunLoop.add_timed`, which rebuilds once the lists a boundary
asks (no per-boundary check that the list grew); an object without a `deadline` is never asked
for one, at a boundary or in wfi; the run loop is split by responsibility, with no long-module
marker.
"""

from __future__ import annotations

from pathlib import Path

import kalloc_machine.runloop as runloop
import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


class Ticker:
    """A timed object with a `service` and no `deadline` (as the fast path's ring drain)."""

    def __init__(self) -> None:
        self.boundaries = 0

    def service(self, now: int) -> None:
        self.boundaries += 1


def test_add_timed_serves_at_every_boundary_and_never_asks_a_deadline() -> None:
    # a timer ~2^31 instructions ahead: the CPU sleeps in wfi and the idle loop fast-forwards
    s = Session(RunOptions(firmware=str(prebuilt("tests/hostile_time_wfi_far")), max_instructions=1 << 33))
    loop, ticker = s.machine.loop, Ticker()
    loop.add_timed(ticker)
    assert ticker in loop.serviced and ticker not in loop.deadlined
    out = s.run()
    assert out.result.reason == "exit" and out.result.idle > 1 << 30
    assert ticker.boundaries > 2  # served at boundaries and idle steps, never asked for a deadline


def test_the_timed_devices_cannot_be_appended_behind_the_loops_back() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("tests/hello"))))
    with pytest.raises(AttributeError):
        s.machine.loop.timed.append(Ticker())  # type: ignore[attr-defined]


def test_a_uart_is_not_asked_at_boundaries() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("tests/hello"))))
    loop = s.machine.loop
    assert s.machine.uart in loop.timed
    assert s.machine.uart not in loop.serviced and s.machine.uart not in loop.deadlined


def test_the_run_loop_needs_no_long_module_marker() -> None:
    text = Path(runloop.__file__).read_text()
    assert "long-module" not in text and len(text.splitlines()) <= 400
