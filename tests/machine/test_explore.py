"""kalloc_machine.tools.explore: a real timing bug (firmware/tests/irq_race.c) found, shrunk, and reproduced.

The reproducer is checked the way a user would use it: the printed `kalloc run …`
command's arguments are run through the command line, and its report must be the one
the search saw.
"""

from __future__ import annotations

import json
import shlex

from click.testing import CliRunner
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.explore import explore, run_args

from kalloc.cli import main


def _cli_report(args: list[str], tmp_path) -> tuple[int, dict]:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["run", *args, "-q", "--json", str(out)])
    return result.exit_code, json.loads(out.read_text())


def test_irq_race_is_clean_without_interrupts():
    out = Session(RunOptions(firmware=str(prebuilt("tests/irq_race")))).run()
    assert out.exit_status == 0, out.report["errors"]


def test_explore_finds_shrinks_and_the_command_reproduces(tmp_path):
    fw = str(prebuilt("tests/irq_race"))
    found = explore(fw, max_examples=200, seed=0)
    assert found is not None
    assert len(found.irq_at) == 1  # shrunk to one interrupt
    assert found.fail_nth == ()
    assert "double-free" in found.kinds()
    assert found.outcome.exit_status == 64
    command = found.command()
    assert command.startswith("kalloc run ") and "--irq-at" in command
    argv = shlex.split(command)[2:]
    status, report = _cli_report(argv, tmp_path)
    assert status == 64
    assert dumps(report) == dumps(found.outcome.report)  # byte for byte what the search saw
    # minimal: without its one interrupt the run is clean
    assert _cli_report([fw], tmp_path)[0] == 0


def test_explore_fault_injection_finds_the_missing_null_check(tmp_path):
    fw = str(prebuilt("tests/null_check"))
    found = explore(fw, irq=False, fail=True, max_examples=100)
    assert found is not None
    assert len(found.fail_nth) == 1 and found.irq_at == ()
    assert found.outcome.exit_status == 65
    status, report = _cli_report(shlex.split(found.command())[2:], tmp_path)
    assert status == 65 and "cpu-fault" in [e["kind"] for e in report["errors"]]


def test_run_args_only_what_differs():
    assert run_args(RunOptions(firmware="a.elf")) == ["a.elf"]
    assert run_args(RunOptions(firmware="a.elf", board="tiny", irq_at=(5, 9), fail_nth=(2,))) == [
        "a.elf", "--board", "tiny", "--irq-at", "5,9", "--fail-nth", "2"]
