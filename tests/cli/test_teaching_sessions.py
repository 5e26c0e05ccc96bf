"""docs/teaching.md, sessions 6-9: each exercise's firmware still shows what the text says.

Every ```text block of a session is a report excerpt: each of its lines must be a line
of what `kalloc` prints for that session's command (the firmware in
firmware/tests/teach_*.c, run on the real machine); the instructor notes' other claims
are checked on the JSON report of the same run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]
TEACHING = ROOT / "docs" / "teaching.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _section(title: str) -> str:
    """The text of the numbered section of docs/teaching.md whose heading contains title."""
    text = TEACHING.read_text()
    m = re.search(rf"^## \d+\. [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"docs/teaching.md has a numbered section '{title}'"
    return m[1]


def _excerpts(section: str) -> list[tuple[str, list[str]]]:
    """Each ```text block with the `kalloc` command of the ```sh block before it."""
    out, command = [], ""
    for lang, body in FENCE.findall(section):
        if lang == "sh":
            command = next(ln.strip() for ln in body.splitlines() if ln.strip().startswith("kalloc "))
        elif lang == "text":
            assert command, "a quoted report follows the command that prints it"
            out.append((command, [ln.strip() for ln in body.splitlines() if ln.strip()]))
    return out


def _check_quotes(title: str) -> int:
    """Run each quoted command of the session (from the checkout); every quoted line must be printed."""
    excerpts = _excerpts(_section(title))
    for command, excerpt in excerpts:
        _assert_quoted(excerpt, _kalloc(*command.split()[1:])[1])
    return len(excerpts)


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _kalloc(*args: str) -> tuple[int, str]:
    result = _invoke(*args)
    return result.exit_code, result.output


def _json(*args: str) -> dict:
    return json.loads(_invoke(*args, "--json", "-", "-q").stdout)


def _kinds(report: dict, severity: str) -> list[str]:
    return sorted(e["kind"] for e in report["errors"] if e["severity"] == severity)


def _assert_quoted(excerpt: list[str], output: str) -> None:
    lines = {ln.strip() for ln in output.splitlines()}
    missing = [ln for ln in excerpt if ln not in lines]
    assert not missing, f"quoted in docs/teaching.md but not printed by kalloc: {missing}"


# -- 6. The C allocation API and its traps ---------------------------------------------

C_API = "firmware/build/tests/teach_c_api.elf"


def test_6_c_api_report_is_the_one_quoted(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _check_quotes("The C allocation API") == 1


def test_6_c_api_each_trap_is_reported_once_and_free_null_and_aligned_alloc_are_not():
    report = _json("run", str(ROOT / C_API))
    assert _kinds(report, "error") == ["double-free", "leak", "out-of-bounds", "use-after-free"]
    # calloc's overflow and realloc's 8 MiB; nothing for aligned_alloc(24, 64)
    assert _kinds(report, "warning") == ["oom", "oom"]
    assert "aligned_alloc(24, 64) = 0; aligned_alloc(64, 100) % 64 = 0" in report["uart"]
    assert "realloc(p, 0) returned a pointer: the caller frees it" in report["uart"]


# -- 7. Common errors, seen three ways ---------------------------------------------------

ERRORS = "firmware/build/tests/teach_errors.elf"
KASAN_ERRORS = "firmware/build/tests/kasan_teach_errors.elf"
BUGS = ["off_by_one", "read_past", "read_after_free", "write_after_free", "clear", "asm_store"]


def _where(report: dict) -> list[str]:
    """The function each error is reported in (memset's callers: clear)."""
    out = []
    for e in report["errors"]:
        frames = [e["symbol"], *(f.get("symbol") for f in e.get("backtrace") or [])]
        out.append(next((f for f in frames if f in BUGS), e["symbol"]))
    return out


def test_7_errors_reports_are_the_ones_quoted(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _check_quotes("Common errors, seen three ways") == 3


def test_7_what_each_mode_sees_and_what_it_costs():
    poison = _json("run", str(ROOT / ERRORS))
    compiled = _json("run", str(ROOT / KASAN_ERRORS), "--sanitize", "kasan")
    hook = _json("run", str(ROOT / ERRORS), "--sanitize", "kasan")
    # poison: no read seen, every write seen later, in main
    assert _where(poison) == ["main"] * 4
    # compiled: every bug at its instruction but the store from assembly, seen at the free
    assert _where(compiled) == [*BUGS[:5], "main"]
    # hook mode: every bug at its instruction
    assert _where(hook) == BUGS
    # the cost in instructions: compiled checks are instructions, the other two add none
    assert hook["instructions"] == poison["instructions"]
    assert compiled["instructions"] > 10 * poison["instructions"]
    text = _section("Common errors, seen three ways")
    for r in (poison, compiled):
        assert f"{r['instructions']:,}" in text, "the session quotes each run's instruction count"


# -- 8. Interrupt context ---------------------------------------------------------------


def test_8_interrupt_context_reports_are_the_ones_quoted(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _check_quotes("Interrupt context") == 4


def test_8_the_race_leaks_a_packet_of_the_handler_and_the_fix_holds():
    race = _json("run", str(ROOT / "firmware/build/tests/teach_irq.elf"), "--irq-at", "581")
    assert _kinds(race, "error") == ["leak"] and race["errors"][0]["symbol"] == "rx_irq"
    assert any(f.get("symbol") == "take_all" for f in race["errors"][0]["backtrace"])
    fixed = _json("run", str(ROOT / "firmware/build/tests/teach_irq_fixed.elf"), "--irq-at", "581")
    assert fixed["exit_code"] == 0 and "1 received, 1 processed" in fixed["uart"]
    sleep = _json("run", str(ROOT / "firmware/build/tests/teach_irq_sleep.elf"), "--irq-every", "1000")
    assert set(_kinds(sleep, "error")) == {"invalid-context"}


# -- 9. Allocator families --------------------------------------------------------------

FAMILY_TRACES = ("coalesce.rep", "binary.rep", "ls.trace", "cpp-demangle.trace")
LAB_REFS = ("implicit", "segregated")


def _families_run(tmp: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The session's commands in tmp: utilization per trace and heap; lab instructions/op."""
    trace = tmp / "families.ktrace"
    _invoke("run", str(ROOT / "firmware/build/tests/teach_families.elf"), "-q", "--record", str(trace))
    traces = [str(trace), *(str(ROOT / "kalloc/replay/traces" / t) for t in FAMILY_TRACES)]
    _invoke("replay", *traces, "--heap", "all", "--json", str(tmp / "replay.json"), "-q")
    util: dict[str, dict[str, float]] = {}
    for r in json.loads((tmp / "replay.json").read_text())["replays"]:
        util.setdefault(Path(r["trace"]).name, {})[r["heap"]] = r["utilization"]
    per_op = {}
    for name in LAB_REFS:
        out = tmp / f"lab-{name}.json"
        _invoke("lab", str(ROOT / f"firmware/build/lab/{name}.elf"), *traces, "--json", str(out), "-q")
        lab = json.loads(out.read_text())
        for t in lab["traces"]:
            util[t["trace"]][f"lab {name}"] = t["utilization"]
        per_op[name] = lab["total"]["instructions_per_op"]
    return util, per_op


def _doc_table(section: str) -> dict[str, dict[str, str]]:
    """The utilization table: the one whose header starts with `trace`."""
    start = section.index("| trace |")
    block = section[start : section.index("\n\n", start)]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in block.splitlines()]
    head = [h.strip("`") for h in rows[0]]
    return {r[0].strip("`"): dict(zip(head[1:], r[1:], strict=True)) for r in rows[2:]}


def test_9_families_table_plot_and_lab_figures(tmp_path, monkeypatch):
    util, per_op = _families_run(tmp_path)
    section = _section("Allocator families")
    table = _doc_table(section)
    assert set(table) == set(util), "the table has one row per trace of the session"
    for trace, by_heap in util.items():
        for heap, u in by_heap.items():
            assert table[trace][heap] == f"{u:.1%}", (trace, heap)
    for name in LAB_REFS:
        assert f"{round(per_op[name]):,} instructions per operation" in section, name
    # the note: without the realloc lines the two lab lists still differ (placement)
    lines = (tmp_path / "families.ktrace").read_text().splitlines()
    kept = [ln for ln in lines if not ln.startswith("r ")]
    (tmp_path / "norealloc.ktrace").write_text("\n".join(kept) + "\n")
    no_realloc = []
    for name in LAB_REFS:
        out = tmp_path / f"norealloc-{name}.json"
        _invoke(
            "lab",
            str(ROOT / f"firmware/build/lab/{name}.elf"),
            str(tmp_path / "norealloc.ktrace"),
            "--json",
            str(out),
            "-q",
        )
        no_realloc.append(f"{json.loads(out.read_text())['traces'][0]['utilization']:.1%}")
    assert f"(without the `r` lines:\n> {no_realloc[0]} against {no_realloc[1]})" in section
    # the plot script of the session runs on those JSON files
    script = next(body for lang, body in FENCE.findall(section) if lang == "python")
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("matplotlib")
    exec(compile(script, "teaching-session-9", "exec"), {})
    assert (tmp_path / "families.png").stat().st_size > 10_000


def test_4_ccm_is_out_of_the_dma_engines_reach_on_cortex_m() -> None:
    """Session 4's Cortex-M part: the quoted report, and only the GFP_KERNEL (CCM) transfer fails."""
    assert _check_quotes("DMA zones") == 1
    result = _invoke("run", "--board", "stm32f4", "tests/teach_ccm", "--json", "-", "-q")
    report = json.loads(result.stdout)
    assert result.exit_code == 64 and report["firmware_exit_code"] == 0
    assert [e["kind"] for e in report["errors"]] == ["dma-unreachable"]
    assert (report["dma"]["completed"], report["dma"]["failed"]) == (1, 1)
    assert 0x9000_0000 <= report["errors"][0]["addr"] < 0x9001_0000  # the CCM bank
