"""The Cortex-M hypercall's fast call-site walk (isa/armv7m_unwind.py, CallSiteWalker) answers
exactly as the general walk (walk_cfi and FaultReporter.backtrace's leaf rule) or not at all.

Every shipped Cortex-M firmware runs with a doorbell hook that, at each hypercall, walks both
ways from the same CPU state; the fast walk must return the general walk's PCs or None (then
the bridge takes the general walk). The reports themselves stay byte-identical: test_boards_firmware
compares both machines, and a firmware with a call chain deeper than a site keeps
(tests/deep_site.c) reports the same 16 functions on both.
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.bridge.doorbell import call_site_walker
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

ARM_ELFS = sorted(p.stem for p in prebuilt("tests/hello", "armv7m").parent.glob("*.elf"))
# the options a firmware needs to end (as tests/machine/test_boards_firmware.py runs them)
OPTIONS: dict[str, dict[str, Any]] = {
    "spin": {"max_instructions": 2_000_000},
    "irq_race": {"irq_every": 5000},
    "bench": {},
}


def _both_ways(name: str) -> tuple[int, int]:
    """Run build/armv7m/tests/<name>.elf, comparing the walks at every hypercall: (agreed, declined)."""
    opts = OPTIONS.get(name, {})
    session = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}", "armv7m")), board="stm32f4",
                                 max_instructions=opts.get("max_instructions", 50_000_000),
                                 irq_every=opts.get("irq_every", 0)))  # fmt: skip
    m = session.machine
    walker = call_site_walker(m, m.isa)
    assert walker is not None
    served = m.on_hypercall
    counts = [0, 0]

    def compare(service: int, block: int) -> None:
        bank = m.phys.bank_of(block) or m.phys.banks[0]
        fast = walker.walk(bank)
        regs = m.isa.read_regs(m.uc)
        general = m.backtrace(regs["pc"] & ~1, regs, walker.depth)  # the bridge's fallback walk
        if fast is None:
            counts[1] += 1
        else:
            assert list(fast) == general, (name, service, [hex(p) for p in fast], [hex(p) for p in general])
            counts[0] += 1
        served(service, block)

    m.on_hypercall = compare
    m.run()
    return counts[0], counts[1]


@pytest.mark.parametrize("name", ARM_ELFS)
def test_fast_walk_is_the_general_walk(name: str) -> None:
    agreed, declined = _both_ways(name)
    assert agreed + declined > 0  # every SDK firmware makes hypercalls (boot at least)


def test_fast_walk_answers_the_ordinary_call() -> None:
    """The walk declines only the unusual: an ordinary task-context firmware never needs the general one."""
    agreed, declined = _both_ways("mallocs")
    assert agreed >= 10 and declined == 0


def _leak_frames(board: str, isa: str | None) -> list[tuple[str, int]]:
    report = Session(RunOptions(firmware=str(prebuilt("tests/deep_site", isa)), board=board)).run().report
    (leak,) = [e for e in report["errors"] if e["kind"] == "leak"]
    return [(f["symbol"], f["line"]) for f in leak["backtrace"]]


def test_a_site_deeper_than_kept_names_the_same_frames_on_both_machines() -> None:
    """descend() recursing 20 deep: each machine keeps the innermost 16 frames of the site, the
    same ones (tests/machine/test_site_depth.py: the Cortex-M walk starts at the wrapper's pc
    and walks one frame more than the site keeps)."""
    rv32, arm = _leak_frames("default", None), _leak_frames("stm32f4", "armv7m")
    assert rv32 == [("descend", 15)] + [("descend", 20)] * 15
    assert arm == rv32


def test_a_snapshot_shares_the_walker_and_restores_the_same_sites() -> None:
    """The walker's remembered walks are answers, not state: a Cortex-M session stopped at main
    (after boot's hypercalls walked and were remembered) snapshots and restores, twice, and each
    restored run reports what a run without a snapshot reports."""
    from kalloc_machine.tools.harness import Target

    options = RunOptions(firmware=str(prebuilt("tests/leak", "armv7m")), board="stm32f4")
    whole = Session(options).run().report
    target = Target(options)
    target.run_to("main")
    snap = target.snapshot()
    for _ in range(2):
        target.restore(snap)
        assert _facts(target.finish().report) == _facts(whole)


def _facts(report: dict[str, Any]) -> list[Any]:
    return [(e["kind"], e["count"], e["backtrace"]) for e in report["errors"]]
