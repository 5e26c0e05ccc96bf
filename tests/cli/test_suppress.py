"""`kalloc run --suppress FILE` (repeatable), and the pytest plugin's `--kalloc-suppress`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner, Result
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import BadInput, RunOptions
from kalloc_machine.tools.options import run_args

from kalloc.cli import main

VENDOR = str(prebuilt("tests/suppress_vendor"))
RULES = """
    [[suppress]]
    kind = "*"
    function = "vendor_*"
    reason = "upstream bug #123"
"""
APP = """
    [[suppress]]
    kind = "leak"
    function = "app_leak"
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_run_suppress_repeatable_clean_status_and_one_line_per_file(tmp_path):
    vendor, app = _file(tmp_path, "vendor.toml", RULES), _file(tmp_path, "app.toml", APP)
    out = tmp_path / "r.json"
    res = invoke("run", VENDOR, "-q", "--suppress", vendor, "--suppress", app, "--json", str(out))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "3 error(s) suppressed by vendor.toml (rule 1 (upstream bug #123) ×3)" in lines
    assert "1 error(s) suppressed by app.toml (rule 1 ×1)" in lines
    report = json.loads(out.read_text())
    assert report["errors"] == [] and report["suppressions"]["files"] == ["vendor.toml", "app.toml"]


def test_run_suppress_only_the_vendor_still_fails_on_the_app(tmp_path):
    res = invoke("run", VENDOR, "-q", "--suppress", _file(tmp_path, "vendor.toml", RULES))
    assert res.exit_code == 64
    assert "app_leak" in res.output and "vendor_leak" not in res.output


def test_a_malformed_file_is_one_line_status_3(tmp_path):
    bad = _file(tmp_path, "bad.toml", '[[suppress]]\nkind = "leak"\nfunction = "f"\nfuncion = "g"\n')
    res = invoke("run", VENDOR, "--suppress", bad)
    assert res.exit_code == 3 and "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert line.startswith(f"kalloc: error: --suppress {bad}: rule 1: unknown key 'funcion'")
    res = invoke("run", VENDOR, "--suppress", str(tmp_path / "missing.toml"))
    assert res.exit_code == 3 and "cannot read" in res.output


def test_help_lists_suppress_and_a_reproducer_keeps_it(monkeypatch):
    import kalloc.cli.run as run_module

    assert "--suppress FILE" in invoke("run", "--help").output
    opts = RunOptions(firmware="a.elf", suppress=("x.toml", "y.toml"))
    assert run_args(opts) == ["a.elf", "--suppress", "x.toml", "--suppress", "y.toml"]
    seen = []

    def session(options):
        seen.append(options)
        raise BadInput("recorded")

    monkeypatch.setattr(run_module, "Session", session)
    assert invoke("run", *run_args(opts)).exit_code == 3 and seen == [opts]
