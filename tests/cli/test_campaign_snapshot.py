"""Campaign runs restored from a snapshot of the machine booted to main instead of booted (issue 15):
exact — the campaign's output is the same bytes with and without (`--no-snapshot`), and a restored
run's report is a booted run's (Unicorn's TLB counter aside) — and used only where exact."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools import campaign_snapshot
from kalloc_machine.tools.harness import comparable

from kalloc.cli import main

NULL3, LEAKY, DEMO, IRQ_ALLOC = (str(prebuilt(f"tests/campaign_{n}"))
                                 for n in ("null_third", "leak_path", "demo", "irq_alloc"))  # fmt: skip
RACE, LEAK = str(prebuilt("tests/irq_race")), str(prebuilt("tests/leak"))


def _campaign(*args: str) -> tuple[int, str, str]:
    argv = ["campaign", *args, "--workers", "1", "--json", "-"]
    res = CliRunner().invoke(main, argv, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("args", [
    [NULL3, LEAKY, LEAK, "--fail-each", "--depth", "2"],
    [RACE, IRQ_ALLOC, "--irq-points", "20", "--irq-allocs", "--fail-each"],
    [RACE, "--seeds", "3", "--irq-every", "300", "--irq-jitter", "200"],  # seeded runs always boot
])  # fmt: skip
def test_the_campaign_is_the_same_bytes_with_and_without_snapshots(args):
    before = dict(campaign_snapshot.stats)
    restored = _campaign(*args)
    used = campaign_snapshot.stats["restores"] - before["restores"]
    middle = dict(campaign_snapshot.stats)
    booted = _campaign(*args, "--no-snapshot")
    assert restored == booted and restored[0] == 1  # status, JSON and text: the same bytes
    assert campaign_snapshot.stats["restores"] == middle["restores"]  # --no-snapshot restores nothing
    assert (used > 0) == ("--seeds" not in args)  # runs with a random schedule boot


@pytest.mark.parametrize("change", [{"fail_nth": (3,)}, {"fail_nth": (2, 3), "fail_site": "make_label"},
                                    {"irq_at": (3936,)}, {}])  # fmt: skip
def test_a_restored_run_reports_what_a_booted_run_reports(change):
    fw = RACE if "irq_at" in change else NULL3
    options = dataclasses.replace(RunOptions(firmware=fw), **change)
    restored = campaign_snapshot.restored(options)
    assert restored is not None
    booted = Session(options).run()
    assert comparable(restored.report) == comparable(booted.report)
    assert restored.exit_status == booted.exit_status


def test_not_exact_is_not_restored():
    booted_at = campaign_snapshot.restored(RunOptions(firmware=RACE, irq_at=(10_000,)))
    assert booted_at is not None  # after main: restored
    assert campaign_snapshot.restored(RunOptions(firmware=RACE, irq_at=(5,))) is None  # before main
    assert campaign_snapshot.restored(RunOptions(firmware=RACE, irq_every=300)) is None  # a random schedule
    assert campaign_snapshot.restored(RunOptions(firmware=NULL3, fail_prob=0.5)) is None
