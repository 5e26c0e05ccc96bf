"""The proof of the fast path (issue 14, part 3): with it on, a report is its Python twin's.

The twin is the same per-CPU magazines served by Python alone (`--percpu-cache 32`, the
`--fastpath on` default), so the magazine policy is the same both ways and only where a hit
is served differs. Every firmware runs with `--sanitize off` (the mode the fast path
serves) both ways; the two JSON reports must be equal once the timing-dependent fields are
left out (kalloc_machine.report.timing, docs/abi.md). A Hypothesis test drives random
allocation programs (firmware/tests/fastpath_program.c: malloc, kmalloc, kzalloc, realloc,
free, kfree, double, invalid and interior frees, API mismatches, lost pointers) both ways.

The CI run covers a list of firmwares chosen for what they exercise; every firmware in
firmware/build/tests and the demo is `-m slow` (the demo is an expected failure: its timer handler
allocates and time is instructions). The wall-clock firmwares (hostile_time_*) are left out,
and a run the host's wall clock ended is skipped: their reports depend on the host's speed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kalloc_machine.report.timing import comparable
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

BUILD = Path(str(prebuilt("demo"))).parent
CI_FIRMWARE = tuple("tests/" + n for n in (
    "double_free", "invalid_free", "leak", "leak_lost_kinds", "mallocs", "summary_mix",
    "uaf_then_double_free", "irq_kernel", "irq_race", "timer_atomic", "oom", "realloc_inplace_site",
    "null_check", "free_stack", "hostile_jump_data", "tags_budgets"))  # fmt: skip
WALL_CLOCK = "hostile_time_"
# The demo's timer handler allocates: with the fast path's other instruction counts the run
# takes another number of ticks (17 against 16), so its report differs in what they did.
TIMED = pytest.mark.xfail(strict=True, reason="time-driven: another number of ticks (docs/allocator.md)")


def both_ways(elf: str, program: bytes | None = None) -> tuple[dict, dict]:
    """(the report with --fastpath on, the twin's: --percpu-cache 32 alone)."""
    reports = []
    for extra in ({"fastpath": "on"}, {"percpu_cache": 32}):
        session = Session(RunOptions(firmware=elf, sanitize="off", **extra))  # type: ignore[arg-type]
        if program is not None:
            session.machine.phys.write(session.firmware.symbol_addr("program") or 0, program)
        reports.append(session.run().report)
    return reports[0], reports[1]


@pytest.mark.parametrize("name", CI_FIRMWARE)
def test_reports_equal_with_the_fast_path_and_its_twin(name: str) -> None:
    on, twin = both_ways(str(prebuilt(name)))
    assert "fastpath" in on and "fastpath" not in twin
    assert comparable(on) == comparable(twin)


def test_the_churn_is_served_in_firmware() -> None:
    on, twin = both_ways(str(prebuilt("bench/churn_kalloc")))
    assert on["fastpath"]["on"] and on["fastpath"]["served"] > 0.9 * 2 * 1000
    assert sum(on["hypercalls"].values()) < 0.1 * sum(twin["hypercalls"].values())
    assert comparable(on) == comparable(twin)


# Time-driven too: its timer handler frees the task's newest object, so which frees happen in
# interrupt context depends on the instruction counts (the blob's against the hypercall stubs').
TIMED_TESTS = ("hostile_raw_fastpath",)
# It writes the fast path's window itself: the twin has none (a fault at the first store).
WINDOW_WRITERS = ("hostile_raw_fastpath_unpatch",)
EVERY = [p for p in sorted(BUILD.glob("tests/*.elf"))
         if WALL_CLOCK not in p.name and p.stem not in TIMED_TESTS + WINDOW_WRITERS]  # fmt: skip
TIMED_ELFS = [BUILD / "tests" / f"{n}.elf" for n in TIMED_TESTS] + [BUILD / "demo.elf"]


@pytest.mark.slow
@pytest.mark.parametrize("elf", [*EVERY, *(pytest.param(e, marks=TIMED) for e in TIMED_ELFS)],
                         ids=lambda e: e.stem)  # fmt: skip
def test_every_firmware_reports_the_same(elf: Path) -> None:
    on, twin = both_ways(str(elf))
    if "wall-clock" in str([e["message"] for r in (on, twin) for e in r["errors"] if e["kind"] == "timeout"]):
        pytest.skip("the host's wall clock ended a run (a loaded machine): not a fact of the firmware")
    assert comparable(on) == comparable(twin)


OPS = st.one_of(
    st.tuples(st.sampled_from([1, 3, 5, 9]), st.integers(0, 7), st.integers(0, 600)),  # allocations
    st.tuples(st.just(1), st.integers(0, 7), st.integers(2000, 9000)),  # big classes, large pages
    st.tuples(st.sampled_from([2, 4]), st.integers(0, 7), st.just(0)),  # free / kfree: twice, the other API
    st.tuples(st.sampled_from([6, 7, 8, 10]), st.integers(0, 7), st.integers(0, 300)),  # realloc, bad free
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=120))
def test_random_programs_report_the_same_errors(ops: list[tuple[int, int, int]]) -> None:
    program = b"".join(struct.pack("<I", op | slot << 8 | size << 16) for op, slot, size in ops) + bytes(4)
    on, twin = both_ways(str(prebuilt("tests/fastpath_program")), program)
    assert comparable(on) == comparable(twin)
    assert [e["kind"] for e in on["errors"]] == [e["kind"] for e in twin["errors"]]
