"""Bad inputs (issue 12): output paths, board files, `kalloc bench --board`, the board's name in the JSON.

Every case ends with one line on stderr (`kalloc: error: ...`), no traceback, and a
documented status: 2 for an output path that cannot be written (checked before the run
starts, so nothing is lost), 3 for a board that cannot describe a machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kalloc_machine import memlayout as ml
from kalloc_machine.board import BOARDS_DIR, list_boards, load_board
from kalloc_machine.sdk import prebuilt

from kalloc.cli import main

HELLO = str(prebuilt("tests/hello"))
BOARD = (BOARDS_DIR / "default.toml").read_text()
TRACE = str(BOARDS_DIR.parents[2] / "kalloc" / "replay" / "traces" / "binary.rep")
UNWRITABLE_AS_ROOT = Path("/sys/devices/system/cpu/online")  # sysfs refuses a write open even to root


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_line(res: Result) -> str:
    """The one `kalloc: error:` line of a failed command (and no traceback)."""
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("kalloc: error: ")]
    assert len(errors) == 1, res.output
    return errors[0]


# -- 1. output paths: checked before the run --------------------------------------------------------------


def bad_outputs(tmp: Path) -> dict[str, tuple[str, str]]:
    """path -> (what, expected message fragment) for every kind of unwritable output file."""
    (tmp / "afile").write_text("x")
    out = {
        str(tmp / "missing" / "out.json"): ("a missing directory", "does not exist"),
        str(tmp): ("a directory", "is a directory"),
        str(tmp / "afile" / "out.json"): ("a file as the directory", "is not a directory"),
    }
    if os.geteuid() != 0:
        ro = tmp / "readonly.json"
        ro.write_text("{}")
        ro.chmod(0o444)
        out[str(ro)] = ("a read-only file", "cannot be written")
    elif UNWRITABLE_AS_ROOT.exists():
        out[str(UNWRITABLE_AS_ROOT)] = ("a file even root cannot write", "cannot be written")
    return out


@pytest.mark.parametrize("flag", ["--json", "--record"])
def test_run_rejects_an_unwritable_output_before_running(tmp_path: Path, flag: str) -> None:
    for path, (what, fragment) in bad_outputs(tmp_path).items():
        t0 = time.monotonic()
        res = invoke("run", HELLO, "--board", "default", flag, path)
        assert res.exit_code == 2, (what, res.output)
        line = error_line(res)
        assert line.startswith(f"kalloc: error: {flag} {path}: ") and fragment in line, (what, line)
        assert "hello" not in res.output.lower().replace(HELLO.lower(), "")  # the firmware never ran
        assert time.monotonic() - t0 < 5


def test_replay_rejects_unwritable_json_and_plot_paths(tmp_path: Path) -> None:
    for path, (what, fragment) in bad_outputs(tmp_path).items():
        res = invoke("replay", "--board", "default", "--json", path, TRACE)
        assert res.exit_code == 2, (what, res.output)
        assert fragment in error_line(res), (what, res.output)
    for path in (tmp_path / "afile", tmp_path / "afile" / "sub"):  # a file where the directory goes
        res = invoke("replay", "--board", "default", "--plot", str(path), TRACE)
        assert res.exit_code == 2, res.output
        assert "is not a directory" in error_line(res)


def test_bench_rejects_an_unwritable_json_before_measuring(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = invoke("bench", "--json", str(tmp_path / "missing" / "bench.json"))
    assert res.exit_code == 2
    assert "does not exist" in error_line(res)
    assert time.monotonic() - t0 < 5


def test_stdout_stays_valid_and_a_new_file_in_an_existing_directory_is_written(tmp_path: Path) -> None:
    res = invoke("run", HELLO, "--board", "default", "--json", "-", "-q")
    assert res.exit_code == 0, res.output
    assert '"board": "default"' in res.output
    target = tmp_path / "new.json"
    rec = tmp_path / "trace.ktrace"
    res = invoke("run", HELLO, "--board", "default", "--json", str(target), "--record", str(rec), "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(target.read_text())["end"] == "exit"
    assert rec.read_text().startswith("# kalloc trace v1")
    plots = tmp_path / "plots" / "deep"  # --plot DIR is created with its parents
    res = invoke("replay", "--board", "default", "--json", str(tmp_path / "r.json"), str(rec), "-q")
    assert res.exit_code == 0, res.output
    assert not plots.exists()


# -- 2. boards ---------------------------------------------------------------------------------------


def run_board(tmp: Path, text: str) -> tuple[int, str]:
    board = tmp / "bad.toml"
    board.write_text(text)
    res = invoke("run", HELLO, "--board", str(board))
    return res.exit_code, error_line(res)


def test_a_misspelled_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    text = BOARD.replace('attributes = ["dma"]', 'attribute = ["dma"]')
    status, line = run_board(tmp_path, text)
    assert status == 3
    assert "ram bank 'dma': unknown key 'attribute' (did you mean 'attributes'?)" in line
    status, line = run_board(tmp_path, BOARD.replace("test_irq = 31", "test_iqr = 31"))
    assert status == 3 and "unknown key 'test_iqr' (did you mean 'test_irq'?)" in line
    status, line = run_board(tmp_path, BOARD.replace("[cpu]", "[cpu]\nquantom = 5"))
    assert status == 3 and "[cpu]: unknown key 'quantom' (did you mean 'quantum'?)" in line
    status, line = run_board(tmp_path, "devise = 1\n" + BOARD)
    assert status == 3 and "unknown key 'devise' (did you mean 'device'?)" in line


def test_an_unknown_key_lists_the_valid_ones(tmp_path: Path) -> None:
    status, line = run_board(tmp_path, BOARD.replace('name = "uart0"', 'name = "uart0"\nbaudrate = 115200'))
    assert status == 3
    assert "device 'uart0': unknown key 'baudrate' (known: name, type, base, size, irq)" in line


def drop_device(text: str, type_: str) -> str:
    blocks = text.split("[[device]]")
    kept = [b for b in blocks[1:] if f'type = "{type_}"' not in b]
    return "[[device]]".join([blocks[0], *kept])


@pytest.mark.parametrize("type_", ["clint", "intc", "uart"])
def test_a_board_without_a_device_the_sdk_needs_is_rejected(tmp_path: Path, type_: str) -> None:
    text = drop_device(BOARD, type_)
    if type_ == "intc":  # the dma line needs an intc: drop the dma device too
        text = drop_device(text, "dma")
    status, line = run_board(tmp_path, text)
    assert status == 3
    assert f"no {type_} device: every SDK firmware needs one" in line, line


def move_dma(text: str, base: int) -> str:
    return text.replace("base = 0x1000_1000", f"base = {base:#x}")


@pytest.mark.parametrize(("base", "fragment"), [
    (0, "overlaps the null guard"),
    (0x1000, "overlaps the null guard"),
    (ml.VMALLOC_START, "overlaps the vmalloc/arena windows"),
    (0xE000_0000, "overlaps the vmalloc/arena windows"),
    (ml.DOORBELL_BASE, "overlaps the hypercall doorbells"),
    (ml.IDLE_SLED_BASE, "overlaps the idle sled"),
    (0x8000_0000, "overlaps RAM bank 'dma'"),
])  # fmt: skip
def test_a_device_in_a_reserved_window_is_rejected(tmp_path: Path, base: int, fragment: str) -> None:
    status, line = run_board(tmp_path, move_dma(BOARD, base))
    assert status == 3
    assert fragment in line, line


def test_a_device_may_move_the_sdk_reads_its_base_from_bootinfo(tmp_path: Path) -> None:
    board = tmp_path / "moved.toml"
    board.write_text(BOARD.replace("base = 0x1000_0000", "base = 0x1000_4000"))  # the uart
    res = invoke("run", HELLO, "--board", str(board), "-q")
    assert res.exit_code == 0, res.output
    assert "hello, world" in res.output


def test_the_shipped_boards_still_load_and_run() -> None:
    names = [n for n, _ in list_boards()]
    assert {"default", "tiny", "big"} <= set(names)
    for name in names:
        assert load_board(name).label == name
    res = invoke("run", HELLO, "--board", "default", "-q")
    assert res.exit_code == 0, res.output


# -- 3. kalloc bench --board bad.toml ---------------------------------------------------------------


def test_bench_with_a_bad_board_is_one_line_and_status_3(tmp_path: Path) -> None:
    board = tmp_path / "bad.toml"
    board.write_text(BOARD.replace('attributes = ["dma"]', 'attribute = ["dma"]'))
    for bad in (str(board), "no-such-board", str(tmp_path / "x.toml")):
        t0 = time.monotonic()
        res = invoke("bench", "--quick", "--board", bad)
        assert res.exit_code == 3, res.output
        error_line(res)
        assert time.monotonic() - t0 < 5


# -- 4. the board's name in the JSON -------------------------------------------------------------------


def test_json_names_a_board_file_by_name_and_digest_never_by_host_path(tmp_path: Path) -> None:
    digest = hashlib.sha256(BOARD.encode()).hexdigest()[:8]
    reports = []
    for where in ("a", "b/c"):
        path = tmp_path / where / "myboard.toml"
        path.parent.mkdir(parents=True)
        path.write_text(BOARD)
        res = invoke("run", HELLO, "--board", str(path), "--json", "-", "-q")
        assert res.exit_code == 0, res.output
        assert str(tmp_path) not in res.stdout
        reports.append(res.stdout)
        doc = json.loads(res.stdout)
        assert doc["options"]["board"] == f"default@sha256:{digest}"
        assert re.fullmatch(r"default@sha256:[0-9a-f]{8}", doc["options"]["board"])
    assert reports[0] == reports[1]  # the same board file anywhere: the same bytes
    res = invoke("replay", "--board", str(tmp_path / "a" / "myboard.toml"), "--json", "-", "-q", TRACE)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["board"] == f"default@sha256:{digest}"


def test_a_shipped_board_by_name_keeps_its_name() -> None:
    res = invoke("run", HELLO, "--board", "default", "--json", "-", "-q")
    assert json.loads(res.stdout)["options"]["board"] == "default"


def test_a_huge_or_binary_board_file_is_one_line_and_status_3(tmp_path: Path) -> None:
    status, line = run_board(tmp_path, "#" * (2 << 20))
    assert status == 3 and "a board file is at most 1048576 (not read)" in line
    status, line = run_board(tmp_path, "x = " + "[" * 5000)
    assert status == 3 and "bad TOML" in line
    status, line = run_board(tmp_path, BOARD.replace('name = "default"', 'name = "two\\nlines"'))
    assert status == 3 and "must be one line of printable text" in line
