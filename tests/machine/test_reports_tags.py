"""Allocation tags and budgets end to end (issue 18): kalloc_tag_push/pop, --budgets(-strict), --record.

firmware/tests/tags_budgets.c: untagged 8 KiB; "audio" 3 x 256 KiB kmalloc with "voice" 100 KiB
malloc nested inside; the timer handler pushes "irq" and allocates 4 KiB while the task holds
"audio"; "net" tags a slab cache's 4 objects of 1500 bytes; marks 1, 2, 3; everything freed."""

from __future__ import annotations

from click.testing import CliRunner

from kalloc.cli import main
from kalloc.replay.trace import load

ELF = "firmware/build/tests/tags_budgets.elf"


def _rows(rep):
    return {r["tag"]: r for r in rep["tags"]["table"]}


def test_tags_nest_per_context_and_cover_every_api(cli_report):
    status, rep = cli_report(ELF)
    assert status == 0 and rep["errors"] == []
    rows = _rows(rep)
    assert [r["tag"] for r in rep["tags"]["table"]] == ["audio", "irq", "net", "voice", "untagged"]
    assert rows["audio"]["high_water_bytes"] == 3 * 256 * 1024  # voice, nested, is not audio's
    assert rows["voice"]["high_water_bytes"] == 100 * 1024
    assert rows["irq"]["high_water_bytes"] == 4096 and rows["irq"]["allocations"] == 1  # the handler's own
    # the cache's objects, the fifth allocated with no tag pushed: the cache keeps its creation tag
    assert rows["net"]["high_water_bytes"] == 5 * 1500 and rows["net"]["allocations"] == 5
    assert rows["untagged"]["high_water_bytes"] == 8192
    assert rows["audio"]["high_water"]["mark"] == 1 and rows["net"]["high_water"]["mark"] == 2
    assert all(r["live_bytes"] == 0 and r["live_objects"] == 0 for r in rows.values())  # all freed
    assert all(r["budget_bytes"] is None and r["headroom_bytes"] is None for r in rows.values())
    assert rep["tags"]["budgets_file"] is None and rep["tags"]["strict"] is False


def test_no_tags_no_key(cli_report):
    _status, rep = cli_report("firmware/build/tests/hello.elf")
    assert "tags" not in rep


def test_over_budget_is_a_warning_naming_the_allocation(cli_report, tmp_path):
    b = tmp_path / "budgets.toml"
    b.write_text('audio = "512KiB"\nirq = 0.5\nnet = 8000\n')
    status, rep = cli_report(ELF, "--budgets", str(b))
    assert status == 0
    (err,) = rep["errors"]
    assert err["kind"] == "over-budget" and err["severity"] == "warning"
    assert "tag 'audio' is over its budget" in err["message"]
    fields = {k: err[k] for k in ("tag", "size", "live_bytes", "high_water_bytes", "budget_bytes")}
    assert fields == {"tag": "audio", "size": 262144, "live_bytes": 786432, "high_water_bytes": 786432,
                      "budget_bytes": 524288}  # fmt: skip
    assert err["backtrace"][0]["symbol"] == "main"  # the allocation that crossed it, at its line
    rows = _rows(rep)
    assert rows["audio"]["budget_bytes"] == 524288 and rows["audio"]["headroom_bytes"] == -262144
    assert rows["irq"]["budget_bytes"] == 8 << 20  # half of the board's 16 MiB
    assert rows["net"]["headroom_bytes"] == 500
    assert rep["tags"]["budgets_file"] == "budgets.toml"


def test_budgets_strict_makes_it_an_error(cli_report, tmp_path):
    b = tmp_path / "b.toml"
    b.write_text('audio = "512KiB"\n')
    status, rep = cli_report(ELF, "--budgets", str(b), "--budgets-strict")
    assert status == 64
    assert [(e["kind"], e["severity"]) for e in rep["errors"]] == [("over-budget", "error")]
    assert rep["tags"]["strict"] is True


def test_a_bad_budgets_file_is_one_line(tmp_path):
    b = tmp_path / "b.toml"
    b.write_text("audio = 2.5\n")
    r = CliRunner().invoke(main, ["run", ELF, "--budgets", str(b)])
    assert r.exit_code == 3 and "fraction" in r.output and "Traceback" not in r.output


def test_the_text_report_has_the_tag_table():
    r = CliRunner().invoke(main, ["run", ELF, "-q"])
    assert r.exit_code == 0
    assert "memory by tag" in r.output and "audio" in r.output and "786,432" in r.output


def test_record_writes_tags_and_replay_reads_them(tmp_path):
    t = tmp_path / "t.ktrace"
    r = CliRunner().invoke(main, ["run", ELF, "-q", "--record", str(t)])
    assert r.exit_code == 0
    ops = [op for op in load(t).ops if op.kind != "f"]
    assert [op.tag for op in ops] == ["", "audio", "audio", "audio", "voice", "irq", *["net"] * 5]


def test_tag_stacks_are_per_context_and_a_returned_handler_leaves_none():
    from kalloc_machine.report.tags import TagTracker

    from kalloc import Kalloc

    ka = Kalloc.standalone(size=4 << 20)
    depth = [0]
    tr = TagTracker(ka, depth=lambda: depth[0], clock=lambda: 0, report=lambda e: None)
    tr.push(0, "task")
    depth[0] = 1
    assert tr.current() == "untagged"  # a handler does not inherit the task's tag
    tr.push(1, "irq")
    assert tr.current() == "irq"
    depth[0] = 0
    assert tr.current() == "task"  # the handler returned without its pop: its stack is gone
    depth[0] = 1
    assert tr.current() == "untagged"
    try:
        tr.pop(1)
        raise AssertionError("a pop with nothing pushed must be refused")
    except ValueError:
        pass
