"""Hangs, timeouts and Ctrl-C on the real machine (issue 12): no firmware can hang kalloc.

The firmware is firmware/tests/hostile_time_*.c (and spin.c). Each run checks its end
reason, exit status and error kind, a wall-time bound, and, where the allocator is
reachable, that the allocator's full check() passes afterwards. Wall-time bounds are
generous multiples of the limit under test (CI machines are loaded); what they catch is
the old behaviour: minutes of idle fast-forward, a timeout that never fired.

Ctrl-C: `kalloc run` in a subprocess gets SIGINT while the firmware runs; it must end
with `end: interrupted`, exit 130, the report so far (JSON too) and no traceback.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kalloc_machine.board import load_board
from kalloc_machine.devices import IrqInjector
from kalloc_machine.elf import load_firmware
from kalloc_machine.machine import Machine
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session

from kalloc.cli import main as cli_main
from kalloc.gfp import GFP_KERNEL


def run_timed(name: str, **options: Any) -> tuple[Session, RunOutcome, float]:
    s = Session(RunOptions(firmware=str(prebuilt(name)), **options))
    t0 = time.monotonic()
    out = s.run()
    return s, out, time.monotonic() - t0


def only_error(out: RunOutcome) -> dict[str, Any]:
    errors = out.report["errors"]
    assert len(errors) == 1, errors
    err: dict[str, Any] = errors[0]
    return err


# -- case 1: wfi that nothing can wake --------------------------------------------------------------


def test_wfi_with_a_raised_but_disabled_line_ends_at_once() -> None:
    """`for (;;) wfi;` with --irq-every 7 and the test line never enabled: was minutes of
    fast-forward with memory growing; now a deadlock report at the wfi, status 66."""
    s, out, wall = run_timed("tests/hostile_time_wfi", irq_every=7, timeout_s=5)
    assert wall < 3.0
    assert out.report["end"] == "wfi" and out.exit_status == 66
    err = only_error(out)
    assert err["kind"] == "timeout" and err["symbol"] == "sleep_forever"
    assert "wfi with nothing to wake it" in err["message"]
    assert "line(s) 31 raised but not enabled" in err["message"]
    assert "before sleeping" in out.report["uart"]  # the allocation before it worked
    s.ka.check()
    p = s.ka.kmalloc(100, GFP_KERNEL)  # and the allocator still serves
    s.ka.kfree(p)
    s.ka.check()


def test_idle_fast_forward_honours_the_wall_clock() -> None:
    """A wfi that only a timer ~2^31 instructions away can end, while a disabled line is raised
    every 7 instructions: each injection is an idle step; the wall clock is read in the idle loop."""
    s, out, wall = run_timed("tests/hostile_time_wfi_far", irq_every=7, timeout_s=1.0,
                             max_instructions=10**12)  # fmt: skip
    assert out.report["end"] == "timeout" and out.exit_status == 66
    err = only_error(out)
    assert err["kind"] == "timeout" and "wall-clock limit of 1 s" in err["message"]
    assert err["symbol"] == "main"  # the wfi the CPU sleeps in (kalloc_wait_until, inlined)
    assert wall < 6.0
    injected = out.report["interrupts"]["injected"]
    assert injected["count"] > 1000 and len(injected["times"]) == IrqInjector.FIRED_KEPT  # bounded
    assert injected["times"] == [7 * k for k in range(1, IrqInjector.FIRED_KEPT + 1)]
    s.ka.check()


def test_idle_fast_forward_honours_the_budget() -> None:
    _, out, wall = run_timed("tests/hostile_time_wfi_far", irq_every=7, max_instructions=3_000_000)
    assert out.report["end"] == "budget" and out.exit_status == 66 and out.report["instructions"] == 3_000_000
    assert only_error(out)["kind"] == "timeout"
    assert wall < 30.0


def test_idle_still_sleeps_to_a_far_timer() -> None:
    """The timer can wake it and the injected line cannot: one long sleep, then a clean exit."""
    s, out, wall = run_timed("tests/hostile_time_wfi_far", irq_every=1 << 20, max_instructions=1 << 32)
    assert out.exit_status == 0 and out.report["end"] == "exit", out.report["errors"]
    assert out.report["instructions"] > 0x7FFF_FFFF and "woke after" in out.report["uart"]
    assert out.report["interrupts"]["injected"]["count"] in (2047, 2048)
    assert wall < 60.0
    s.ka.check()


def test_the_json_of_an_injection_storm_is_deterministic() -> None:
    a = run_timed("tests/hostile_time_wfi_far", irq_every=7, max_instructions=500_000)[1]
    b = run_timed("tests/hostile_time_wfi_far", irq_every=7, max_instructions=500_000)[1]
    assert a.report == b.report


def test_lists_of_events_are_bounded() -> None:
    """The injector and the DMA engine keep the first few events and count the rest."""
    inj = IrqInjector(5, lambda _line: None, irq_every=1, irq_jitter=3, seed=4)
    inj.service(100_000)
    assert inj.fired_count >= 100_000 // 4 and len(inj.fired) == IrqInjector.FIRED_KEPT
    m = Machine(load_board("default"), load_firmware(prebuilt("tests/hostile_time_wfi")))
    dma = m.dma
    assert dma is not None
    buf = dma.buf_base
    for _ in range(300):
        dma.regs.update({dma.SRC: buf, dma.DST: buf + 64, dma.LEN: 8})
        dma.start()
        m.clock.now += 1000
        dma.service(m.clock.now)
    assert dma.count == dma.completed == 300 and dma.bytes_done == 2400
    assert len(dma.transfers) == dma.TRANSFERS_KEPT


# -- case 2: limits in every state --------------------------------------------------------------------


def test_a_handler_that_never_returns_times_out() -> None:
    """An endless loop in a timer handler, interrupts off: the wall clock ends it."""
    s, out, wall = run_timed("tests/hostile_time_handler", timeout_s=1.0, max_instructions=10**12)
    assert out.report["end"] == "timeout" and out.exit_status == 66
    err = only_error(out)
    assert err["kind"] == "timeout" and err["symbol"] == "spin_in_handler"
    assert any(f["symbol"] == "on_timer" for f in err["backtrace"])
    assert wall < 6.0
    s.ka.check()


def test_a_handler_that_never_returns_exhausts_the_budget() -> None:
    _, out, wall = run_timed("tests/hostile_time_handler", max_instructions=2_000_000)
    assert out.report["end"] == "budget" and out.exit_status == 66 and out.report["instructions"] == 2_000_000
    assert only_error(out)["symbol"] == "spin_in_handler"
    assert wall < 30.0


def test_a_hypercall_loop_times_out() -> None:
    s, out, wall = run_timed("tests/hostile_time_hcloop", timeout_s=1.0, max_instructions=10**12)
    assert out.report["end"] == "timeout" and out.exit_status == 66
    assert only_error(out)["kind"] == "timeout"
    assert wall < 6.0
    s.ka.check()
    s.ka.kfree(s.ka.kmalloc(32, GFP_KERNEL))


def test_the_leak_scan_honours_the_timeout() -> None:
    """640 MiB of reachable pages chained from a global on the 1 GiB board: the scan after exit
    reads every word of them (minutes); --timeout cuts it short, leaks not judged, status 66."""
    s, out, wall = run_timed("tests/hostile_time_leakscan", board="big", sanitize="off", timeout_s=1.5)
    assert out.report["firmware_exit_code"] == 0 and "160 blocks" in out.report["uart"]
    assert out.report["end"] == "timeout" and out.exit_status == 66
    err = only_error(out)
    assert err["kind"] == "timeout" and "leak scan" in err["message"]
    assert out.report["leaks"]["count"] == 0
    assert wall < 10.0
    s.ka.check()


# -- case 3: --timeout values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-1", "0"])
def test_timeout_must_be_a_positive_finite_number(value: str) -> None:
    result = CliRunner().invoke(cli_main, ["run", "--timeout", value])
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.output and "Traceback" not in result.output


def test_fail_prob_nan_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli_main, ["run", "--fail-prob", "nan"])
    assert result.exit_code == 2 and "finite" in result.output
    assert math.isnan(float("nan"))  # (the value click would otherwise accept: nan passes every range test)


# -- case 4: Ctrl-C ---------------------------------------------------------------------------------

# Imports first, then says "ready": a SIGINT before then would hit Python's own start-up.
_KALLOC = "import sys; import kalloc.cli as c; print('ready', flush=True); sys.argv[0] = 'kalloc'; c.main()"


def _sigint_default() -> None:
    """A shell's background job (a CI runner's, `nohup … &`) inherits SIGINT ignored; kalloc
    honours that (it is what the user asked for), so the tests restore the default first."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def python_sigint():
    """In-process Ctrl-C tests need Python's own SIGINT handler, whatever the runner inherited."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def interrupt_run(name: str, *args: str, after: float = 1.5) -> tuple[int, str, str]:
    proc = subprocess.Popen([sys.executable, "-c", _KALLOC, "run", str(prebuilt(name)), "--timeout", "60",
                             "--max-instructions", str(10**12), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(after)  # the board, ELF and allocator are built in well under a second
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10.0
    return proc.returncode, out, err


@pytest.mark.parametrize("name", ["tests/hostile_time_hcloop", "tests/spin"])
def test_ctrl_c_stops_cleanly_with_the_report(name: str, tmp_path: Path) -> None:
    """hcloop: the signal most likely lands inside a Unicorn callback (a hypercall);
    spin: inside emu_start with no callback at all."""
    path = tmp_path / "r.json"
    status, out, err = interrupt_run(name, "--json", str(path))
    assert status == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err and "cpu-fault" not in out
    assert "end: interrupted" in out and "status 130 (interrupted)" in out
    report = json.loads(path.read_text())
    assert report["end"] == "interrupted" and report["exit_code"] == 130
    assert report["errors"] == [] and report["instructions"] > 0


def test_ctrl_c_with_json_on_stdout(tmp_path: Path) -> None:
    status, out, err = interrupt_run("tests/hostile_time_wfi_far", "--irq-every", "7", "--json", "-", "-q")
    assert status == 130, err
    report = json.loads(out[out.index("{") :])
    assert report["end"] == "interrupted" and report["exit_code"] == 130
    assert "end: interrupted" in err and "Traceback" not in err and "Exception ignored" not in err


def _sigint_soon(delay: float) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_in_process_reports_when_asked(python_sigint: None) -> None:
    """What `kalloc run` does (report_interrupts): the report so far, status 130; the
    allocator is intact and serves afterwards."""
    s = Session(RunOptions(firmware=str(prebuilt("tests/hostile_time_hcloop")), timeout_s=60,
                           max_instructions=10**12))  # fmt: skip
    s.report_interrupts = True
    _sigint_soon(0.5)
    out = s.run()
    assert out.exit_status == 130 and out.report["end"] == "interrupted" and out.report["errors"] == []
    s.ka.check()
    s.ka.kfree(s.ka.kmalloc(48, GFP_KERNEL))


def test_ctrl_c_in_a_library_caller_raises_keyboard_interrupt(python_sigint: None) -> None:
    """Any other caller (pytest plugin, harness, explore): the machine stops cleanly, then
    KeyboardInterrupt, so a Ctrl-C aborts the test session and never looks like a finding."""
    s = Session(RunOptions(firmware=str(prebuilt("tests/spin")), timeout_s=60, max_instructions=10**12))
    before = signal.getsignal(signal.SIGINT)
    _sigint_soon(0.5)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        s.run()
    assert time.monotonic() - t0 < 10.0
    assert signal.getsignal(signal.SIGINT) is before  # the handler is Python's again
    s.ka.check()
