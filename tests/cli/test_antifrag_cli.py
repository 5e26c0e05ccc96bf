"""`--antifrag` on kalloc replay and kalloc run (issue 18): the options, their JSON, tags from firmware."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kalloc.cli import main

DATA = Path("tests/data/antifrag")


def test_replay_option_json_and_run_option(tmp_path, cli_report):
    args = ["replay", str(DATA / "levels.trace"), "--board", str(DATA / "onemib.toml"), "--heap", "slab",
            "--probe", "128KiB", "--json", "-", "-q"]  # fmt: skip
    r = CliRunner().invoke(main, [*args, "--antifrag", "mobility"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["options"]["antifrag"] == "mobility"
    (rep,) = doc["replays"]
    assert rep["antifrag"]["mode"] == "mobility" and rep["forecast"]["probes"][0]["cliff_step"] is None
    plain = json.loads(CliRunner().invoke(main, args).stdout)
    assert "antifrag" not in plain["options"] and "antifrag" not in plain["replays"][0]
    # a live run: the firmware's tags choose the arenas (tags_budgets.c pushes audio, voice, irq, net)
    status, report = cli_report("firmware/build/tests/tags_budgets.elf", "--antifrag", "tag-arenas")
    assert status == 0
    kinds = report["antifrag"]["pageblocks_by_type"]
    assert {"audio", "irq", "net", "voice"} <= set(kinds)
    _status, plain_run = cli_report("firmware/build/tests/tags_budgets.elf")
    assert "antifrag" not in plain_run
