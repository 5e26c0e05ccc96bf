"""The `kalloc` command line: its commands, options, exit statuses and the JSON it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from kalloc.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_boards_lists_the_shipped_boards():
    res = invoke("boards")
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines() if line.strip()]
    assert {"default", "tiny", "big"} <= set(names)


def test_sdk_names_the_sdk_directory():
    res = invoke("sdk")
    path = Path(res.output.strip())
    assert (path / "include" / "kalloc.h").is_file()
    assert (path / "Makefile").is_file()


def test_run_default_writes_json_to_stdout():
    proc = subprocess.run(
        [sys.executable, "-m", "kalloc.cli", "run", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    for key in ("exit_code", "uart", "instructions", "errors", "allocator", "buddyinfo", "slabinfo", "leaks"):
        assert key in report
    assert report["exit_code"] == 0
    assert "kalloc report" in proc.stderr  # the text report went to stderr


def test_run_json_to_file(tmp_path):
    out = tmp_path / "r.json"
    res = invoke("run", "--quiet", "--json", str(out))
    assert res.exit_code == 0
    report = json.loads(out.read_text())
    assert report["end"] == "exit"
    assert str(tmp_path) not in out.read_text()  # no host paths in the JSON


def test_not_an_elf_is_bad_input(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    res = invoke("run", str(bogus))
    assert res.exit_code == 3
    assert "Traceback" not in res.output
    assert "notes.txt" in res.output


def test_elf_for_another_architecture_is_bad_input():
    res = invoke("run", sys.executable if Path(sys.executable).is_file() else "/bin/ls")
    assert res.exit_code == 3
    assert "Traceback" not in res.output


def test_missing_firmware_is_bad_input(tmp_path):
    res = invoke("run", str(tmp_path / "nope.elf"))
    assert res.exit_code == 3


def test_unknown_board_is_bad_input():
    res = invoke("run", "--board", "no-such-board")
    assert res.exit_code == 3
    assert "no-such-board" in res.output


def test_overlapping_banks_board_is_bad_input(tmp_path):
    board = tmp_path / "bad.toml"
    board.write_text(
        'name = "bad"\ndescription = "overlapping banks"\n'
        '[[ram]]\nname = "a"\nbase = 0x80000000\nsize = 0x100000\nattributes = ["dma"]\n'
        '[[ram]]\nname = "b"\nbase = 0x80080000\nsize = 0x100000\n'
    )
    res = invoke("run", "--board", str(board))
    assert res.exit_code == 3
    assert "overlap" in res.output


def test_unknown_option_value_is_a_usage_error():
    res = invoke("run", "--sanitize", "bogus")
    assert res.exit_code == 2


def test_explore_prints_a_minimal_reproducer():
    from kalloc_machine.sdk import prebuilt

    res = CliRunner().invoke(main, ["explore", str(prebuilt("tests/irq_race")), "--examples", "100"])
    assert res.exit_code == 1, res.output
    command = [ln for ln in res.output.splitlines() if ln.startswith("kalloc run ")]
    assert command and "--irq-at" in command[0]


def test_explore_bad_firmware_is_bad_input(tmp_path):
    res = invoke("explore", str(tmp_path / "missing.elf"))
    assert res.exit_code == 3


def test_every_command_is_listed():
    res = invoke("--help")
    for command in ("run", "replay", "explore", "bench", "boards", "sdk"):
        assert f"  {command} " in res.output


def test_list_option_usage_errors_name_the_option():
    res = invoke("run", "--irq-at", "x")
    assert res.exit_code == 2
    assert "Invalid value for '--irq-at': 'x' is not a comma-separated list of instruction" in res.output
    res = invoke("run", "--fail-nth", "0")
    assert res.exit_code == 2
    assert "Invalid value for --fail-nth: requests are counted from 1" in res.output


def test_a_reproducers_arguments_rebuild_its_run_options(monkeypatch):
    # explore prints run_args(options) as a `kalloc run` line: it must mean the same options
    from kalloc_machine.session import BadInput, RunOptions
    from kalloc_machine.tools.options import RUN_OPTIONS, run_args

    import kalloc.cli.run as run_module

    seen = []

    def session(options):
        seen.append(options)
        raise BadInput("recorded")

    monkeypatch.setattr(run_module, "Session", session)
    opts = RunOptions(firmware="a.elf", board="tiny", seed=3, sanitize="kasan", heap="slab", quantum=500,
                      max_instructions=10**6, irq_every=7, irq_jitter=2, irq_at=(5, 9), quarantine=4096,
                      fail_nth=(2, 4), fail_prob=0.5, fail_site="f", fail_context="irq",
                      fail_cache="c")  # fmt: skip
    res = invoke("run", *run_args(opts))
    assert res.exit_code == 3 and seen == [opts]
    assert all(spec.flag in invoke("run", "--help").output for spec in RUN_OPTIONS.values())
