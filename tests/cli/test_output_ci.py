"""Output that works in CI (issue 13): one line per fact when piped, colour on demand, identical
errors once with "×N", the `summary:` last line, and what poison mode cannot see.

The commands run as a user runs them: `python -m kalloc.cli` in a subprocess whose stdout is a
pipe (or a pseudo-terminal, for the terminal's rendering), with COLUMNS set narrow so any hard
wrap at the width would show.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.report.console import report_console, want_colour
from kalloc_machine.report.summary import POISON_HINT, summary_line

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "firmware" / "build"
ANSI = "\x1b["
NARROW = "40"  # a fact line is longer than this: piped, it must still be one line


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update({"COLUMNS": NARROW, **extra})
    return env


def kalloc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`kalloc ARGS` with stdout a pipe."""
    return subprocess.run([sys.executable, "-m", "kalloc.cli", *args], capture_output=True, text=True,
                          env=_env(**env), timeout=300, cwd=ROOT)  # fmt: skip


def kalloc_tty(*args: str, **env: str) -> str:
    """`kalloc ARGS` with stdout a pseudo-terminal (what a person sees); its output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kalloc.cli", *args], stdout=slave, stderr=subprocess.PIPE,
                            env=_env(TERM="xterm-256color", **env), cwd=ROOT)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.wait(timeout=300)
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def elf(name: str) -> str:
    return str(BUILD / f"{name}.elf")


# -- 1. piped: one line per fact, no padding; a terminal keeps rich's rendering -------------------


def test_piped_report_is_one_line_per_fact_whatever_the_width() -> None:
    proc = kalloc("run", elf("tests/double_free"))
    assert proc.returncode == 64, proc.stderr
    lines = proc.stdout.splitlines()
    status = re.compile(r"end: exit · .* · status 64 \(kalloc found an error\)")
    assert any(status.fullmatch(ln) for ln in lines), lines
    assert "── kalloc report: double_free.elf on board default ──" in lines  # a header, not a padded rule
    assert any(ln.startswith("closest to failing: ") and ln.endswith("allocation failures 0") for ln in lines)
    assert any(ln.startswith("RAM ") and "reserved: firmware" in ln and "memmap" in ln for ln in lines)
    assert any(ln.startswith("# name ") and ln.endswith("<sharedavail>") for ln in lines)  # slabinfo whole
    assert not any(ln.endswith("  ") for ln in lines)  # nothing padded to a width
    assert ANSI not in proc.stdout  # no colour when piped
    # the zones table keeps its natural width (narrower than 40 columns would squeeze it)
    header = next(ln for ln in lines if "zone" in ln and "managed" in ln)
    assert "largest free block" in header and len(header) > int(NARROW)


def test_text_report_on_stderr_under_json_dash_is_one_line_per_fact_too() -> None:
    proc = kalloc("run", elf("tests/double_free"), "--json", "-")
    assert json.loads(proc.stdout)["exit_code"] == 64
    assert "status 64 (kalloc found an error)" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "summary: 1 double-free"


def test_a_terminal_keeps_rich_rendering_wrapped_at_its_width_and_coloured() -> None:
    out = kalloc_tty("run", elf("tests/double_free"))
    assert ANSI in out  # colour by default on a terminal
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out)
    rule = next(ln for ln in plain.splitlines() if "kalloc report:" in ln)
    assert len(rule) == int(NARROW) and rule.startswith("─") and rule.endswith("─")  # the rule spans it
    assert all(len(ln) <= int(NARROW) for ln in plain.splitlines() if ln.startswith(("end:", "closest")))


def test_no_color_on_a_terminal_means_no_escape_sequence() -> None:
    out = kalloc_tty("run", elf("tests/double_free"), "-q", NO_COLOR="1")
    assert ANSI not in out and "summary: 1 double-free" in out


def test_piped_tables_of_bench_and_replay_are_never_squeezed(tmp_path: Path) -> None:
    proc = kalloc("bench", "--quick", "--only", "utilization")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if "trace replay utilization, mean" in ln]
    assert len(rows) == 1 and " ok " in rows[0]  # the figure, its value and its mark on one row
    trace = tmp_path / ("a-trace-whose-name-is-long-enough-to-widen-the-table-past-140-columns" + ".rep")
    shutil.copy(ROOT / "kalloc" / "replay" / "traces" / "coalesce.rep", trace)
    proc = kalloc("replay", str(trace))
    assert proc.returncode == 0, proc.stderr
    (row,) = [ln for ln in proc.stdout.splitlines() if trace.name in ln]
    assert "segfit" in row and re.search(r"\d+\.\d%", row)  # every column on the trace's one row
    assert any("largest free (end)" in ln for ln in proc.stdout.splitlines())


def test_boards_piped_is_one_board_a_line() -> None:
    proc = kalloc("boards", COLUMNS="20")
    lines = proc.stdout.splitlines()
    assert {"default", "tiny", "big"} <= {ln.split()[0] for ln in lines}
    assert all(len(ln.split()) > 2 for ln in lines)  # the description stays on its board's line


def test_the_pytest_plugin_text_is_one_line_per_fact() -> None:
    from kalloc_machine.session import RunOptions, Session
    from kalloc_machine.tools.pytest_plugin import report_text

    report = Session(RunOptions(firmware=elf("tests/summary_mix"))).run().report
    text = report_text(report)
    assert "status 64 (kalloc found an error)" in text.splitlines()[2]
    assert text.splitlines()[-1].startswith("summary: 3 double-free")


# -- 2. colour: --color/--no-color, NO_COLOR, FORCE_COLOR ----------------------------------------


@pytest.mark.parametrize(
    ("flag", "env", "coloured"),
    [
        ((), {}, False),  # piped: no colour
        (("--color",), {}, True),  # CI logs that render ANSI
        (("--color",), {"NO_COLOR": "1"}, True),  # the command line wins (no-color.org)
        ((), {"FORCE_COLOR": "1"}, True),
        (("--no-color",), {"FORCE_COLOR": "1"}, False),
        ((), {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),  # NO_COLOR wins over FORCE_COLOR
        ((), {"NO_COLOR": "", "FORCE_COLOR": "1"}, True),  # an empty NO_COLOR is not set
    ],
)
def test_colour_flags_and_environment(flag: tuple[str, ...], env: dict[str, str], coloured: bool) -> None:
    proc = kalloc("run", elf("tests/double_free"), "-q", *flag, **env)
    assert (ANSI in proc.stdout) is coloured, proc.stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert "status 64 (kalloc found an error)" in plain and plain.splitlines()[-1] == "summary: 1 double-free"
    assert "── kalloc report:" in plain  # forced colour never changes the piped layout


def test_want_colour_order() -> None:
    assert want_colour(None, True, {}) and not want_colour(None, False, {})
    assert not want_colour(None, True, {"NO_COLOR": "x"}) and want_colour(None, False, {"FORCE_COLOR": "0"})
    assert want_colour(True, False, {"NO_COLOR": "1"}) and not want_colour(False, True, {"FORCE_COLOR": "1"})


def test_color_option_on_every_report_command() -> None:
    for cmd in ("run", "replay", "bench", "explore"):
        proc = kalloc(cmd, "--help", COLUMNS="200")
        assert "--color / --no-color" in proc.stdout, cmd


def test_a_buffer_console_is_plain_and_never_wraps() -> None:
    import io

    buf = io.StringIO()
    con = report_console(file=buf, color=True)
    assert not con.is_terminal and con.color_system == "standard"
    con.print("x" * 500)
    assert buf.getvalue() == "x" * 500 + "\n"


# -- 3 and 4. identical errors once with ×N; the summary line ------------------------------------

MIX_SUMMARY = "summary: 3 double-free, 1 leak (64 bytes in 2 objects definitely lost); warnings: 1 oom"


def test_identical_errors_print_once_with_their_count_and_the_summary_is_last() -> None:
    proc = kalloc("run", elf("tests/summary_mix"), "--json", "-")
    report = json.loads(proc.stdout)
    (df,) = [e for e in report["errors"] if e["kind"] == "double-free"]
    assert df["count"] == 3  # the JSON keeps the count
    text = proc.stderr
    assert text.count("ERROR double-free") == 1 and "ERROR double-free ×3: free() of an object" in text
    assert "more like this" not in text
    assert text.splitlines()[-1] == MIX_SUMMARY
    quiet = kalloc("run", elf("tests/summary_mix"), "-q")
    assert quiet.stdout.splitlines()[-1] == MIX_SUMMARY  # also with --quiet


def test_a_clean_run_ends_with_summary_clean() -> None:
    proc = kalloc("run", elf("tests/hello"), "-q")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "summary: clean"


def _entry(kind: str, severity: str = "error", **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, **fields}


def test_summary_line_format() -> None:
    assert summary_line({"errors": []}) == "summary: clean"
    leak = _entry("leak", count=3, bytes=96)  # no `lost` field: one part
    assert summary_line({"errors": [leak]}) == "summary: 1 leak (96 bytes in 3 objects)"
    one = _entry("leak", count=1, bytes=1)
    assert summary_line({"errors": [one]}) == "summary: 1 leak (1 byte in 1 object)"
    split = [_entry("leak", count=4, bytes=64, lost="definitely"), _entry("leak", count=1, bytes=32,
             lost="indirectly"), _entry("leak", count=2, bytes=8, lost="definitely")]  # fmt: skip
    assert summary_line({"errors": [_entry("use-after-free", count=2), *split]}) == (
        "summary: 2 use-after-free, 3 leak (72 bytes in 6 objects definitely lost, "
        "32 bytes in 1 object indirectly lost)")  # fmt: skip
    assert summary_line({"errors": [_entry("oom", "warning", count=200000)]}) == (
        "summary: no errors; warnings: 200000 oom"
    )
    sup = {"count": 12, "by_kind": {"bad-hypercall": 10, "oom": 2}, "warnings_by_kind": {"oom": 2}}
    assert summary_line({"errors": [_entry("bad-hypercall")], "suppressed": sup}) == (
        "summary: 11 bad-hypercall; warnings: 2 oom"
    )
    fault = {"end": "fault", "errors": [_entry("cpu-fault")]}
    assert summary_line(fault) == "summary: 1 cpu-fault; leaks not checked"
    assert summary_line({"end": "interrupted", "errors": []}) == "summary: no errors; leaks not checked"
    legacy = {"count": 3, "by_kind": {"double-free": 3}}  # before warnings_by_kind: all errors
    assert summary_line({"errors": [], "suppressed": legacy}) == "summary: 3 double-free"


def test_the_summary_format_is_documented() -> None:
    for doc in ("docs/abi.md", "docs/user-guide.md"):
        text = (ROOT / doc).read_text()
        assert "summary: clean" in text and MIX_SUMMARY in text, doc


# -- 5. what poison mode cannot see, on a clean poison run ----------------------------------------


def test_a_clean_poison_run_says_what_the_mode_cannot_see() -> None:
    lines = kalloc("run", elf("tests/hello")).stdout.splitlines()
    assert lines[-1] == "summary: clean" and tuple(lines[-3:-1]) == POISON_HINT
    assert "--sanitize=kasan" in POISON_HINT[0] and "KASAN=1" in POISON_HINT[0]
    assert "OPT=-Og" in POISON_HINT[1]
    quiet = kalloc("run", elf("tests/hello"), "-q").stdout.splitlines()
    assert quiet[-1] == "summary: clean" and not any(ln.startswith("note:") for ln in quiet)
    kasan = kalloc("run", elf("tests/hello"), "--sanitize", "kasan").stdout
    assert "note:" not in kasan and kasan.splitlines()[-1] == "summary: clean"
    assert "note:" not in kalloc("run", elf("tests/double_free")).stdout  # an error was found: no hint
