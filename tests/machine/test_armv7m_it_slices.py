"""Cortex-M slices count exactly through Thumb IT blocks, so where a slice ends changes nothing.

Unicorn 2.1.4 forbids a stop inside an IT block (target/arm/translate.c sets
`no_exit_request` there): a slice whose count runs out inside one runs the block to its end.
The run loop reads how many instructions the engine really counted (rawcount.py,
`ArmV7M.overrun_reader`) and adds them to the slice, so the machine's time, its interrupts and
every report are the same for any quantum; with that, a handler's return gives the task back
its burst on Cortex-M too (runloop.py), as on RV32.
"""

from __future__ import annotations

import json
import random
from typing import Any

import unicorn
from kalloc_machine.rawcount import counter
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from unicorn import arm_const as ac

from tests.machine.ticking import ticking

CODE = 0x1000
# adds r0,#1; cmp r1,#0; ite ne; movne r2,#0; andeq.w r2,r2,#1; cmp r0,r3; bne (7 instructions, one skipped)
LOOP = bytes.fromhex("0130" "0029" "14bf" "0022" "02f00102" "9842" "f7d1")


def _engine() -> unicorn.Uc:
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.mem_map(CODE, 0x1000)
    uc.mem_write(CODE, LOOP + b"\x00\xbf" * 64)
    uc.reg_write(ac.UC_ARM_REG_R3, 1000)
    return uc


def test_unicorn_runs_an_it_block_to_its_end_when_the_count_runs_out_inside() -> None:
    """count=3 ends after the `ite`: the engine runs the block (movne skipped, andeq counted) and
    stops after it, having counted 4; its counter says so. A skipped instruction of a block is not
    counted at all: 300 counted instructions are 50 laps of the 7-instruction loop."""
    uc = _engine()
    uc.emu_start(CODE | 1, 0xFFFF_FFFF, count=3)
    ctr = counter(uc)
    assert ctr is not None
    assert uc.reg_read(ac.UC_ARM_REG_PC) == CODE + 12 and ctr.value - 1 == 4
    uc = _engine()
    uc.emu_start(CODE | 1, 0xFFFF_FFFF, count=300)
    assert uc.reg_read(ac.UC_ARM_REG_R0) == 50 and uc.reg_read(ac.UC_ARM_REG_PC) == CODE


def _sliced(slices: list[int], total: int = 300) -> tuple[int, int, int]:
    """(instructions counted, pc, r0) after running `total` in these slices, each slice's count
    taken from the engine's counter as the run loop does."""
    uc, now, pc = _engine(), 0, CODE
    for n in slices:
        if now >= total:
            break
        uc.emu_start(pc | 1, 0xFFFF_FFFF, count=min(n, total - now))
        ctr = counter(uc)
        assert ctr is not None
        now += ctr.value - 1
        pc = uc.reg_read(ac.UC_ARM_REG_PC)
    return now, pc, uc.reg_read(ac.UC_ARM_REG_R0)


def test_slices_counted_by_the_engine_end_where_one_run_through_does() -> None:
    through = _sliced([300])
    rng = random.Random(7)
    for first in range(1, 14):
        assert _sliced([first, 300]) == through
    for _ in range(60):
        assert _sliced([rng.randint(1, 9) for _ in range(300)]) == through


def _report(quantum: int) -> str:
    s = Session(RunOptions(firmware=str(prebuilt("tests/armv7m_it_ticks", "armv7m")), board="stm32f4",
                           quantum=quantum))  # fmt: skip
    out = s.run()
    assert out.exit_status == 0, out.report["errors"]
    report: dict[str, Any] = {**out.report, "options": None}  # options: the quantum
    return json.dumps(report, sort_keys=True)


def test_it_blocks_under_a_ticking_timer_give_one_report_for_every_quantum() -> None:
    """A hot loop of IT blocks while SysTick ticks every 997 instructions (firmware
    arm/tests/armv7m_it_ticks.c): the same report bytes, its tick-time digest included, for
    quanta that end slices all over the loop (before, 256 and 100 each gave another digest)."""
    reports = {q: _report(q) for q in (100_000, 3001, 997, 256, 100)}
    assert len(set(reports.values())) == 1
    assert "ticks 300 digest 5ebdf3ad" in json.loads(reports[100])["uart"]


def test_a_return_gives_the_task_its_burst_on_cortex_m_too() -> None:
    """bench.elf's compute loop on stm32f4 with SysTick every 100k instructions: a tick costs a few
    slices (entry, the handler up to and with its return, the task's own burst), not a ramp of ~10."""
    _s, out, slices = ticking("stm32f4")
    assert out.exit_status == 0
    ticks = out.result.irq_counts[0]  # SysTick is reported as the timer line
    assert ticks >= 9
    assert slices <= 4 * ticks + 12
