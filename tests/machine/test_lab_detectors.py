"""`kalloc lab`'s detectors on the machine: compiled KASAN on the student's heap, the
uninitialised-read hints and the interrupt round, each on a broken allocator (caught with the
right report) and on the reference allocators (clean)."""

from __future__ import annotations

import pytest
from kalloc_machine.sdk import sdk_dir
from kalloc_machine.tools.lab import LabOptions, NotALabElf, check_elf, run_trace
from kalloc_machine.tools.labcheck import IRQ_BASE
from kalloc_machine.tools.labscore import document

from kalloc.replay import TRACES_DIR
from kalloc.replay.trace import load, parse

LAB = sdk_dir() / "build" / "lab"
# Two objects, a realloc of each that grows, frees: small enough for the slow detectors.
SMALL = "# kalloc trace v1\na 0 24\na 1 40\nr 0 200\nf 1\na 2 16\nr 2 100\nf 0\nf 2\n"


def elf(name: str) -> str:
    return str(LAB / f"{name}.elf")


def run(student: str, trace: str, **kw):
    path = TRACES_DIR / trace
    return run_trace(elf(student), load(path), LabOptions(**kw), path=str(path))


def small(student: str, **kw):
    return run_trace(elf(student), parse(SMALL, "small.trace"), LabOptions(**kw))


# -- compiled KASAN ------------------------------------------------------------------------------


def test_kasan_catches_a_header_written_into_the_previous_payload_at_the_store():
    r = run("kasan_prev_header", "coalesce.rep", sanitize="kasan")
    v = r.violation
    assert r.status == "error" and v["kind"] == "out-of-bounds" and v["sanitizer"] == "kasan-compiled"
    assert v["op"] == 63 and v["request"] == "a 38 64" and v["trace_line"] == 67
    assert v["message"].startswith("KASAN: write of 4 byte(s) at ")
    assert "60 bytes inside the live payload of object 28" in v["message"]
    assert v["access"]["type"] == "write" and v["instruction"].startswith("sw ")
    assert v["blocks"] == [{"id": 28, "addr": v["blocks"][0]["addr"], "size": 64}]
    # the student's function and the very line of the bug (place() is inlined into mm_malloc)
    line = _bug_line("LAB_BUG_PREV_HEADER")
    assert v["symbol"] == "mm_malloc" and v["location"] == {"file": "implicit.c", "line": line}


def _bug_line(macro: str) -> int:
    src = (sdk_dir() / "lab" / "examples" / "implicit.c").read_text().splitlines()
    return src.index(f"#ifdef {macro}") + 2


def test_without_kasan_the_same_bug_is_seen_later_as_contents():
    off = run("prev_header", "coalesce.rep", guard="off").violation
    assert off["kind"] == "corrupted" and off["op"] == 63 and "object 28" in off["message"]


def test_kasan_sees_the_overrun_at_the_allocators_read_of_its_tag():
    v = run("kasan_overrun", "coalesce.rep", sanitize="kasan").violation
    assert v["kind"] == "out-of-bounds" and v["op"] == 2 and v["access"]["type"] == "read"
    assert "inside the live payload of object 0" in v["message"] and v["symbol"] == "mm_malloc"


@pytest.mark.parametrize("student", ["kasan_implicit", "kasan_segregated"])
def test_reference_allocators_run_clean_under_kasan(student):
    for trace in ("coalesce.rep", "ls.trace"):
        r = run(student, trace, sanitize="kasan")
        assert r.violation is None and r.status == "ok", (trace, r.violation)
    assert small(student, sanitize="kasan").violation is None  # realloc copies, frees


def test_kasan_needs_an_instrumented_elf():
    check_elf(elf("kasan_implicit"), "kasan")
    with pytest.raises(NotALabElf, match="KASAN=1"):
        check_elf(elf("implicit"), "kasan")


# -- uninitialised-read hints ------------------------------------------------------------------


def test_realloc_copying_more_than_the_old_payload_is_a_hint():
    r = small("realloc_overread", uninit=True)
    assert r.violation is None and r.status == "ok"  # a hint, not a failure
    (h,) = r.hints
    assert h["kind"] == "uninit-read" and h["severity"] == "warning"
    assert h["op"] == 6 and h["request"] == "r 2 100" and h["count"] > 1
    assert "mm_realloc read 1 byte(s) at" in h["message"]
    assert "16 bytes past the end of object 2's 16-byte payload" in h["message"]
    assert h["symbol"] == "mm_realloc"
    assert h["location"] == {"file": "implicit.c", "line": _bug_line("LAB_BUG_REALLOC_OVERREAD") + 1}


