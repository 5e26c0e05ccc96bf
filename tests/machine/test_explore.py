"""kalloc_machine.tools.explore: a real timing bug (firmware/tests/irq_race.c) found, shrunk, and reproduced.

The reproducer is checked the way a user would use it: the printed `kalloc run …`
command's arguments are run through the command line, and its report must be the one
the search saw.
"""

from __future__ import annotations

import shlex

from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.explore import explore, run_args


def test_irq_race_is_clean_without_interrupts():
    out = Session(RunOptions(firmware=str(prebuilt("tests/irq_race")))).run()
    assert out.exit_status == 0, out.report["errors"]


def test_explore_finds_shrinks_and_the_command_reproduces(cli_report):
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
    status, report = cli_report(*argv)
    assert status == 64
    assert dumps(report) == dumps(found.outcome.report)  # byte for byte what the search saw
    # minimal: without its one interrupt the run is clean
    assert cli_report(fw)[0] == 0


def test_explore_fault_injection_finds_the_missing_null_check(cli_report):
    fw = str(prebuilt("tests/null_check"))
    found = explore(fw, irq=False, fail=True, max_examples=100)
    assert found is not None
    assert len(found.fail_nth) == 1 and found.irq_at == ()
    assert found.outcome.exit_status == 65
    status, report = cli_report(*shlex.split(found.command())[2:])
    assert status == 65 and "cpu-fault" in [e["kind"] for e in report["errors"]]


def test_run_args_only_what_differs():
    assert run_args(RunOptions(firmware="a.elf")) == ["a.elf"]
    assert run_args(RunOptions(firmware="a.elf", board="tiny", irq_at=(5, 9), fail_nth=(2,))) == [
        "a.elf", "--board", "tiny", "--irq-at", "5,9", "--fail-nth", "2"]
