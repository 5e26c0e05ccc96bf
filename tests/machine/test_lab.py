"""`kalloc lab` on the machine: the reference allocator passes, each broken one is caught with the
right report (kind, operation, trace line, the student's function), scores are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
from kalloc_machine.sdk import sdk_dir
from kalloc_machine.tools import lab as labmod
from kalloc_machine.tools.lab import LabOptions, NotALabElf, check_elf, run_trace
from kalloc_machine.tools.labcheck import HeapRecord, Violation, pattern
from kalloc_machine.tools.labscore import document

from kalloc.replay import TRACES_DIR
from kalloc.replay.trace import load, parse

LAB = sdk_dir() / "build" / "lab"


def elf(name: str) -> str:
    return str(LAB / f"{name}.elf")


def shipped(name: str) -> tuple[object, str]:
    path = TRACES_DIR / name
    return load(path), str(path)


def run(student: str, trace: str, **kw):
    tr, path = shipped(trace)
    return run_trace(elf(student), tr, LabOptions(**kw), path=path)


def test_reference_allocator_passes_with_figures():
    r = run("implicit", "coalesce.rep")
    assert r.violation is None and r.status == "ok" and r.ops == 1200
    fig = document("implicit.elf", LabOptions(), [r], "default")["traces"][0]
    assert 0.5 < fig["utilization"] <= fig["utilization_break"] <= 1.0
    assert fig["peak_committed_bytes"] % 4096 == 0 and fig["peak_committed_bytes"] >= fig["peak_break_bytes"]
    assert fig["instructions_per_op"] > 20


def test_instruction_counts_are_deterministic_and_independent_of_the_slice(monkeypatch):
    first = run("implicit", "ls.trace")
    again = run("implicit", "ls.trace")
    monkeypatch.setattr(labmod, "LAB_QUANTUM", 3001)
    other = run("implicit", "ls.trace")
    assert first.instructions == again.instructions == other.instructions > 0


def test_a_call_returning_exactly_at_a_slice_end_is_not_a_fault():
    # binary.rep's operation 658 returns as its slice runs out (LAB_QUANTUM 2000): the
    # run loop used to call the call stop "a jump into the idle sled".
    r = run("implicit", "binary.rep", guard="off")
    assert r.violation is None and r.ops == 3000


def test_overlap_is_caught_at_the_operation_with_the_trace_line():
    v = run("overlap", "coalesce.rep").violation
    assert v["kind"] == "overlap" and v["op"] == 73 and v["request"] == "a 40 32" and v["trace_line"] == 77
    assert v["symbol"] == "mm_malloc" and v["location"]["file"].endswith("implicit.c")
    assert [b["id"] for b in v["blocks"]] == [-1, 38] and v["blocks"][0]["addr"] == v["blocks"][1]["addr"]


def test_misaligned_payload():
    v = run("misaligned", "ls.trace").violation
    assert v["kind"] == "misaligned" and v["op"] == 1 and "not a multiple of 8" in v["message"]


def test_align_16_is_stricter_than_8():
    assert run("implicit", "coalesce.rep", align=16).violation["kind"] == "misaligned"


def test_realloc_losing_data():
    v = run("realloc_lost", "realloc.rep").violation
    assert v["kind"] == "realloc-lost-data" and v["request"].startswith("r ") and v["symbol"] == "mm_realloc"


def test_payload_overrun_into_metadata_is_caught_at_the_access():
    r = run("overrun", "coalesce.rep")
    v = r.violation
    assert (
        v["kind"] == "payload-access"
        and v["op"] == 2
        and "inside the live payload of object 0" in v["message"]
    )
    assert v["symbol"] == "mm_malloc" and v["location"]["file"].endswith("implicit.c")
    assert r.status == "error"


def test_without_the_guard_the_write_watch_names_the_store():
    v = run("overrun", "random.rep", guard="off").violation
    assert v["kind"] == "corrupted" and v["op"] == 2
    assert v["symbol"] == "coalesce" and v["location"]["file"].endswith("implicit.c")
    assert v["backtrace"][0]["symbol"] == "coalesce"


def test_infinite_loop_spends_the_budget(tmp_path):
    tr = parse("# kalloc trace v1\na 0 24\nf 0\na 1 24\n", "loop.trace")
    r = run_trace(elf("loop"), tr, LabOptions(op_budget=100_000))
    assert r.status == "timeout" and r.violation["kind"] == "timeout" and r.violation["op"] == 3
    assert r.violation["symbol"] == "mm_malloc"


def test_stack_overflow_is_the_guard_report():
    tr = parse("# kalloc trace v1\na 0 24\na 1 100000\n", "deep.trace")
    r = run_trace(elf("deep"), tr, LabOptions())
    assert r.status == "fault" and r.violation["kind"] == "stack-overflow" and r.violation["symbol"] == "walk"


def test_not_a_lab_elf():
    with pytest.raises(NotALabElf, match="not a lab firmware"):
        check_elf(str(sdk_dir() / "build" / "tests" / "replay_shim.elf"))
    with pytest.raises(NotALabElf):
        check_elf(str(Path("/nonexistent.elf")))


# -- the bookkeeping alone --------------------------------------------------------------------


def _record(mem: bytearray) -> HeapRecord:
    rec = HeapRecord(8, lambda a, n: bytes(mem[a : a + n]))
    rec.lo, rec.brk, rec.limit = 0, 256, 4096
    return rec


def test_record_overlap_and_contents():
    mem = bytearray(4096)
    rec = _record(mem)
    data = pattern(1, 32)
    mem[64:96] = data
    rec.add(1, 64, 32, data, 0)
    rec.check_new("m", 96, 8)  # adjacent: fine
    with pytest.raises(Violation, match="overlaps live object 1"):
        rec.check_new("m", 88, 16)
    with pytest.raises(Violation, match="overlaps"):
        rec.check_new("m", 56, 16)
    rec.check_new("m", 64, 40, ignore=1)  # a realloc may reuse its own block
    with pytest.raises(Violation, match="outside the heap"):
        rec.check_new("m", 248, 16)
    mem[70] ^= 1
    with pytest.raises(Violation) as exc:
        rec.verify_all("now")
    assert exc.value.kind == "corrupted" and exc.value.addr == 70 and exc.value.since_op == 0
    with pytest.raises(Violation, match="break went"):
        rec.set_break(128, 0)


def test_patterns_differ_per_object():
    assert pattern(1, 64) != pattern(2, 64) and pattern(1, 64)[10:] == pattern(1, 64, 10)


def test_guard_modes_on_the_overrun():
    # off: the garbage the lab's pattern left in the allocator's tags crashes it;
    # explain (the default) replays the failed trace under the guard and names the cause;
    # always: the guard runs from the start and gives the same report.
    off = run("overrun", "coalesce.rep", guard="off")
    assert off.status == "fault" and off.violation["kind"] in ("cpu-fault", "page-fault")
    explained = run("overrun", "coalesce.rep").violation
    always = run("overrun", "coalesce.rep", guard="always").violation
    assert explained == always and explained["kind"] == "payload-access"


def test_calloc_and_mm_check_of_the_reference():
    tr = parse("# kalloc trace v1\nc 0 4 8\nc 1 100 3\nc 2 4294967295 2\nr 0 100\nf 1\nf 0\n", "c.trace")
    r = run_trace(elf("implicit"), tr, LabOptions(mm_check=True))
    assert r.violation is None and r.ops == 6  # zeroed callocs, NULL for the overflow, mm_check true


def test_calloc_that_does_not_zero(monkeypatch):
    # The lab checks mm_calloc's bytes itself: a student's calloc that skips the memset is caught
    # (simulated by dirtying the heap right after each call: the lab reads guest memory).
    tr = parse("# kalloc trace v1\na 0 64\nf 0\nc 1 8 8\n", "c.trace")
    r = run_trace(elf("implicit"), tr, LabOptions())
    assert r.violation is None
    original = labmod.LabMachine.call

    def dirty(self, function, *args):
        a0, n = original(self, function, *args)
        if function == "lab_calloc" and a0:
            self.target.write(a0 + 3, b"\x01")
        return a0, n

    monkeypatch.setattr(labmod.LabMachine, "call", dirty)
    v = run_trace(elf("implicit"), tr, LabOptions()).violation
    assert v["kind"] == "calloc-not-zeroed" and v["op"] == 3 and v["symbol"] == "mm_calloc"


def test_heap_max_bounds_mem_sbrk():
    v = run("implicit", "random.rep", heap_max=1 << 20).violation
    assert v["kind"] == "out-of-memory" and "of at most 1,048,576 bytes" in v["message"]
    big = run_trace(elf("implicit"), parse("# kalloc trace v1\na 0 8\n", "t"), LabOptions(heap_max=1 << 30))
    assert big.violation["kind"] == "init-failed"  # the board cannot give a 1 GiB heap


def test_segregated_reference_is_correct_and_faster():
    seg = run("segregated", "realloc.rep", mm_check=True)
    assert seg.violation is None and seg.ops == 3018 and seg.instructions < 3018 * 1000  # grows in place
    fast, slow = run("segregated", "binary.rep"), run("implicit", "binary.rep", guard="off")
    assert fast.violation is None and slow.violation is None
    assert fast.instructions * 10 < slow.instructions  # a search visits free blocks of the right class only


def test_stale_list_head_of_the_segregated_allocator():
    # The block stays its list's head once allocated: the next search links through its payload.
    v = run("stale_head", "coalesce.rep").violation
    assert v["kind"] == "payload-access" and v["op"] == 2 and "wrote 4 bytes" in v["message"]
    assert v["symbol"] == "mm_malloc" and v["location"]["file"].endswith("segregated.c")
    off = run("stale_head", "coalesce.rep", guard="off").violation  # the pattern check, and the watch
    assert off["kind"] == "corrupted" and off["location"] == v["location"]
