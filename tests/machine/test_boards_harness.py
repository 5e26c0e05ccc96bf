"""The test harness and the pytest plugin on both machines: RV32 (board default) and Cortex-M4 (stm32f4).

The harness's call stops and the MMU's fault sink are laid out in the machine's own idle-sled
window (sled.py: 0xF800_0000 on RV32, 0x7800_0000 on Cortex-M, whose M-profile never executes
above 0xE000_0000), so `Target.call` returns on both. Firmware: firmware/tests/call_targets.c
(make_buffer mallocs on the test's behalf) and uaf_then_double_free.c, the same C sources built
for each ISA (firmware/build/tests/ and firmware/build/armv7m/tests/).
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from kalloc_machine.memlayout import IDLE_SLED_SIZE
from kalloc_machine.session import RunOptions
from kalloc_machine.tools.harness import Target

pytest_plugins = ["pytester"]
BOARDS = {"default": 0xF800_0000, "stm32f4": 0x7800_0000}  # board -> its ISA's sled base


@pytest.fixture(params=sorted(BOARDS))
def board(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _target(board: str, firmware: str = "tests/call_targets") -> Target:
    fw = Target(RunOptions(firmware=firmware, board=board))  # a shipped name: the board's ISA's ELF
    fw.run_to("main")
    return fw


def test_call_stops_and_fault_sink_are_the_machines_sleds(board: str) -> None:
    fw = _target(board)
    sled, base = fw.machine.sled, BOARDS[board]
    assert sled.base == base
    assert (fw.call_sites.lo, fw.call_sites.hi) == sled.call_stops == (base + IDLE_SLED_SIZE // 2,
                                                                       sled.fault_sink)  # fmt: skip
    assert sled.fault_sink == base + IDLE_SLED_SIZE - 0x1000
    assert not sled.holds(fw.call_sites.lo)  # the sled never runs its call stops


def test_call_returns_and_its_allocation_is_charged_to_the_test(board: str) -> None:
    fw = _target(board)
    before = fw.instructions
    p = fw.call("make_buffer", 24)
    assert fw.phys.bank_of(p) is not None and fw.read(p, 24) == b"k" * 24
    assert fw.instructions > before
    fw.call("drop_buffer", p)
    fw.call("make_buffer", 8)  # never freed: a leak at the end, charged to this line
    report = fw.finish().report
    (leak,) = [e for e in report["errors"] if e["kind"] == "leak"]
    trace = leak["backtrace"]
    assert trace[0]["symbol"] == "make_buffer" and trace[0]["file"] == "firmware/tests/call_targets.c"
    assert trace[-1] == {"pc": None, "symbol": "test_call_returns_and_its_allocation_is_charged_to_the_test",
                         "file": "test_boards_harness.py", "line": trace[-1]["line"]}  # fmt: skip
    assert report["isa"] == ("armv7m" if board == "stm32f4" else "rv32imac")


def test_a_call_into_a_bug_reports_it_with_the_firmware_lines(board: str) -> None:
    fw = _target(board, "tests/uaf_then_double_free")
    p = fw.ka.kmalloc(40, 0)  # the allocator driven from Python, then the firmware's free()
    assert p is not None
    fw.call("free_again", p)
    (err,) = fw.take_errors()
    assert err["kind"] == "invalid-free" and "wrong API pair" in err["message"]
    where = {"file": "firmware/tests/uaf_then_double_free.c", "line": 19}
    assert (err["symbol"], err["location"]) == ("free_again", where)
    assert err["backtrace"][-1]["symbol"] == "test_a_call_into_a_bug_reports_it_with_the_firmware_lines"


PLUGIN_USER = """
    from kalloc_machine.tools.pytest_plugin import assert_errors

    def test_buffer(kalloc_target):
        fw = kalloc_target("tests/call_targets", until="main")
        p = fw.call("make_buffer", 16)
        assert fw.read(p, 16) == b"k" * 16
        fw.call("drop_buffer", p)
        assert fw.report()["isa"] == {isa!r}

    def test_wrong_pair(kalloc_target):
        fw = kalloc_target("tests/uaf_then_double_free", until="main")
        p = fw.ka.kmalloc(40, 0)  # the allocator driven from Python
        fw.call("free_again", p)   # free() of a kmalloc: the test does not look, the plugin fails it

    def test_whole_run(kalloc_run):
        assert_errors(kalloc_run("tests/double_free"), exact=["double-free"])
"""


def test_the_plugin_runs_the_same_suite_on_either_board(pytester: pytest.Pytester, board: str) -> None:
    isa = "armv7m" if board == "stm32f4" else "rv32imac"
    pytester.makepyfile(test_user=textwrap.dedent(PLUGIN_USER.format(isa=isa)))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    result = pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", "--kalloc-board", board)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "test_wrong_pair" in out and "ERROR invalid-free" in out
    assert "free_again (firmware/tests/uaf_then_double_free.c:19)" in out
    assert "called from test_wrong_pair (test_user.py:13)" in out  # the frame the harness adds
    assert f"on board {board}" in out


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no ARM cross toolchain")
def test_kalloc_lab_grades_an_allocator_built_for_cortex_m(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from kalloc_machine.sdk import sdk_dir

    from kalloc.cli import main
    from kalloc.replay import TRACES_DIR

    elf = tmp_path / "implicit.elf"
    src = sdk_dir() / "lab" / "examples" / "implicit.c"
    make = ["make", "-s", "-C", str(sdk_dir()), "ARCH=armv7m", "LAB=1", f"APP={src}", f"OUT={elf}"]
    subprocess.run(make, check=True, capture_output=True, timeout=300)
    trace = str(TRACES_DIR / "short-lived.rep")
    res = CliRunner().invoke(main, ["lab", "--board", "stm32f4", "--heap-max", "64K", str(elf), trace])
    assert res.exit_code == 0, res.output
    assert "short-lived.rep" in res.output and " ok " in res.output
