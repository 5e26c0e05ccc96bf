"""`kalloc lab --sanitize=kasan / --uninit / --irq` on the command line, and every trace format
`kalloc replay` reads going through `kalloc lab` with the right trace line in its reports."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import sdk_dir

from kalloc.cli import main
from kalloc.replay import TRACES_DIR

LAB = sdk_dir() / "build" / "lab"
COALESCE = str(TRACES_DIR / "coalesce.rep")
SMALL = "# kalloc trace v1\na 0 24\na 1 40\nr 0 200\nf 1\na 2 16\nr 2 100\nf 0\nf 2\n"


def lab(*args: str):
    return CliRunner().invoke(main, ["lab", *args])


def test_sanitize_kasan_needs_a_kasan_build():
    r = lab(str(LAB / "implicit.elf"), COALESCE, "--sanitize", "kasan")
    assert r.exit_code == 3 and "has no compiled KASAN checks" in r.stderr and "KASAN=1" in r.stderr
    assert lab(str(LAB / "implicit.elf"), "--sanitize", "poison").exit_code == 2  # only off | kasan


def test_kasan_report_on_the_terminal_and_in_the_json():
    r = lab(str(LAB / "kasan_prev_header.elf"), COALESCE, "--sanitize", "kasan", "--json", "-", "-q")
    assert r.exit_code == 64
    doc = json.loads(r.stdout)
    v = doc["traces"][0]["violation"]
    assert (
        doc["lab"]["sanitize"] == "kasan"
        and v["kind"] == "out-of-bounds"
        and v["sanitizer"] == "kasan-compiled"
    )
    assert "error: out-of-bounds: KASAN: write of 4 byte(s) at" in r.stderr
    assert "operation 63 (a 38 64) at coalesce.rep:67" in r.stderr


def test_uninit_hint_is_printed_and_does_not_fail(tmp_path):
    trace = tmp_path / "small.trace"
    trace.write_text(SMALL)
    r = lab(str(LAB / "realloc_overread.elf"), str(trace), "--uninit", "-q")
    assert r.exit_code == 0, r.output
    assert "hint: uninit-read: mm_realloc read 1 byte(s) at " in r.stdout
    assert "  first at operation 6 (r 2 100) at small.trace:7, " in r.stdout
    assert "  in mm_realloc (implicit.c:" in r.stdout
    js = lab(str(LAB / "realloc_overread.elf"), str(trace), "--uninit", "--json", "-", "-q")
    doc = json.loads(js.stdout)
    assert doc["lab"]["uninit"] is True and doc["traces"][0]["hints"][0]["trace_line"] == 7
    assert doc["total"]["correct"] is True


def test_irq_round_exit_status_and_same_bytes_for_the_same_seed():
    args = (str(LAB / "irq_race.elf"), COALESCE, "--irq", "--seed", "6", "--json", "-", "-q")
    first, again = lab(*args), lab(*args)
    assert first.exit_code == 64 and first.stdout == again.stdout
    doc = json.loads(first.stdout)
    assert doc["lab"]["irq"] == {"seed": 6, "period": 500}
    assert doc["traces"][0]["violation"]["kind"] == "overlap" and doc["traces"][0]["irq"]["ticks"] == 1
    assert "the timer handler's mm_malloc(21)" in first.stderr


def test_irq_round_line_for_a_safe_allocator():
    r = lab(str(LAB / "segregated.elf"), str(TRACES_DIR / "ls.trace"), "--irq", "-q")
    assert r.exit_code == 0
    assert "irq round on ls.trace: ticks " in r.stdout and ", handler allocations " in r.stdout


# -- every format kalloc replay reads ------------------------------------------------------------

FORMATS = {
    # name: (file text, the line of the first request)
    "old.rep": ("20000\n2\n3\n1\na 0 24\na 1 8\nf 0\n", 5),  # CS:APP 2002 header
    "new.rep": ("\n1\n2\n3\n48\n\na 0 24\na 1 8\nf 0\n", 7),  # CS:APP 2016 header, blank lines
    "wee.trace": ("Alloc(24),\nAlloc(8),\nFree(0),\n", 1),
    "rec.trace": ("# kalloc trace v1\n# firmware x.elf\n\na 0 24 malloc @net\nc 1 2 4\nm 2 16 40\nf 0\n", 4),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_trace_format_is_graded_with_its_lines(tmp_path, name):
    text, first = FORMATS[name]
    path = tmp_path / name
    path.write_text(text)
    assert lab(str(LAB / "implicit.elf"), str(path), "-q").exit_code == 0
    bad = lab(str(LAB / "misaligned.elf"), str(path), "-q")
    assert (
        bad.exit_code == 64
        and "  operation 1 (a 0 24" in bad.stdout
        and f") at {name}:{first}\n" in bad.stdout
    )


def test_the_trace_generators_output_is_a_lab_trace(tmp_path):
    # `python -m kalloc.replay.tracegen DIR` writes the CS:APP 2002 format; a new seed is a new trace.
    from kalloc.replay import tracegen

    path = tmp_path / "gen.rep"
    path.write_text(tracegen.malloc_lab_text(tracegen.short_lived(seed=11, n=300)))
    r = lab(str(LAB / "segregated.elf"), str(path), "-q", "--json", "-")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["traces"][0]["ops"] == 600  # 300 allocations, each freed
