"""Progress on long work: on stderr when stderr is a terminal (a pty here), never when piped.

Each command runs as a real process (`python -m kalloc.cli` semantics through
`kalloc.cli.main`) with stderr on a pseudo-terminal, or on a pipe, and stdout on a
pipe. `kalloc run`'s progress waits RUN_DELAY_S (2 s): one test waits it out on a
run that lasts longer; the others set it to 0 in the child (the `-c` prelude), so a
short deterministic run (firmware/tests/live_then_spin.c: 100 objects live, then an
endless loop that the instruction budget ends) shows it, and its JSON report can be
compared byte for byte with the piped run's.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading

import pytest
from kalloc_machine.sdk import prebuilt

from kalloc.replay import shipped_traces

PRELUDE = "import sys, kalloc.cli.progress as p; p.RUN_DELAY_S = {delay}; from kalloc.cli import main; main()"
HIDE_CURSOR = b"\x1b[?25l"  # what Rich's live display writes first


def kalloc(*args: str, tty: bool, delay: float = 0.0, env: dict[str, str] | None = None,
           timeout: float = 600) -> tuple[int, bytes, bytes]:  # fmt: skip
    """(status, stdout, stderr) of `kalloc ARGS`, stderr on a 200-column pty when `tty`, else a pipe."""
    argv = [sys.executable, "-c", PRELUDE.format(delay=delay), *args]
    environ = {**os.environ, "TERM": "xterm", **(env or {})}
    environ.pop("NO_COLOR", None)
    if not tty:
        p = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, env=environ, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                             env=environ)  # fmt: skip
        os.close(slave)
        out, _ = p.communicate(timeout=timeout)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return p.returncode, out, b"".join(chunks)


LIVE = str(prebuilt("tests/live_then_spin"))
BUDGET = "--max-instructions=30000000"


def test_run_shows_instructions_and_live_allocations_on_a_terminal_and_the_report_is_unchanged():
    status, out_tty, err_tty = kalloc("run", LIVE, BUDGET, "--json", "-", tty=True)
    assert status == 66, err_tty
    assert b"allocations live" in err_tty and b"100 allocations live" in err_tty
    assert b"instructions" in err_tty and HIDE_CURSOR in err_tty
    status, out_pipe, err_pipe = kalloc("run", LIVE, BUDGET, "--json", "-", tty=False)
    assert status == 66
    assert b"allocations live" not in err_pipe and b"\x1b[" not in err_pipe  # piped: no progress at all
    assert out_tty == out_pipe  # the JSON report, byte for byte
    assert out_pipe.startswith(b"{") and b"allocations live" not in out_pipe


def test_run_progress_never_in_a_ci_log_even_when_colour_is_forced():
    for env in ({"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}):
        status, _out, err = kalloc("run", LIVE, BUDGET, "--json", "-", tty=False, env=env)
        assert status == 66
        assert b"allocations live" not in err and HIDE_CURSOR not in err, env


def test_run_progress_off_on_a_dumb_terminal():
    status, _out, err = kalloc("run", LIVE, BUDGET, "--json", "-", tty=True, env={"TERM": "dumb"})
    assert status == 66
    assert b"allocations live" not in err


def test_a_short_run_shows_no_progress_a_long_one_does_after_two_seconds():
    # the real delay: hello ends well within it; spin runs on until --timeout 4
    status, _out, err = kalloc("run", str(prebuilt("tests/hello")), tty=True, delay=2.0)
    assert status == 0
    assert b"running hello.elf" not in err and b"allocations live" not in err  # the report, no progress
    spin = str(prebuilt("tests/spin"))
    status, _out, err = kalloc("run", spin, "--timeout", "4", "-q", tty=True, delay=2.0)
    assert status == 66
    assert b"running spin.elf: " in err and b"allocations live" in err


@pytest.mark.parametrize("tty", [True, False])
def test_replay_progress_per_trace_only_on_a_terminal(tty):
    traces = [str(t) for t in shipped_traces()[:2]]
    status, out, err = kalloc("replay", *traces, "--heap", "all", tty=tty)
    assert status == 0, err
    assert (b"replaying" in err) is tty
    if tty:
        assert shipped_traces()[0].stem.encode() in err  # the trace being replayed is named
    assert b"replaying" not in out


@pytest.mark.parametrize("tty", [True, False])
def test_explore_progress_only_on_a_terminal(tty):
    status, out, err = kalloc("explore", str(prebuilt("tests/irq_race")), "--examples", "60", tty=tty)
    assert status == 1, err
    assert (b"exploring" in err) is tty
    assert b"exploring" not in out and out.decode().splitlines()[-1].startswith("kalloc run ")


@pytest.mark.parametrize(("tty", "env"), [(True, {}), (False, {}), (False, {"FORCE_COLOR": "1"})])
def test_bench_progress_only_on_a_terminal(tty, env):
    status, out, err = kalloc("bench", "--quick", "--only", "allocation", "--json", "-", tty=tty, env=env)
    assert status == 0, err
    assert (b"benchmarking" in err) is tty
    assert (HIDE_CURSOR in err) is tty
    if not tty:  # piped: the table only, from its first byte (no progress, no stray blank line)
        assert b"kalloc bench" in err.split(b"\n")[0]
    assert out.startswith(b"{")
