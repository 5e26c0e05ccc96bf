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


def _excerpts(section: str) -> list[list[str]]:
    return [[ln.strip() for ln in body.splitlines() if ln.strip() and ln.strip() != "..."]
            for lang, body in FENCE.findall(section) if lang == "text"]  # fmt: skip


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


def test_6_c_api_report_is_the_one_quoted():
    code, out = _kalloc("run", str(ROOT / C_API))
    assert code == 64
    excerpts = _excerpts(_section("The C allocation API"))
    assert excerpts, "the session quotes kalloc's report"
    for excerpt in excerpts:
        _assert_quoted(excerpt, out)


def test_6_c_api_each_trap_is_reported_once_and_free_null_and_aligned_alloc_are_not():
    report = _json("run", str(ROOT / C_API))
    assert _kinds(report, "error") == ["double-free", "leak", "out-of-bounds", "use-after-free"]
    # calloc's overflow and realloc's 8 MiB; nothing for aligned_alloc(24, 64)
    assert _kinds(report, "warning") == ["oom", "oom"]
    assert "aligned_alloc(24, 64) = 0; aligned_alloc(64, 100) % 64 = 0" in report["uart"]
    assert "realloc(p, 0) returned a pointer: the caller frees it" in report["uart"]