@pytest.mark.parametrize("student", ["implicit", "segregated"])
def test_reference_allocators_read_nothing_uninitialised(student):
    assert small(student, uninit=True).hints == []
    assert run(student, "coalesce.rep", uninit=True).hints == []


def test_hints_only_when_asked():
    r = small("realloc_overread")
    assert r.hints is None
    fig = document("x.elf", LabOptions(), [r], "default")
    assert "hints" not in fig["traces"][0] and "uninit" not in fig["lab"]


# -- the interrupt round -----------------------------------------------------------------------


def test_irq_race_is_caught_as_an_overlap_naming_the_interrupted_line():
    r = run("irq_race", "coalesce.rep", irq=True, seed=6)
    v = r.violation
    assert r.status == "error" and v["kind"] == "overlap" and v["op"] == 6
    assert v["message"].startswith("the timer handler's mm_malloc(21) (its block #1, allocated by a tick")
    assert "interrupted mm_malloc (implicit.c:" in v["message"] and "overlaps live object 5" in v["message"]
    assert v["blocks"][0]["id"] == IRQ_BASE + 1 and v["blocks"][1]["id"] == 5
    assert v["symbol"] == "mm_malloc" and v["location"]["file"] == "implicit.c"
    assert r.irq["ticks"] == 1 and r.irq["in_call"] == 1


def test_irq_race_fails_on_every_seed_and_passes_without_the_round():
    for seed in range(3):
        r = run("irq_race", "coalesce.rep", irq=True, seed=seed)
        assert r.status in ("error", "fault"), seed
        if r.status == "fault":
            assert "under --irq:" in r.violation["message"]
    assert run("irq_race", "coalesce.rep").violation is None


def test_the_segregated_allocators_irq_race_is_caught_too():
    for seed in range(3):
        r = run("seg_irq_race", "coalesce.rep", irq=True, seed=seed)
        assert r.status in ("error", "fault") and r.violation["op"] <= 3, seed
    assert run("seg_irq_race", "coalesce.rep").violation is None


@pytest.mark.parametrize("student", ["implicit", "segregated"])
def test_reference_allocators_are_interrupt_safe(student):
    for seed in range(2):
        r = run(student, "coalesce.rep", irq=True, seed=seed)
        assert r.violation is None, (seed, r.violation)
        assert r.irq["seq"] > 20 and r.irq["frees"] > 10 and r.irq["ticks"] > 40


def test_irq_round_is_deterministic_per_seed():
    a = run("segregated", "coalesce.rep", irq=True, seed=3)
    b = run("segregated", "coalesce.rep", irq=True, seed=3)
    c = run("segregated", "coalesce.rep", irq=True, seed=4)
    assert a.irq == b.irq and a.instructions == b.instructions
    assert (c.irq, c.instructions) != (a.irq, a.instructions)
    doc = document("segregated.elf", LabOptions(irq=True, seed=3), [a], "default")
    assert doc["lab"]["irq"] == {"seed": 3, "period": 500} and doc["traces"][0]["irq"] == a.irq


def test_kasan_and_the_irq_round_together_on_the_reference():
    r = run("kasan_segregated", "coalesce.rep", sanitize="kasan", irq=True, uninit=True)
    assert r.violation is None and r.hints == [] and r.irq["seq"] > 0


def test_the_segregated_allocators_lost_realloc_contents():
    # The variant of each reference for each kind the issue names: overlap (overlap.c,
    # stale_head.c), lost realloc contents (realloc_lost.c, this one), an interrupt race
    # (irq_race.c, seg_irq_race.c).
    v = run("seg_realloc_lost", "realloc.rep").violation
    assert v["kind"] == "realloc-lost-data" and v["op"] == 5 and v["request"] == "r 0 97"
    assert "did not keep the first 64 bytes: byte 0 is 0x00" in v["message"]
    assert v["symbol"] == "mm_realloc" and v["location"]["file"] == "segregated.c"
