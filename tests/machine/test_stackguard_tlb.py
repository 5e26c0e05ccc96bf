"""The stack guard answered by translation, not by a memory hook (docs/performance.md, "The
always-on memory hooks").

The SDK's linker scripts page-align the 4 KiB guard, so the machine refuses its page in the
TLB-fill hook (mmu.py `Mmu.trap`, bridge/stackguard.py) and installs no memory hook, which
slowed every load and store of a run. The claim checked here: every stack-overflow firmware
on both ISAs gives the SAME report (kind, message, access address and width, registers,
sites, instruction count: the whole JSON, byte for byte) as the memory hook gives, and the
faulting access does not land (the guard keeps its bytes; under the memory hook the store
lands in the guard). The memory-hook side is the fallback the guard keeps for an ELF whose
guard is not page-aligned or a machine without translation: forced here by installing the
guard without the machine's translation.
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.bridge import stackguard
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

PAGE = 4096
# (shipped ELF, board, (symbol, value) poked before the run): every stack-overflow firmware.
OVERFLOWS = [
    ("tests/hostile_stack_task", "default", None),
    ("tests/hostile_stack_irq", "default", None),
    ("tests/hostile_stack_wild", "default", None),
    ("tests/hostile_stack_task", "stm32f4", None),
    ("tests/armv7m_psp", "stm32f4", ("psp_mode", 0x100 | 2)),
]


def session(name: str, board: str, poke: tuple[str, int] | None, *, trap: bool,
            monkeypatch: pytest.MonkeyPatch) -> Session:  # fmt: skip
    isa = "armv7m" if board == "stm32f4" else None
    if not trap:  # the fallback: the guard installed without the machine's translation
        real = stackguard.install
        monkeypatch.setattr(stackguard, "install",
                            lambda machine, firmware, depot=None, mmu=None: real(machine, firmware, depot))
    s = Session(RunOptions(firmware=str(prebuilt(name, isa)), board=board))
    monkeypatch.undo()
    if poke is not None:
        addr = s.firmware.symbol_addr(poke[0])
        assert addr is not None
        s.machine.phys.write_u32(addr, poke[1])
    return s


def guard_bytes(s: Session) -> bytes:
    assert s.stackguard is not None
    b = s.stackguard.bounds
    return s.machine.phys.read(b.guard, b.bottom - b.guard)


@pytest.mark.parametrize(("name", "board", "poke"), OVERFLOWS, ids=[f"{n}@{b}" for n, b, _ in OVERFLOWS])
def test_the_trapped_guard_gives_the_memory_hooks_report_byte_for_byte(
        name: str, board: str, poke: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    hooked = session(name, board, poke, trap=False, monkeypatch=monkeypatch)
    trapped = session(name, board, poke, trap=True, monkeypatch=monkeypatch)
    assert hooked.stackguard is not None and trapped.stackguard is not None
    assert (hooked.stackguard.trapped, trapped.stackguard.trapped) == (False, True)
    before = guard_bytes(trapped)
    a, b = hooked.run(), trapped.run()
    assert b.exit_status == 65 and b.report["end"] == "fault"
    (err,) = [e for e in b.report["errors"] if e["kind"] == "stack-overflow"]
    assert err["access"]["size"] in (1, 2, 4)
    assert b.report["instructions"] == a.report["instructions"]
    assert dumps(b.report) == dumps(a.report)
    assert guard_bytes(trapped) == before  # the faulting access did not land


def test_the_sdk_guard_is_one_page_aligned_page_on_both_isas() -> None:
    for name, isa in [("demo", None), ("tests/hostile_stack_task", None), ("demo", "armv7m"),
                      ("tests/hostile_stack_task", "armv7m")]:  # fmt: skip
        s = Session(RunOptions(firmware=str(prebuilt(name, isa)), board="stm32f4" if isa else "default"))
        assert s.stackguard is not None and s.stackguard.trapped, name
        b = s.stackguard.bounds
        assert b.guard % PAGE == 0 and b.bottom - b.guard == PAGE
        assert s.mmu.traps == [(b.guard, b.bottom)]


def test_a_store_under_the_memory_hook_lands_in_the_guard_and_under_the_trap_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """What the trap changes beside the speed: the run's first store into the guard (a
    prologue's) is sent to the fault sink instead of landing."""
    hooked = session("tests/hostile_stack_task", "default", None, trap=False, monkeypatch=monkeypatch)
    trapped = session("tests/hostile_stack_task", "default", None, trap=True, monkeypatch=monkeypatch)
    before = guard_bytes(hooked)
    hooked.run()
    trapped.run()
    assert guard_bytes(hooked) != before
    assert guard_bytes(trapped) == before


def test_trap_refuses_what_is_not_whole_pages_of_ram() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("demo"))))
    assert s.stackguard is not None
    g = s.stackguard.bounds.guard
    assert not s.mmu.trap(g + 16, g + PAGE, lambda page, access: None)  # not page-aligned
    assert not s.mmu.trap(g, g + PAGE, lambda page, access: None)  # already trapped
    assert not s.mmu.trap(0x1000_0000, 0x1000_1000, lambda page, access: None)  # not RAM
