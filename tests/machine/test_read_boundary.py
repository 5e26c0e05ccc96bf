"""Issue 14, fifth session: an mtime read takes its boundary in place (runloop.py, "Reads").

An mtime read outside a read window used to end the slice (a cut through the idle sled), and
the load ran again at the boundary, in a READ_WINDOW slice of its own. Where that boundary
would do nothing (no interrupt pending, every serviced device waiting for its deadline, no
wall-clock poll due), the CLINT's callback now reads the exact time from Unicorn's counter,
keeps the cut's bookkeeping and moves the running emu_start's limit to the window's end: a
tick costs a compute loop two slices, not three, and every report is the one of before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import unicorn
from kalloc_machine.runloop import RunLoop
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session
from kalloc_machine.tools.benchkit import MODES, bench_elf, poke


def _bench(mode: str, period: int = 100_000, iters: int = 20_000, **options: Any) -> Session:
    s = Session(RunOptions(firmware=bench_elf("default"), sanitize="off", **options))
    poke(s, "bench_mode", MODES[mode])
    poke(s, "bench_iters", iters)
    poke(s, "bench_timer_period", period)
    return s


def _emu_starts(s: Session) -> tuple[int, RunOutcome]:
    calls = [0]
    start = unicorn.Uc.emu_start

    def spy(uc: unicorn.Uc, *a: Any, **kw: Any) -> None:
        calls[0] += 1
        start(uc, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(unicorn.Uc, "emu_start", spy)
        out = s.run()
    return calls[0], out


def test_a_tick_costs_two_slices_and_its_return() -> None:
    plain, _ = _emu_starts(_bench("compute"))
    ticking, out = _emu_starts(_bench("compute_irq"))
    ticks = out.result.irq_counts[0]
    assert out.exit_status == 0 and ticks == 51
    # per tick: the slice from the entry (its mtime read inside), the one after it, and the
    # emu_start that runs on past the sled's mret; before: one more slice (the read's cut)
    assert ticking - plain <= 3 * ticks + 2
    assert out.result.instructions == 5_127_140  # the count of before (the previous commit)


def _report(out: RunOutcome) -> str:
    return json.dumps({k: v for k, v in out.report.items() if "wall" not in k}, sort_keys=True)


def _both(build: Any) -> tuple[str, str]:
    """The report of `build()` as it runs, and with every mtime read cut as before."""
    fast = _report(build().run())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunLoop, "read_boundary", lambda self: False)
        slow = _report(build().run())
    return fast, slow


FIRMWARE = ["tests/irq_kernel", "tests/timer_atomic", "tests/hostile_time_handler", "tests/mret_semantics",
            "tests/free_stack_irq", "tests/sled_t6", "tests/tags_budgets", "tests/irq_dma", "demo"]


@pytest.mark.parametrize("name", FIRMWARE)
@pytest.mark.parametrize("quantum", [None, 100, 333])
def test_firmware_reports_are_those_of_the_cut(name: str, quantum: int | None) -> None:
    def build() -> Session:
        every = 5_000 if name == "tests/irq_dma" else 0
        return Session(RunOptions(firmware=str(prebuilt(name)), max_instructions=20_000_000, quantum=quantum,
                                  irq_every=every, irq_jitter=700))  # fmt: skip

    fast, slow = _both(build)
    assert fast == slow


@pytest.mark.parametrize("period", [60, 90, 150, 257, 1_000, 30_000])
@pytest.mark.parametrize("quantum", [None, 100, 1_000])
def test_ticks_of_every_period_are_those_of_the_cut(period: int, quantum: int | None) -> None:
    """Periods shorter than the handler's window (the deadline caps the window), around the
    bursts, and long ones; quanta that end slices inside the handler."""
    fast, slow = _both(lambda: _bench("compute_irq", period, iters=300, quantum=quantum))
    assert fast == slow


def _binding_reads(s: Session) -> int:
    calls = [0]
    reg_read, mem_read = unicorn.Uc.reg_read, unicorn.Uc.mem_read

    def spy_reg(uc: unicorn.Uc, *a: Any, **kw: Any) -> Any:
        calls[0] += 1
        return reg_read(uc, *a, **kw)

    def spy_mem(uc: unicorn.Uc, *a: Any, **kw: Any) -> Any:
        calls[0] += 1
        return mem_read(uc, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(unicorn.Uc, "reg_read", spy_reg)
        mp.setattr(unicorn.Uc, "mem_read", spy_mem)
        assert s.run().exit_status == 0
    return calls[0]


def test_a_tick_reads_no_register_or_word_through_the_binding() -> None:
    """mstatus/mie at delivery and the marked mret's word are read by untyped ctypes calls
    (isa/rv32.py, rawregs.py): the binding's reg_read / mem_read cost ~5k host instructions each."""
    assert _binding_reads(_bench("compute_irq")) - _binding_reads(_bench("compute")) < 10  # 51 ticks
