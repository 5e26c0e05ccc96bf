"""Error storms on the real machine (issue 12): identical errors once with a count, distinct ones capped.

Each storm firmware of firmware/tests/hostile_storm_*.c runs in a subprocess, so its
peak RSS is the run's own (VmHWM: ru_maxrss survives exec and would carry a big pytest
parent's). The subprocess runs the allocator's full check() after the run, then builds
the report again, writes its JSON and renders its text, timing that: a report that
symbolized each of 200,000 errors (as before the fix: 20,000 double frees took 18 s,
447 MB and a 35 MB JSON) could not build in under a second.

The wall-time bounds on the whole run are generous (a loaded CI machine runs the
hypercalls themselves slowly); the report-building bound is the strict one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from kalloc_machine.report.errorlog import ErrorLog, signature
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session, exit_status

from kalloc.errors import BadArgumentError, DoubleFreeError, OutOfMemoryError

ROUNDS = 200_000  # each storm firmware's loop
RSS_BOUND_MIB = 300  # Python + Unicorn + a 16 MiB board is ~50 MiB
JSON_BOUND = 64 * 1024  # one entry with a count, and the allocator's sections
REPORT_BOUND_S = 1.0  # build_report + JSON + text of the finished run
RUN_BOUND_S = 400.0  # the whole run of 200,000 storm turns, on a loaded machine

_CHILD = """
import io, json, resource, sys, time
from rich.console import Console
from kalloc_machine.report.json_report import dumps
from kalloc_machine.report.render import render_text
from kalloc_machine.session import RunOptions, Session
def peak_rss_mib():
    # VmHWM is this process's own peak; ru_maxrss survives exec, so under a big pytest parent
    # it would report the parent's size (Linux keeps the larger of the two across fork+exec)
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
s = Session(RunOptions(firmware=sys.argv[1], max_errors=int(sys.argv[2])))
out = s.run()
s.ka.check()
t0 = time.perf_counter()
report = s.build_report(out.result, list(s.machine.errors))
text = dumps(report)
buf = io.StringIO()
render_text(report, Console(file=buf, width=100, highlight=False, color_system=None))
built = time.perf_counter() - t0
print(json.dumps({"exit": out.exit_status, "report": out.report, "json_bytes": len(dumps(out.report)),
                  "same": text == dumps(out.report), "text": buf.getvalue(), "build_s": built,
                  "rss_mib": peak_rss_mib()}))
