"""Issue 14, fifth session: the CLINT's MMIO served by raw ctypes callbacks (timerport.py).

A timer tick's ten CLINT accesses no longer cross the Unicorn binding's callback wrappers nor
`Machine._mmio_read` / `_mmio_write`: the ctypes callback is `TimerPort.read` / `write`
itself. What they do is what the machine did (the reports of every RV32 ELF of firmware/build
were compared before and after; docs/performance.md, "Issue 14, fifth session").
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.devices import Clint
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.sled import IdleSled
from kalloc_machine.timerport import TimerPort
from kalloc_machine.tools.benchkit import MODES, bench_elf, poke


def _ticking(period: int, iters: int = 2_000) -> Session:
    s = Session(RunOptions(firmware=bench_elf("default"), sanitize="off"))
    poke(s, "bench_mode", MODES["compute_irq"])
    poke(s, "bench_iters", iters)
    poke(s, "bench_timer_period", period)
    return s


def _cut_callers(period: int, iters: int = 2_000) -> set[tuple[tuple[str, str], ...]]:
    """The frames between each `IdleSled.cut` and `emu_start` in a ticking run."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    cut = IdleSled.cut

    def spy(self: IdleSled, **kw: Any) -> None:
        frames = [(Path(f.filename).name, f.function) for f in inspect.stack()[1:]]
        seen.add(tuple(frames[: [fn for _, fn in frames].index("emu_start")]))
        cut(self, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(IdleSled, "cut", spy)
    try:
        out = _ticking(period, iters).run()
    finally:
        mp.undo()
    assert out.exit_status == 0 and out.result.irq_counts[0] > 3
    return seen


def test_an_mtime_read_cuts_from_the_ctypes_callback_itself() -> None:
    assert _cut_callers(20_000) == {(("timerport.py", "read"),)}


def test_a_store_into_the_slice_cuts_from_the_ctypes_callback_itself() -> None:
    # a period of 60 instructions: the handler's mtimecmp store lands inside its read window
    # (through Machine.deadline_moved, every device's one cut rule since issue 14's sixth session)
    assert (("machine.py", "deadline_moved"), ("timerport.py", "write")) in _cut_callers(60, iters=20)


class Boom(BaseException):
    pass


def test_an_exception_in_the_timer_callbacks_is_raised_by_the_run() -> None:
    s = _ticking(20_000)

    def boom(self: IdleSled, **kw: Any) -> None:
        raise Boom("from the CLINT")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(IdleSled, "cut", boom)
        with pytest.raises(Boom, match="from the CLINT"):
            s.machine.run()


STORES = [(0x4000, 1, 0x12), (0x4001, 2, 0xBEEF), (0x4004, 4, 7), (0x4006, 1, 0x55), (0x4000, 4, 0xFFFF_FFFF),
          (0x0, 4, 1)]  # fmt: skip


@pytest.mark.parametrize("offset,size,value", STORES)
def test_every_store_changes_mtimecmp_as_the_device_does(offset: int, size: int, value: int) -> None:
    """The port's inline aligned stores and its fallback to `Clint.write` agree with the device."""
    s = _ticking(20_000)
    clint = s.machine.clint
    assert clint is not None
    port = TimerPort(s.machine, clint)
    twin = Clint(s.machine.board.device("clint"), s.machine.clock)  # type: ignore[arg-type]
    for start in (Clint.NEVER, 0x1_2345_6789):
        clint.mtimecmp = twin.mtimecmp = start
        port.write(None, offset, size, value, None)
        twin.write(offset, size, value)
        assert clint.mtimecmp == twin.mtimecmp
        assert port.read(None, offset, size, None) == twin.read(offset, size)
        assert not clint.poked
