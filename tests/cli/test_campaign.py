"""`kalloc campaign` (issue 15) on real firmware: fail-each finds exactly the seeded bugs,
deduplicates them, prints reproducers that reproduce, and says nothing when every failure
is handled; irq points and seeded schedules find an interrupt race; the output is the
same bytes whatever the number of workers.

The firmware (firmware/tests/):
  campaign_null_third.c  4 requests, the 3rd dereferenced unchecked: one cpu-fault bug
  campaign_leak_path.c   2 requests, the 2nd's failure leaks the 1st: one leak bug
  campaign_handled.c     5 requests, every failure handled: no bug
  irq_race.c             a handler that races the task on a ring: a double-free
  leak.c                 leaks unperturbed: its leak is the baseline's, never a bug
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kalloc_machine.sdk import prebuilt

from kalloc.cli import main

NULL3, LEAKY, HANDLED = (str(prebuilt(f"tests/campaign_{n}")) for n in ("null_third", "leak_path", "handled"))
HINT = "kalloc: error: --scheduler/--dask need Dask, which is not installed: pip install 'kalloc[cluster]'"


def campaign(*args: str) -> Result:
    return CliRunner().invoke(main, ["campaign", *args], catch_exceptions=False)


def campaign_json(*args: str) -> tuple[int, dict[str, Any]]:
    res = campaign(*args, "--json", "-")
    return res.exit_code, json.loads(res.stdout)


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """A reproducer line, as a user pastes it: a real `kalloc` process."""
    argv = [sys.executable, "-m", "kalloc.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


def test_fail_each_finds_the_unchecked_third_allocation_and_its_reproducer_reproduces():
    status, doc = campaign_json(NULL3, "--workers", "1")
    assert status == 1
    base = doc["firmware"][0]["baseline"]
    assert (base["exit_code"], base["allocation_requests"], doc["runs"]["done"]) == (0, 4, 4)
    [bug] = doc["bugs"]
    assert (bug["kind"], bug["frames"][0], bug["injected_site"]) == ("cpu-fault", "make_label", "make_label")
    assert bug["runs"] == 1
    assert bug["reproducer"]["args"] == [NULL3, "--fail-nth", "3"]
    assert bug["reproducer"]["command"] == f"kalloc run {shlex.quote(NULL3)} --fail-nth 3"
    assert bug["reproducer"]["reproduced"] is True
    assert bug["report"]["errors"][-1]["after_injected_failure"]["nth"] == 3
    p = run_cli([*shlex.split(bug["reproducer"]["command"])[1:], "--json", "-"])
    assert p.returncode == 65, p.stderr
    assert json.loads(p.stdout) == bug["report"]  # the reproducer's full report, as `kalloc run` gives it


def test_fail_each_finds_the_error_path_that_leaks():
    status, doc = campaign_json(LEAKY, "--workers", "1")
    assert status == 1
    [bug] = doc["bugs"]
    assert (bug["kind"], bug["frames"][0], bug["injected_site"]) == ("leak", "open_pair", "open_pair")
    assert bug["reproducer"]["args"][1:] == ["--fail-nth", "2"] and bug["reproducer"]["reproduced"]
    assert bug["report"]["exit_code"] == 64


@pytest.mark.parametrize("depth", ["1", "2"])
def test_a_firmware_that_handles_every_failure_has_no_bug(depth):
    res = campaign(HANDLED, "--depth", depth, "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "no bug found" in res.stdout and "5 allocation request(s) at 2 site(s)" in res.stdout
    assert f"{5 if depth == '1' else 9} runs" in res.stdout


def test_depth_two_hits_the_bug_twice_and_keeps_the_smallest_reproducer():
    status, doc = campaign_json(NULL3, "--depth", "2", "--workers", "1")
    assert status == 1 and doc["runs"]["done"] == 4 + 3  # N, then (N, N+1) for N < 4
    [bug] = doc["bugs"]  # --fail-nth 3 and --fail-nth 3,4: one signature
    assert bug["runs"] == 2 and bug["reproducer"]["args"][1:] == ["--fail-nth", "3"]


def test_per_site_fails_the_first_request_of_each_call_site_only():
    status, doc = campaign_json(NULL3, "--per-site", "--workers", "1")
    assert status == 1
    target = doc["firmware"][0]
    assert target["baseline"]["allocation_sites"] == 3 and target["runs"] == 3  # make_table twice: one site
    assert [b["reproducer"]["args"][1:] for b in doc["bugs"]] == [["--fail-nth", "3"]]


def test_filters_number_the_requests_they_match():
    status, doc = campaign_json(NULL3, "--fail-site", "make_label", "--workers", "1")
    assert status == 1 and doc["firmware"][0]["baseline"]["allocation_requests"] == 1
    assert doc["bugs"][0]["reproducer"]["args"][1:] == ["--fail-site", "make_label", "--fail-nth", "1"]
    assert doc["bugs"][0]["reproducer"]["reproduced"] is True


def test_the_baselines_own_errors_are_not_bugs():
    status, doc = campaign_json(str(prebuilt("tests/leak")), "--workers", "1")
    assert doc["firmware"][0]["baseline"]["errors"][0]["kind"] == "leak"
    assert status == 1 and {b["kind"] for b in doc["bugs"]} == {"cpu-fault"}  # memset on each NULL


def test_several_firmware_deduplicated_and_the_same_bytes_whatever_the_workers(tmp_path):
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"{workers}.json"
        res = campaign(NULL3, LEAKY, HANDLED, "--workers", workers, "--json", str(out))
        assert res.exit_code == 1
        outs.append((res.stdout, out.read_bytes()))
    assert outs[0] == outs[1]
    doc = json.loads(outs[0][1])
    assert [(b["firmware"], b["kind"]) for b in doc["bugs"]] == [(NULL3, "cpu-fault"), (LEAKY, "leak")]
    assert doc["runs"] == {"planned": 11, "done": 11, "with_bugs": 2} and doc["complete"] is True
    text = outs[0][0]
    assert f"#1 kalloc run {NULL3} --fail-nth 3\n" in text and f"#2 kalloc run {LEAKY} --fail-nth 2\n" in text


def test_report_to_attach_to_ci_markdown_or_html(tmp_path):
    md, page = tmp_path / "campaign.md", tmp_path / "campaign.html"
    assert campaign(NULL3, LEAKY, "--workers", "1", "--report", str(md)).exit_code == 1
    text = md.read_text()
    assert text.startswith("# kalloc campaign: 2 distinct bug(s)\n")
    assert f"| 1 | cpu-fault | make_label < main < _start | make_label | 1 | `{NULL3}` |" in text
    assert f"```sh\nkalloc run {NULL3} --fail-nth 3\n```" in text
    assert "    0x" in text and "make_label (firmware/tests/campaign_null_third.c:" in text  # the backtrace
    assert campaign(HANDLED, "--workers", "1", "--report", str(page)).exit_code == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "no bug found" in html
    res = campaign(NULL3, "--report", str(tmp_path / "missing" / "r.md"))
    assert res.exit_code == 2 and "--report" in res.stderr  # checked before any run


def test_irq_points_find_the_handler_race():
    status, doc = campaign_json(str(prebuilt("tests/irq_race")), "--irq-points", "40", "--workers", "2")
    assert status == 1 and doc["runs"]["done"] == 40  # irq alone: fail-each is not swept
    [bug] = doc["bugs"]
    assert bug["kind"] == "double-free" and bug["injected_site"] is None and bug["dimension"] == "irq"
    args = bug["reproducer"]["args"]
    assert args[1] == "--irq-at" and len(args) == 3 and bug["reproducer"]["reproduced"]


SEEDED = ["--seeds", "4", "--irq-every", "300", "--irq-jitter", "200", "--workers", "1"]


def test_seeds_run_the_schedule_under_each_seed_and_shrink_it_to_explicit_times():
    irq_race = str(prebuilt("tests/irq_race"))
    status, doc = campaign_json(irq_race, *SEEDED)
    assert status == 1 and doc["runs"]["done"] == 4 and doc["bugs"]
    for bug in doc["bugs"]:
        assert bug["dimension"] == "seeds" and bug["reproducer"]["reproduced"] is True
        assert bug["found_by"][-4:] == ["--irq-every", "300", "--irq-jitter", "200"]  # the seeded run
        args = bug["reproducer"]["args"]
        assert args[1] == "--irq-at" and len(args) == 3  # shrunk: explicit times, no seed, no period
        times = {int(t) for t in args[2].split(",")}
        run = CliRunner().invoke(main, ["run", *bug["found_by"], "--json", "-"], catch_exceptions=False)
        seeded = set(json.loads(run.stdout)["interrupts"]["injected"]["times"])
        assert times < seeded  # a strict subset of the interrupts the seeded run raised
    status, kept = campaign_json(irq_race, *SEEDED, "--no-shrink")
    assert [b["reproducer"]["args"] for b in kept["bugs"]] == [b["found_by"] for b in doc["bugs"]]


def test_irq_points_on_a_firmware_without_a_handler_warn_once():
    res = campaign(NULL3, "--irq-points", "2", "--workers", "1")
    assert res.exit_code == 0
    assert res.stderr == (f"kalloc: warning: {NULL3} never enabled a handler on interrupt line 31, the "
                          "board's test line: its interrupt runs cannot find anything "
                          "(request_irq(kalloc_bootinfo.test_irq, ...) registers one)\n")  # fmt: skip
    assert campaign(NULL3, "--workers", "1", "--max-runs", "1").stderr == ""  # fail-each only: no warning


def test_seeds_without_a_schedule_is_a_usage_error():
    res = campaign(NULL3, "--seeds", "3")
    assert res.exit_code == 2 and "--seeds needs a schedule" in res.output
    res = campaign(NULL3, "--fail-prob", "0.5")  # never silently ignored
    assert res.exit_code == 2 and "are the --seeds schedule: add --seeds S" in res.output


def test_max_runs_and_budget_cut_the_plan():
    status, doc = campaign_json(NULL3, "--max-runs", "2", "--workers", "1")
    assert (status, doc["runs"]["planned"], doc["bugs"]) == (0, 2, [])  # runs 1 and 2: handled
    status, doc = campaign_json(NULL3, "--budget", "0.01", "--workers", "1")  # spent by the baseline
    assert status == 0 and doc["complete"] is False and doc["runs"]["done"] == 0


def test_bad_input_is_one_line_status_3():
    res = campaign(NULL3, "--fail-site", "no_such_function")
    assert res.exit_code == 3 and res.stderr.count("\n") == 1 and "no_such_function" in res.stderr
    res = campaign("/nonexistent/fw.elf")
    assert res.exit_code == 3 and res.stderr.startswith("kalloc: error: firmware")


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("distributed") is not None, reason="Dask is installed"
)
@pytest.mark.parametrize("flag", [["--scheduler", "tcp://127.0.0.1:1"], ["--dask"]])
def test_dask_missing_is_one_line_status_2(flag):
    res = campaign(NULL3, *flag)
    assert res.exit_code == 2 and res.stderr == HINT + "\n"


def test_dask_finds_the_same_signatures_as_the_pool():
    """--dask (a LocalCluster of 2 workers for the campaign) and --scheduler (an existing cluster's
    address; the firmware travels with the tasks): the same JSON bytes as the process pool."""
    distributed = pytest.importorskip("dask.distributed")
    pool = campaign(NULL3, LEAKY, HANDLED, "--workers", "2", "--json", "-")
    dask = campaign(NULL3, LEAKY, HANDLED, "--dask", "--workers", "2", "--json", "-")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        remote = campaign(NULL3, LEAKY, HANDLED, "--scheduler", cluster.scheduler_address, "--json", "-")
    assert (pool.exit_code, dask.exit_code, remote.exit_code) == (1, 1, 1)
    assert pool.stdout == dask.stdout == remote.stdout


def test_ctrl_c_reports_what_the_runs_done_so_far_found():
    irq_race = str(prebuilt("tests/irq_race"))
    # 4,000 runs: far more than 10 s even at rest (400 finished in under 10 s on an idle machine)
    argv = [sys.executable, "-m", "kalloc.cli", "campaign", irq_race, "--irq-points", "4000",
            "--workers", "2"]
    pipe = subprocess.PIPE
    p = subprocess.Popen(argv, stdout=pipe, stderr=pipe, stdin=subprocess.DEVNULL, text=True)
    time.sleep(10)  # the imports and the baseline, then some of the 400 runs
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130
    assert err == "kalloc: interrupted\n"  # no traceback, from the workers either
    if out:  # interrupted during the runs, not the baseline: the summary of the runs done
        assert " of 4000 runs)" in out.splitlines()[0] and "(stopped after " in out.splitlines()[0]


def _pty_stderr(argv: list[str]) -> tuple[int, bytes, bytes]:
    """(status, stdout, stderr) with stderr on a pseudo-terminal."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm"}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read() if p.stdout else b""
    p.wait(timeout=600)
    os.close(master)
    return p.returncode, out, b"".join(chunks)


@pytest.mark.parametrize("tty", [True, False])
def test_progress_on_a_terminal_only(tty):
    argv = [sys.executable, "-m", "kalloc.cli", "campaign", NULL3, "--workers", "1"]
    if tty:
        status, out, err = _pty_stderr(argv)
    else:
        p = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=600)
        status, out, err = p.returncode, p.stdout, p.stderr
    assert status == 1
    assert (b"campaign: runs" in err) is tty
    assert b"campaign: runs" not in out and out.decode().splitlines()[-1].startswith("#1 kalloc run ")
    if not tty:
        assert err == b""


def test_the_reproducer_from_a_relative_path_runs_where_the_campaign_ran(tmp_path):
    rel = os.path.relpath(NULL3, Path.cwd())
    status, doc = campaign_json(rel, "--workers", "1")
    assert status == 1 and doc["bugs"][0]["reproducer"]["args"][0] == rel
