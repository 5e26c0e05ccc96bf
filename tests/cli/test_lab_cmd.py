"""`kalloc lab` on the command line: the table, --json (deterministic, alone on stdout), exit statuses."""

from __future__ import annotations

import json

from click.testing import CliRunner
from kalloc_machine.sdk import sdk_dir

from kalloc.cli import main
from kalloc.replay import TRACES_DIR

LAB = sdk_dir() / "build" / "lab"
LS = str(TRACES_DIR / "ls.trace")
COALESCE = str(TRACES_DIR / "coalesce.rep")


def lab(*args: str):
    return CliRunner().invoke(main, ["lab", *args])


def test_correct_allocator_scores_and_exits_0():
    r = lab(str(LAB / "implicit.elf"), LS, COALESCE, "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # only the JSON on stdout
    assert [t["trace"] for t in doc["traces"]] == ["ls.trace", "coalesce.rep"]
    total = doc["total"]
    assert total["correct"] and 0 < total["utilization"] <= 1 and 0 < total["score"] <= 100
    assert doc["scoring"] == {"utilization_weight": 0.6, "throughput_weight": 0.4,
                              "reference_instructions_per_op": 250}  # fmt: skip
    assert "kalloc lab: implicit.elf" in r.stderr  # the table went to stderr
    again = lab(str(LAB / "implicit.elf"), LS, COALESCE, "--json", "-")
    assert again.stdout == r.stdout  # same ELF, traces, options: same bytes


def test_table_on_stdout():
    r = lab(str(LAB / "implicit.elf"), LS)
    assert r.exit_code == 0
    assert "ls.trace" in r.stdout and "score" in r.stdout and "utilization" in r.stdout


def test_broken_rule_exits_64_with_the_report():
    r = lab(str(LAB / "overlap.elf"), COALESCE, "-q")
    assert r.exit_code == 64
    assert "error: overlap: mm_malloc(32) returned" in r.stdout
    assert "operation 73 (a 40 32) at coalesce.rep:77" in r.stdout
    assert "in mm_malloc (implicit.c:" in r.stdout


def test_crash_exits_65_and_loop_66(tmp_path):
    deep = tmp_path / "deep.trace"
    deep.write_text("# kalloc trace v1\na 0 24\na 1 100000\n")
    assert lab(str(LAB / "deep.elf"), str(deep), "-q").exit_code == 65
    loop = tmp_path / "loop.trace"
    loop.write_text("# kalloc trace v1\na 0 24\nf 0\na 1 24\n")
    r = lab(str(LAB / "loop.elf"), str(loop), "-q", "--op-budget", "100000")
    assert r.exit_code == 66 and "did not return within 100,000 instructions" in r.stdout


def test_failed_trace_has_no_total_score():
    r = lab(str(LAB / "misaligned.elf"), LS, "--json", "-", "-q")
    doc = json.loads(r.stdout)
    assert r.exit_code == 64 and doc["total"]["score"] is None and doc["total"]["failed"] == 1
    v = doc["traces"][0]["violation"]
    assert v["kind"] == "misaligned" and v["op"] == 1 and v["trace_line"] == 1


def test_bad_elf_and_trace_are_bad_input(tmp_path):
    r = lab(str(sdk_dir() / "build" / "tests" / "replay_shim.elf"), LS)
    assert r.exit_code == 3 and "not a lab firmware" in r.stderr and "LAB=1" in r.stderr
    assert lab(str(tmp_path / "missing.elf"), LS).exit_code == 3
    bad = tmp_path / "bad.trace"
    bad.write_text("nonsense\n")
    assert lab(str(LAB / "implicit.elf"), str(bad)).exit_code == 3


def test_usage_errors_exit_2():
    assert lab(str(LAB / "implicit.elf"), "--align", "4").exit_code == 2
    assert lab(str(LAB / "implicit.elf"), "--heap-max", "lots").exit_code == 2
