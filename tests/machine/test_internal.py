"""kalloc's own crashes are `internal` reports (error, exit 64), never the firmware's `bad-hypercall`.

An allocator method is made to raise during a real firmware run: inside a hypercall
service, inside the KASAN access hook (outside any hypercall) and in the end-of-run
checks. Each run must end cleanly (no Python exception out of `Session.run()` or the
command line), with one `internal` entry naming the exception and, for a hypercall,
the service; the JSON holds module names, no host paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine import session as session_module
from kalloc_machine.bridge.kasan import Kasan
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import EXIT_ERROR, RunOptions, Session

from kalloc import Kalloc
from kalloc.errors import KINDS

ROOT = str(Path(__file__).resolve().parents[2])


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom: a bug in kalloc")


def break_allocator(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Every allocator the sessions build from now on raises RuntimeError from `method`."""

    class Broken(Kalloc):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            setattr(self, method, boom)

    monkeypatch.setattr(session_module, "Kalloc", Broken)


def internal_entries(report: dict) -> list[dict]:
    return [e for e in report["errors"] if e["kind"] == "internal"]


def test_internal_is_a_kind() -> None:
    assert "internal" in KINDS


def test_a_crash_inside_a_service_is_internal_and_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    break_allocator(monkeypatch, "malloc")
    out = Session(RunOptions(firmware=str(prebuilt("tests/mallocs")))).run()  # must not raise
    rep = out.report
    assert out.exit_status == EXIT_ERROR == 64 and rep["exit_code"] == 64
    assert rep["end"] == "fatal"
    assert [e["kind"] for e in rep["errors"]] == ["internal"]  # never bad-hypercall
    err = rep["errors"][0]
    assert err["severity"] == "error"
    assert "RuntimeError: boom: a bug in kalloc" in err["message"]
    assert "MALLOC (40)" in err["message"] and "not the firmware's" in err["message"]
    assert (err["service"], err["service_number"]) == ("MALLOC", 40)
    exc = err["exception"]
    assert (exc["type"], exc["message"]) == ("RuntimeError", "boom: a bug in kalloc")
    # kalloc's own frames by module name; the monkeypatched test function is not kalloc's
    modules = [f["module"] for f in exc["frames"]]
    assert modules and all(m.split(".")[0] in ("kalloc", "kalloc_machine") for m in modules)
    assert "kalloc_machine.bridge.services.libc" in modules
    assert ROOT not in json.dumps(err)  # no host paths in the JSON
    assert err["symbol"] == "main"  # the firmware's call site, as for every kind


def test_the_command_line_exits_64_without_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:  # fmt: skip
    from kalloc.cli import main

    break_allocator(monkeypatch, "malloc")
    report = tmp_path / "report.json"
    res = CliRunner().invoke(main, ["run", str(prebuilt("tests/mallocs")), "--json", str(report)])
    assert res.exit_code == 64, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    assert "ERROR internal" in res.output and "python exception: RuntimeError: boom" in res.output
    assert "kalloc_machine.bridge.services.libc:" in res.output  # frames, module:line, text only
    assert [e["kind"] for e in json.loads(report.read_text())["errors"]] == ["internal"]


def test_a_crash_in_a_hook_outside_any_hypercall_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Kasan, "classify", boom)
    session = Session(RunOptions(firmware=str(prebuilt("tests/oob_one")), sanitize="kasan"))
    assert session.kasan_mode == "hook"
    out = session.run()
    internal = internal_entries(out.report)
    assert out.exit_status == 64 and len(internal) == 1
    err = internal[0]
    assert "service" not in err and err["during"] == "running the firmware"
    assert "kalloc_machine.bridge.kasan" in [f["module"] for f in err["exception"]["frames"]]
    assert "bad-hypercall" not in [e["kind"] for e in out.report["errors"]]


def test_a_crash_in_the_end_of_run_checks_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    break_allocator(monkeypatch, "check_poison")
    out = Session(RunOptions(firmware=str(prebuilt("tests/hello")))).run()
    assert out.exit_status == 64
    (err,) = internal_entries(out.report)
    assert "after the firmware exited" in err["during"]
    assert out.report["end"] == "exit"  # the firmware itself finished
