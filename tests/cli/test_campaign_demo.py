"""`kalloc campaign` on a driver with three seeded bugs (firmware/tests/campaign_demo.c): it finds
exactly those three signatures, each with a reproducer that reproduces as a real `kalloc run`;
the fixed driver (campaign_demo_fixed.c, the teaching exercise's solution) has none.

  1. dev_name() dereferences an unchecked kmalloc      -> cpu-fault, `--fail-nth 4`
  2. open_channel() leaks when its 2nd buffer fails     -> leak, `--fail-nth 3`
  3. push() races the test line's handler on the ring  -> double-free, `--irq-at T`
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from click.testing import CliRunner
from kalloc_machine.sdk import prebuilt

from kalloc.cli import main

DEMO, FIXED = str(prebuilt("tests/campaign_demo")), str(prebuilt("tests/campaign_demo_fixed"))
SWEEP = ["--fail-each", "--depth", "2", "--irq-points", "40", "--workers", "2"]


def test_the_campaign_finds_exactly_the_three_seeded_bugs_and_each_reproducer_reproduces():
    res = CliRunner().invoke(main, ["campaign", DEMO, *SWEEP, "--json", "-"], catch_exceptions=False)
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    found = {(b["kind"], b["frames"][0], b["injected_site"], b["dimension"]) for b in doc["bugs"]}
    assert found == {
        ("cpu-fault", "dev_name", "dev_name", "fail-each"),
        ("leak", "open_channel", "open_channel", "fail-each"),
        ("double-free", "drain_all", None, "irq"),
    }
    assert len(doc["bugs"]) == 3
    by_kind = {b["kind"]: b for b in doc["bugs"]}
    assert by_kind["cpu-fault"]["reproducer"]["args"][1:] == ["--fail-nth", "4"]
    assert by_kind["leak"]["reproducer"]["args"][1:] == ["--fail-nth", "3"]
    assert by_kind["double-free"]["reproducer"]["args"][1] == "--irq-at"
    statuses = {"cpu-fault": 65, "leak": 64, "double-free": 64}
    for bug in doc["bugs"]:
        assert bug["reproducer"]["reproduced"] is True
        args = shlex.split(bug["reproducer"]["command"])[1:]  # what a user pastes, after `kalloc`
        argv = [sys.executable, "-m", "kalloc.cli", *args, "--json", "-"]
        p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
        assert p.returncode == statuses[bug["kind"]], p.stderr
        assert json.loads(p.stdout) == bug["report"]


def test_the_fixed_driver_survives_every_allocation_failure_and_interrupt_point():
    res = CliRunner().invoke(main, ["campaign", FIXED, *SWEEP], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "no bug found" in res.stdout and "87 run(s) planned" in res.stdout
