"""Stack overflows on the real machine (issue 12): the guard below the stack, the report, the size.

The SDK's link.ld puts a 4 KiB guard between .bss and the stack; the machine watches it
with one ranged memory hook (kalloc_machine/bridge/stackguard.py) and ends the run with a
`stack-overflow` error (exit status 65) at the first access, before anything below the
guard is written. Firmware: firmware/tests/hostile_stack_*.c.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kalloc_machine.board import load_board
from kalloc_machine.bridge import stackguard
from kalloc_machine.elf import load_firmware
from kalloc_machine.machine import Machine
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt, sdk_dir
from kalloc_machine.session import BadInput, RunOptions, Session

from kalloc.gfp import GFP_KERNEL

CANARY = 0x5AC0FFEE
WALL_BOUND_S = 20.0
FIRMWARE_TESTS = Path(__file__).resolve().parents[2] / "firmware" / "tests"
needs_toolchain = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None,
                                     reason="cross toolchain not installed")  # fmt: skip


def run(name: str, **options: object) -> tuple[Session, dict, int, float]:
    t0 = time.monotonic()
    s = Session(RunOptions(firmware=str(prebuilt(name)), **options))  # type: ignore[arg-type]
    out = s.run()
    return s, out.report, out.exit_status, time.monotonic() - t0


def u32(s: Session, symbol: str, index: int = 0) -> int:
    addr = s.firmware.symbol_addr(symbol)
    assert addr is not None, symbol
    return s.machine.phys.read_u32(addr + 4 * index)


def assert_allocator_sound(s: Session) -> None:
    """Nothing below the guard was written, and the allocator still works and checks clean."""
    assert [u32(s, "canary", i) for i in range(16)] == [CANARY] * 16
    p = s.ka.kmalloc(64, GFP_KERNEL)
    assert p is not None
    s.ka.kfree(p)
    s.ka.check()
    s.vm.check()


def test_runaway_recursion_in_task_context_is_one_stack_overflow() -> None:
    s, report, status, wall = run("tests/hostile_stack_task")
    assert wall < WALL_BOUND_S
    assert status == 65 and report["end"] == "fault"
    assert "recursing" in report["uart"] and "never printed" not in report["uart"]
    (err,) = report["errors"]  # no bogus invalid-context, no cpu-fault in unrelated code
    assert err["kind"] == "stack-overflow" and err["severity"] == "error"
    assert err["symbol"] == "runaway"
    assert err["location"]["file"] == "firmware/tests/hostile_stack_task.c"
    assert [f["symbol"] for f in err["backtrace"][:4]] == ["runaway"] * 4
    stack = err["stack"]
    assert stack["context"] == "task" and stack["size"] == 256 << 10
    assert stack["used"] == stack["top"] - stack["sp"] > stack["size"]
    assert stack["repeated"]["symbol"] == "runaway" and stack["repeated"]["frames"] > 1000
    assert stack["guard"] <= err["access"]["addr"] < stack["bottom"]
    assert err["access"]["type"] == "write" and err["registers"]["sp"] == stack["sp"]
    assert "stack overflow in runaway" in err["message"] and f"{stack['used']} bytes in use" in err["message"]
    origin = [f["symbol"] for f in err["origin_site"]["backtrace"]]  # where the deep call began
    assert origin[-2:] == ["main", "_start"] and origin[0] == "runaway"
    assert u32(s, "kalloc_irq_depth") == 0
    assert_allocator_sound(s)


def test_overflow_inside_an_interrupt_handler_is_caught_by_the_same_guard() -> None:
    s, report, status, wall = run("tests/hostile_stack_irq")
    assert wall < WALL_BOUND_S
    assert status == 65 and report["end"] == "fault"
    (err,) = report["errors"]
    assert err["kind"] == "stack-overflow" and err["symbol"] == "irq_runaway"
    assert err["stack"]["context"] == "interrupt"
    assert "(interrupt handler)" in err["message"]
    origin = [f["symbol"] for f in err["origin_site"]["backtrace"]]
    assert origin[-5:] == ["on_timer", "__kalloc_trap", "kalloc_trap_vector", "main", "_start"]
    assert report["interrupts"]["context_allocations"]  # the handler's GFP_ATOMIC kmalloc was served
    assert u32(s, "kalloc_irq_depth") == 1  # inside the handler, and intact
    assert_allocator_sound(s)


def test_a_wild_pointer_into_the_guard_says_so() -> None:
    s, report, status, _ = run("tests/hostile_stack_wild")
    assert status == 65
    (err,) = report["errors"]
    assert err["kind"] == "stack-overflow" and err["symbol"] == "scribble"
    assert "wild pointer below the stack" in err["message"]
    assert err["stack"]["used"] < 256
    s.ka.check()


def test_deep_but_bounded_recursion_runs_clean_with_the_default_stack() -> None:
    # cJSON-shaped parser, 1000 nested arrays (CJSON_NESTING_LIMIT): ~128 KiB of stack
    _, report, status, wall = run("tests/hostile_stack_nesting")
    assert status == 0, report["errors"]
    assert report["errors"] == []
    assert "1000 nested arrays parsed and printed back: same" in report["uart"]
    assert "1001 levels: refused" in report["uart"]
    assert wall < WALL_BOUND_S


_CHILD = r"""
import json, re, sys
from kalloc_machine.session import RunOptions, Session
s = Session(RunOptions(firmware=sys.argv[1], timeout_s=30))
out = s.run()
s.ka.check()
print(json.dumps({"exit": out.exit_status, "kinds": [e["kind"] for e in out.report["errors"]],
                  "rss_mib": int(re.search(r"VmHWM:\s*(\d+)", open("/proc/self/status").read())[1]) // 1024}))
"""
RSS_BOUND_MIB = 300  # Python + Unicorn + a 16 MiB board is ~50 MiB


@pytest.mark.parametrize("name", ["tests/hostile_stack_task", "tests/hostile_stack_irq"])
def test_peak_rss_of_an_overflowing_run_is_bounded(name: str) -> None:
    # VmHWM: the child's own peak (ru_maxrss would carry the parent's across fork and exec)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(prebuilt(name))], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["exit"] == 65 and got["kinds"] == ["stack-overflow"]
    assert got["rss_mib"] < RSS_BOUND_MIB, got["rss_mib"]


def test_the_report_is_deterministic() -> None:
    a = run("tests/hostile_stack_task")[1]
    b = run("tests/hostile_stack_task")[1]
    assert dumps(a) == dumps(b)


def test_an_elf_without_the_guard_symbol_gets_no_hook_and_a_warning() -> None:
    fw = load_firmware(prebuilt("tests/hostile_stack_task"))
    assert stackguard.bounds_of(fw) is not None
    del fw.symtab.by_name[stackguard.GUARD]  # what an ELF of the SDK before the guard looks like
    machine = Machine(load_board("default"), fw)
    assert stackguard.install(machine, fw) is None
    assert stackguard.NO_GUARD_WARNING in fw.warnings


def test_the_demo_still_runs_on_the_tiny_board() -> None:
    _, report, status, _ = run("demo", board="tiny")
    assert status == 0, report["errors"]
    assert report["warnings_firmware"] == []


# -- STACK_SIZE ------------------------------------------------------------------------------


def build(tmp_path: Path, source: str, stack: str | None, out: str = "app.elf") -> Path:
    dst = tmp_path / source
    shutil.copy(FIRMWARE_TESTS / source, dst)
    elf = tmp_path / out
    cmd = ["make", "-s", "-C", str(sdk_dir()), f"APP={dst}", f"OUT={elf}"]
    if stack is not None:
        cmd.append(f"STACK_SIZE={stack}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return elf


@needs_toolchain
def test_stack_size_make_variable_for_an_out_of_tree_build(tmp_path: Path) -> None:
    elf = build(tmp_path, "hostile_stack_nesting.c", "32K")
    assert load_firmware(elf).symbol_addr("__kalloc_stack_size") == 32 << 10
    out = Session(RunOptions(firmware=str(elf))).run()
    assert out.exit_status == 65
    (err,) = out.report["errors"]
    assert err["kind"] == "stack-overflow" and err["stack"]["size"] == 32 << 10
    # the same OUT relinked with a bigger stack (the value is a dependency): clean
    elf = build(tmp_path, "hostile_stack_nesting.c", "512K")
    assert load_firmware(elf).symbol_addr("__kalloc_stack_size") == 512 << 10
    out = Session(RunOptions(firmware=str(elf))).run()
    assert out.exit_status == 0, out.report["errors"]


@needs_toolchain
def test_default_stack_and_a_board_too_small_for_it(tmp_path: Path) -> None:
    elf = build(tmp_path, "hostile_stack_nesting.c", None)
    assert load_firmware(elf).symbol_addr("__kalloc_stack_size") == 256 << 10
    with pytest.raises(BadInput, match=r"its stack is 256 KiB: build with a smaller STACK_SIZE"):
        Session(RunOptions(firmware=str(elf), board="tiny"))


@needs_toolchain
@pytest.mark.parametrize("bad", ["abc", "100", "12 K"])
def test_bad_stack_sizes_fail_the_build(tmp_path: Path, bad: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        build(tmp_path, "hostile_stack_nesting.c", bad)
    assert b"STACK_SIZE" in info.value.stderr


def test_leak_roots_are_the_live_stack_only() -> None:
    fw = load_firmware(prebuilt("tests/hello"))
    bounds = stackguard.bounds_of(fw)
    assert bounds is not None
    writable = [(s.vaddr, s.vaddr + s.memsz) for s in fw.segments if s.flags & 2]
    sp = bounds.top - 64
    roots = stackguard.leak_roots(writable, fw, sp)
    assert roots[-1] == (sp, bounds.top)
    assert not any(a < sp and b > bounds.guard for a, b in roots)  # neither dead frames nor the guard
    assert stackguard.leak_roots(writable, fw, 0)[-1] == (bounds.bottom, bounds.top)  # sp elsewhere
