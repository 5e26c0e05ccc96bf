"""`kalloc explore`: the unperturbed run first, the test-line warning, a reproducer that
reproduces, and a one-line answer when Hypothesis is missing.

Real firmware on the real machine: tests/double_free fails with no perturbation at
all; tests/null_check never registers a handler on the board's test line (so
interrupt schedules change nothing) but crashes when its one allocation fails;
tests/irq_race registers one and double-frees under one well-placed interrupt.
Each command is a real process (`python -m kalloc.cli`), the reproducer included.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.tools.explore import AlreadyFails, baseline, explore

ROOT = Path(__file__).resolve().parents[2]
NO_HYPOTHESIS = "import sys; sys.modules['hypothesis'] = None; from kalloc.cli import main; main()"
WARNING = "never enabled a handler on interrupt line 31"


def kalloc(*args: str, prelude: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, *(["-c", prelude] if prelude else ["-m", "kalloc.cli"]), *args]
    env = {**os.environ, "COLUMNS": "80"}  # a narrow terminal's width: one line a fact, still
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env,
                          timeout=900)  # fmt: skip


def fw(name: str) -> str:
    return str(prebuilt(f"tests/{name}"))


def test_a_firmware_that_already_fails_is_said_so_with_its_own_status():
    p = kalloc("explore", fw("double_free"))
    assert p.returncode == 4, p.stderr
    assert p.stdout == ""  # not "no failing run", not a reproducer
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("kalloc explore: the firmware already fails without any perturbation: "
                               "double-free at main (firmware/tests/double_free.c:16); fix that first, "
                               f"or run `kalloc run {fw('double_free')}`")  # fmt: skip
    assert WARNING not in p.stderr and "Traceback" not in p.stderr


def test_the_unperturbed_run_it_names_is_the_failure():
    p = kalloc("explore", fw("double_free"), "--fail", "--no-irq")
    assert p.returncode == 4
    command = p.stderr.split("`")[1]
    assert command.startswith("kalloc run ")
    run = kalloc(*shlex.split(command)[1:], "--json", "-")
    assert run.returncode == 64
    assert json.loads(run.stdout)["errors"][0]["kind"] == "double-free"


def test_the_api_raises_already_fails_with_the_run():
    with pytest.raises(AlreadyFails) as info:
        explore(fw("double_free"), max_examples=5)
    assert info.value.baseline.outcome.exit_status == 64
    assert "double-free at main" in str(info.value)


def test_handled_is_the_machines_fact():
    assert baseline(fw("irq_race")).handled is True  # request_irq(kalloc_bootinfo.test_irq, ...)
    clean = baseline(fw("null_check"))
    assert clean.handled is False and clean.test_line == 31


def test_warns_when_the_firmware_has_no_handler_on_the_perturbed_line():
    p = kalloc("explore", fw("null_check"), "--examples", "5")
    assert p.returncode == 0
    warnings = [line for line in p.stderr.splitlines() if WARNING in line]
    assert len(warnings) == 1 and warnings[0].startswith("kalloc: warning: ")
    assert "--fail --no-irq" in warnings[0]


def test_no_warning_when_the_line_is_handled_or_not_perturbed():
    p = kalloc("explore", fw("null_check"), "--fail", "--no-irq", "--examples", "20")
    assert p.returncode == 1 and WARNING not in p.stderr
    p = kalloc("explore", fw("irq_race"), "--examples", "60")
    assert p.returncode == 1 and WARNING not in p.stderr


@pytest.mark.parametrize(
    ("name", "flags", "kind"),
    [("irq_race", [], "double-free"), ("null_check", ["--fail", "--no-irq"], "cpu-fault")],
)
def test_the_printed_reproducer_reproduces(name, flags, kind):
    p = kalloc("explore", fw(name), "--examples", "100", *flags)
    assert p.returncode == 1, p.stderr
    summary, command = p.stdout.splitlines()[-2:]
    assert kind in summary
    status = int(summary.split("status ")[1].split(",")[0])
    assert status in (64, 65)
    assert command.startswith(f"kalloc run {fw(name)} ")
    assert ("--irq-at" in command) is (name == "irq_race")
    assert ("--fail-nth" in command) is (name == "null_check")
    run = kalloc(*shlex.split(command)[1:], "--json", "-")
    assert run.returncode == status, run.stderr
    assert kind in [e["kind"] for e in json.loads(run.stdout)["errors"]]


def test_without_hypothesis_one_line_and_status_2():
    p = kalloc("explore", fw("irq_race"), prelude=NO_HYPOTHESIS)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.splitlines() == [
        "kalloc: error: explore needs Hypothesis, which is not installed: pip install 'kalloc[explore]'"
    ]


def test_the_explore_extra_exists_and_the_test_extra_keeps_hypothesis():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("hypothesis") for dep in extras["explore"])
    assert any(dep.startswith("hypothesis") for dep in extras["test"])


def test_the_exit_statuses_are_documented():
    help_text = kalloc("explore", "--help").stdout
    assert "4 the firmware already fails" in " ".join(help_text.split())
    assert "pip install 'kalloc[explore]'" in " ".join(help_text.split())
    abi = (ROOT / "docs" / "abi.md").read_text()
    section = abi.split("## Exit codes of `kalloc explore`")[1].split("\n## ")[0]
    for status in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |"):
        assert status in section
    assert "already fails" in section
