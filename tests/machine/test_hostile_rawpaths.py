"""Hostile firmware against the fifth session's raw CLINT paths (RV32): no hang, no traceback,
no corrupt allocator, no report that depends on the quantum.

The CLINT's MMIO is raw ctypes callbacks (timerport.py) that decode the SDK's aligned words
inline and hand every other access to `Clint.read` / `Clint.write`; an mtime read may take its
boundary in place (RunLoop.read_boundary moves the running emu_start's limit through
Unicorn's own counter, rawcount.py). The firmware is firmware/tests/hostile_raw_clint_*.c:
 - widths: every width at every byte of mtime / mtimecmp, misaligned words and halves across
   their ends, MSIP, holes inside the window, mtimecmp stored byte by byte, ticks meanwhile;
 - storm: mtime read in a tight loop, mtimecmp stored 0 / all ones in the loop with interrupts
   on, a handler that re-arms in the past (due at once): an endless interrupt storm;
 - wfi: mtime read right after each wfi wake-up and inside the handler.
Each report is compared byte for byte across quanta (100, 333, the default) and across runs,
also with the budget ending at each of a run of consecutive instructions (so at the loads).
Exit statuses are docs/abi.md's: 0 clean, 66 budget / timeout, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.runloop import RunLoop
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOutcome, Session

from tests.machine import hostile
from tests.machine.hostile import QUANTA, allocator_serves, report_bytes, run


def same_for_every_quantum(name: str, **options: Any) -> tuple[Session, RunOutcome]:
    """hostile.same_for_every_quantum with the default quantum twice (also the same run to run)."""
    return hostile.same_for_every_quantum(name, quanta=(*QUANTA, QUANTA[0]), **options)


def test_every_width_and_offset_of_the_clint_is_clean_and_quantum_free() -> None:
    s, out = same_for_every_quantum("tests/hostile_raw_clint_widths")
    assert out.exit_status == 0 and out.report["end"] == "exit" and out.report["errors"] == []
    assert out.report["uart"] == "ticks 240 digest 54fe61ca\n"  # no early tick from the bytewise stores
    assert out.report["interrupts"]["lines"] == {"0": 240}
    allocator_serves(s)


def test_mtime_reads_around_wfi_and_in_the_handler_are_quantum_free() -> None:
    s, out = same_for_every_quantum("tests/hostile_raw_clint_wfi")
    assert out.exit_status == 0 and out.report["errors"] == []
    assert out.report["uart"].startswith("ticks 200 wakes ")
    allocator_serves(s)


def test_an_endless_clint_storm_ends_on_the_budget_the_same_every_time() -> None:
    s, out = same_for_every_quantum("tests/hostile_raw_clint_storm", max_instructions=1_000_000)
    assert out.exit_status == 66 and out.report["end"] == "budget"
    assert out.report["instructions"] == 1_000_000
    [err] = out.report["errors"]
    assert err["kind"] == "timeout" and "instruction budget exhausted (1000000)" in err["message"]
    assert out.report["interrupts"]["lines"]["0"] > 5_000  # a storm it was
    allocator_serves(s)


@pytest.mark.parametrize(("name", "start"), [("tests/hostile_raw_clint_storm", 30_000),
                                             ("tests/hostile_raw_clint_wfi", 20_000)])  # fmt: skip
def test_a_budget_ending_at_each_instruction_is_quantum_free(name: str, start: int) -> None:
    """24 consecutive budgets inside the loops: some end at an mtime load, in a handler, at the
    sled's mret; each run's report is the same for quanta 100 and 100000."""
    for n in range(start, start + 24):
        a = report_bytes(run(name, max_instructions=n, quantum=100_000)[1])
        b = report_bytes(run(name, max_instructions=n, quantum=100)[1])
        assert a == b, f"{name}: budget {n}: the report depends on the quantum"
        assert json.loads(a)["instructions"] == n


@pytest.mark.parametrize("name", ["tests/hostile_raw_clint_widths", "tests/hostile_raw_clint_wfi",
                                  "tests/hostile_raw_clint_storm"])  # fmt: skip
@pytest.mark.parametrize("quantum", [100_000, 100])
def test_reads_in_place_are_those_of_the_cut(name: str, quantum: int) -> None:
    """The reference: every mtime read cut and replayed at a boundary (read_boundary off). The
    boundary taken in place must give the same report, byte for byte, under every hostile read."""

    def once() -> str:
        return report_bytes(run(name, quantum=quantum, max_instructions=400_000)[1])

    fast = once()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunLoop, "read_boundary", lambda self: False)
        assert once() == fast


# -- the command line: wall clock, Ctrl-C, memory -----------------------------------------------------

_KALLOC = "import sys; import kalloc.cli as c; print('ready', flush=True); sys.argv[0] = 'kalloc'; c.main()"
# The same, saying its own peak RSS (KiB, VmHWM: getrusage's maxrss keeps the forking pytest's across
# exec) on stderr as it exits.
_KALLOC_RSS = ("import atexit, sys; atexit.register(lambda: print('maxrss', [l.split()[1] for l in "
               "open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)); "
               + _KALLOC)  # fmt: skip


def _sigint_default() -> None:  # a background job inherits SIGINT ignored: kalloc would honour that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


Ran = tuple[int, str, str, float]  # status, stdout, stderr, wall seconds


def kalloc_run(
    *args: str, sigint_after: float | None = None, command: str = "run", code: str = _KALLOC
) -> Ran:
    """`kalloc COMMAND ARGS` (run by default) in a subprocess (optionally Ctrl-C after a delay):
    status, out, err, wall."""
    proc = subprocess.Popen([sys.executable, "-c", code, command, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    if sigint_after is not None:
        time.sleep(sigint_after)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, time.monotonic() - t0


def no_traceback(out: str, err: str) -> None:
    for text in (out, err):
        assert "Traceback" not in text and "Exception ignored" not in text


def test_the_storm_honours_the_wall_clock_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    status, out, err, wall = kalloc_run(str(prebuilt("tests/hostile_raw_clint_storm")), "--timeout", "1.5",
                                        "--max-instructions", str(10**12), "--json", str(path),
                                        code=_KALLOC_RSS)  # fmt: skip
    no_traceback(out, err)
    assert status == 66, err
    assert wall < 20.0
    report = json.loads(path.read_text())
    assert report["end"] == "timeout" and report["exit_code"] == 66
    assert "wall-clock limit of 1.5 s" in report["errors"][0]["message"]
    rss = int(err.split("maxrss")[-1])
    assert 0 < rss < 400 * 1024  # KiB (~58 MB here): the storm's events are counted, not kept


def test_ctrl_c_in_the_storm_ends_interrupted_with_the_report(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    status, out, err, _ = kalloc_run(str(prebuilt("tests/hostile_raw_clint_storm")), "--timeout", "60",
                                     "--max-instructions", str(10**12), "--json", str(path),
                                     sigint_after=1.5)  # fmt: skip
    no_traceback(out, err)
    assert status == 130, err
    assert "end: interrupted" in out
    report = json.loads(path.read_text())
    assert report["end"] == "interrupted" and report["errors"] == [] and report["instructions"] > 0


@pytest.mark.parametrize("name", ["tests/hostile_raw_clint_widths", "tests/hostile_raw_clint_storm"])
def test_the_cli_json_is_the_same_bytes_twice(name: str, tmp_path: Path) -> None:
    texts = []
    for i in range(2):
        path = tmp_path / f"r{i}.json"
        status, out, err, _ = kalloc_run(str(prebuilt(name)), "--max-instructions", "300000",
                                         "--json", str(path))  # fmt: skip
        no_traceback(out, err)
        assert status in (0, 66)
        texts.append(path.read_bytes())
    assert texts[0] == texts[1]


def test_a_campaign_over_the_hostile_firmware_is_the_same_bytes_for_any_workers(tmp_path: Path) -> None:
    texts = []
    for workers in (1, 2):
        path = tmp_path / f"c{workers}.json"
        status, out, err, _ = kalloc_run(str(prebuilt("tests/hostile_raw_clint_wfi")),
                                         str(prebuilt("tests/hostile_raw_clint_storm")), "--seeds", "3",
                                         "--irq-every", "997", "--irq-jitter", "50", "--max-instructions",
                                         "200000", "--workers", str(workers), "--json", str(path),
                                         command="campaign")  # fmt: skip
        no_traceback(out, err)
        assert status == 0 and "no bug found" in out, err
        texts.append(path.read_bytes())
    assert texts[0] == texts[1]