"""


def run_storm(name: str, max_errors: int = 1000) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(prebuilt(name)), str(max_errors)],
                          capture_output=True, text=True, timeout=RUN_BOUND_S + 60)  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def check_storm(got: dict[str, Any], wall: float, kind: str, severity: str, status: int) -> dict[str, Any]:
    """The one entry of a storm of identical errors: counted, small, fast; normal allocations after."""
    report = got["report"]
    assert "still works" in report["uart"], report["uart"]
    assert got["exit"] == status == report["exit_code"]
    (entry,) = report["errors"]
    assert (entry["kind"], entry["severity"], entry["count"]) == (kind, severity, ROUNDS)
    assert "suppressed" not in report
    assert got["same"]  # building the report again gives the same bytes
    assert got["json_bytes"] < JSON_BOUND, got["json_bytes"]
    assert f"{severity.upper()} {kind} ×{ROUNDS:,}: " in got["text"]  # the headline says how many
    counted = f"{ROUNDS} {kind}" if severity == "error" else f"no errors; warnings: {ROUNDS} {kind}"
    assert got["text"].splitlines()[-1] == f"summary: {counted}"  # the last line, every repeat counted
    assert f"({ROUNDS:,} reports in all, identical ones shown once)" in got["text"]
    assert got["text"].count(f"{severity.upper()} {kind}") == 1
    assert got["build_s"] < REPORT_BOUND_S, got["build_s"]
    assert got["rss_mib"] < RSS_BOUND_MIB, got["rss_mib"]
    assert wall < RUN_BOUND_S, wall
    return entry


def test_a_double_free_storm_is_one_entry_with_a_count() -> None:
    got, wall = run_storm("tests/hostile_storm_double_free")
    entry = check_storm(got, wall, "double-free", "error", 64)
    assert entry["symbol"] == "free_twice"
    assert entry["alloc_site"]["backtrace"][0]["symbol"] == "free_twice"
    assert entry["free_site"]["backtrace"][0]["symbol"] == "free_twice"
    assert f"storm over: {ROUNDS} double frees" in got["report"]["uart"]


def test_an_oom_warning_storm_keeps_the_firmware_status() -> None:
    got, wall = run_storm("tests/hostile_storm_oom")
    check_storm(got, wall, "oom", "warning", 0)  # warnings only: the firmware's own exit status
    assert f"retry loop over: {ROUNDS} failures" in got["report"]["uart"]


def test_an_unknown_service_storm_is_one_entry_with_a_count() -> None:
    got, wall = run_storm("tests/hostile_storm_unknown_service")
    entry = check_storm(got, wall, "bad-hypercall", "error", 64)
    assert entry["service"] == 1000


def test_distinct_errors_past_max_errors_are_counted_as_suppressed() -> None:
    """900 distinct bad hypercalls (services 100..999), 20 rounds, with --max-errors 100."""
    got, wall = run_storm("tests/hostile_storm_distinct", max_errors=100)
    report = got["report"]
    assert "still works" in report["uart"]
    assert got["exit"] == 64
    assert len(report["errors"]) == 100
    assert [e["service"] for e in report["errors"]] == list(range(100, 200))  # the first ones filed
    assert all(e["count"] == 20 for e in report["errors"])  # repeats of a kept error still counted
    assert report["suppressed"] == {"count": 800 * 20, "by_kind": {"bad-hypercall": 800 * 20}}
    assert report["options"]["max_errors"] == 100
    assert "… 16,000 more error(s) and warning(s) not shown: the limit of 100 distinct errors" in got["text"]
    assert got["build_s"] < REPORT_BOUND_S and got["rss_mib"] < RSS_BOUND_MIB
    assert wall < 120


def test_the_default_cap_keeps_every_error_under_it_and_is_deterministic() -> None:
    fw = str(prebuilt("tests/hostile_storm_distinct"))
    runs = [Session(RunOptions(firmware=fw)).run() for _ in range(2)]
    from kalloc_machine.report.json_report import dumps

    assert dumps(runs[0].report) == dumps(runs[1].report)
    report = runs[0].report
    assert len(report["errors"]) == 900 and "suppressed" not in report
    assert report["options"]["max_errors"] == 1000


def test_a_run_without_repeats_has_no_count_key(run_fw: Any) -> None:
    """`count` appears only when an error repeated: reports of runs without storms are unchanged."""
    out = run_fw("tests/double_free")
    (entry,) = out.report["errors"]
    assert entry["kind"] == "double-free" and "count" not in entry
    assert "suppressed" not in out.report


# -- the log itself: signature, count, cap, suppressed status -------------------------------------


def test_the_signature_is_kind_pc_sites_not_addresses() -> None:
    a = DoubleFreeError("free of 0x1000", addr=0x1000, site=7, alloc_site=3, free_site=5)
    b = DoubleFreeError("free of 0x2000", addr=0x2000, site=7, alloc_site=3, free_site=5)
    c = DoubleFreeError("free of 0x1000", addr=0x1000, site=7, alloc_site=4, free_site=5)
    d = DoubleFreeError("free of 0x1000", addr=0x1000, site=8, alloc_site=3, free_site=5)
    assert signature(a) == signature(b)
    assert len({signature(a), signature(c), signature(d)}) == 3
    # no pc and no site: the message is all that says where it came from
    assert signature(BadArgumentError("x at 1")) != signature(BadArgumentError("x at 2"))
    nofail = OutOfMemoryError("m", site=1, severity="error")
    assert signature(OutOfMemoryError("m", site=1)) != signature(nofail)


def test_a_suppressed_error_still_makes_the_status_64() -> None:
    log = ErrorLog(max_errors=1)
    assert log.add(OutOfMemoryError("warn", site=1))
    assert not log.add(OutOfMemoryError("warn again", site=1))
    assert log[0].fields["count"] == 2
    assert not log.add(DoubleFreeError("err", site=2))  # past the cap
    assert len(log) == 1 and log.suppressed == {"double-free": 1} and log.suppressed_error
    assert log.section() == {"suppressed": {"count": 1, "by_kind": {"double-free": 1}}}
    from kalloc_machine.runloop import RunResult

    result = RunResult(exit_code=0, reason="exit", instructions=1, uart="", errors=list(log), irq_counts={},
                       wall_s=0.0, exact=True)  # fmt: skip
    assert exit_status(result, list(log)) == 0
    assert exit_status(result, list(log), log.suppressed_error) == 64
    log.clear()
    assert not log.seen and not log.suppressed and not log.suppressed_error


def test_fatal_errors_leaks_and_timeouts_are_never_suppressed() -> None:
    from kalloc.errors import LeakError, TimeoutError_

    log = ErrorLog(max_errors=1)
    log.add(DoubleFreeError("err", site=2))
    log.append(TimeoutError_("budget"))  # Machine.fatal and the run loop append directly
    kept = log.admit([LeakError("lost", site=3, count=4), DoubleFreeError("other", site=9)])
    assert [e.kind for e in kept] == ["leak"]
    assert [e.kind for e in log] == ["double-free", "timeout", "leak"]
    assert log.suppressed == {"double-free": 1}


@pytest.mark.parametrize("bad", ["0", "-3", "x"])
def test_max_errors_must_be_a_positive_number(bad: str) -> None:
    from click.testing import CliRunner

    from kalloc.cli import main

    res = CliRunner().invoke(main, ["run", "--max-errors", bad, str(prebuilt("tests/hello"))])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


def test_the_pytest_plugin_has_kalloc_max_errors() -> None:
    from kalloc_machine.tools.pytest_plugin import PLUGIN_OPTIONS

    assert "max_errors" in PLUGIN_OPTIONS
