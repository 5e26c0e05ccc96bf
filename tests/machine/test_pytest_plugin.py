"""The pytest plugin and its harness: fixtures, calls into firmware, snapshots, options.

The snapshot contract is equivalence: a run restored from a snapshot gives the same
report, byte for byte, as a fresh boot doing the same thing (timing is measured in
docs/user-guide.md, never asserted here).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.harness import Target, comparable
from kalloc_machine.tools.options import RUN_OPTIONS
from kalloc_machine.tools.pytest_plugin import assert_clean, assert_errors, assert_exit, assert_uart

from kalloc import gfp

pytest_plugins = ["pytester"]
RACE = str(prebuilt("tests/irq_race"))


def _checksum(data: bytes) -> int:
    s = 0
    for b in data:
        s = (s * 31 + b) & 0xFFFF_FFFF
    return s


def test_call_functions_and_memory_by_symbol(kalloc_target):
    fw = kalloc_target(RACE, until="main")
    p = fw.call("kmalloc", 64, gfp.GFP_KERNEL)
    assert p and fw.ka.ksize(p) == 64
    fw.write(p, b"kalloc")
    assert fw.call("checksum", p, 6) == _checksum(b"kalloc")
    fw.call("push", p)
    assert fw.call("ring_len") == 1 == fw.read_u32("count")
    assert fw.read_u32("ring") == p  # ring[0], read by symbol
    out = fw.finish()  # main's final drain frees p too
    assert_clean(out)
    assert_exit(out, 0)
    assert_uart(out, "ring done: 40 pushes")


def test_drive_the_allocator_directly(kalloc_target):
    fw = kalloc_target(RACE, until="main")
    free_before = fw.report()["allocator"]["zones"][0]["pages"]["free"]
    p = fw.ka.alloc_pages(gfp.GFP_KERNEL, 2)
    assert fw.report()["allocator"]["zones"][0]["pages"]["free"] <= free_before
    fw.ka.free_pages(p, 2)
    fw.call("kfree", fw.call("kmalloc", 100, gfp.GFP_KERNEL))
    assert_clean(fw.finish())


def test_a_double_free_from_a_call_is_reported(kalloc_target):
    fw = kalloc_target(RACE, until="main")
    p = fw.call("kmalloc", 32, gfp.GFP_KERNEL)
    fw.call("kfree", p)
    fw.call("kfree", p)
    [err] = assert_errors(fw, "double-free")
    assert err["symbol"] == "kfree" or err["backtrace"]
    fw.take_errors()


def test_each_test_gets_the_snapshot_not_the_last_tests_state(kalloc_target):
    fw = kalloc_target(RACE, until="main")
    assert fw.read_u32("count") == 0 and fw.errors() == []
    assert fw.ka.live_allocations() == [] or all(a.size for a in fw.ka.live_allocations())


def test_run_to_symbol_and_for_n_instructions_resume_exactly():
    fresh = Session(RunOptions(firmware=RACE, irq_at=(1500,))).run()
    fw = Target(RunOptions(firmware=RACE, irq_at=(1500,)))
    stop = fw.run(until="kmalloc")
    assert stop.reason == "break" and stop.pc == fw.addr("kmalloc")
    stop = fw.run(until="kmalloc")  # the next hit, not the same one
    assert stop.reason == "break" and fw.read_u32("count") >= 0
    at = fw.instructions
    stop = fw.run(instructions=777)
    assert stop.reason == "instructions" and fw.instructions == at + 777
    assert dumps(comparable(fw.finish().report)) == dumps(comparable(fresh.report))


def test_restored_runs_equal_fresh_runs():
    fresh = Session(RunOptions()).run()  # the demo
    fw = Target(RunOptions())
    fw.run_to("main")
    snap = fw.snapshot()
    first = dumps(comparable(fw.finish().report))
    assert first == dumps(comparable(fresh.report))
    for _ in range(3):
        fw.restore(snap)
        assert dumps(comparable(fw.finish().report)) == first


def test_a_hundred_restores_give_the_same_results():
    fw = Target(RunOptions(firmware=RACE))
    fw.run_to("main")
    snap = fw.snapshot()
    results = set()
    for i in range(100):
        fw.restore(snap)
        p = fw.call("kmalloc", 48, gfp.GFP_KERNEL)
        fw.write(p, bytes([i % 7]) * 8)
        results.add((p, fw.call("checksum", p, 8) == _checksum(bytes([i % 7]) * 8), fw.instructions))
        fw.call("kfree", p)
    assert len(results) == 1 and next(iter(results))[1]


def _run_pytester(pytester, body: str, *args: str):
    pytester.makepyfile(test_user=textwrap.dedent(body))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def test_plugin_in_a_user_suite_options_and_failure_report(pytester):
    body = f"""
        from kalloc_machine.tools.pytest_plugin import assert_clean

        def test_board(kalloc_target, kalloc_options):
            fw = kalloc_target({RACE!r})
            assert kalloc_options.board == "tiny" and fw.session.board.name == "tiny"
            assert_clean(fw.finish())

        def test_seed(kalloc_options):
            assert kalloc_options.seed == 5 and kalloc_options.fail_nth == (3,)

        def test_unexamined_errors_fail(kalloc_target):
            fw = kalloc_target({RACE!r}, until="main", fail_nth=())
            p = fw.call("kmalloc", 32, 0)
            fw.call("kfree", p)
            fw.call("kfree", p)
    """
    result = _run_pytester(pytester, body, "--kalloc-board", "tiny", "--kalloc-seed", "5",
                           "--kalloc-fail-nth", "3", "-k", "seed or unexamined")  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*kalloc found errors the test did not examine*",
                                 "*ERROR double-free: kfree() of an object that was already freed*"])
    result = _run_pytester(pytester, body, "--kalloc-board", "tiny", "-k", "board")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_unicorn():
    # pytest loads the plugin in every session of anyone who installed kalloc
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "emulator")]))
    code = ("import kalloc_machine.tools.pytest_plugin, sys; assert 'unicorn' not in sys.modules; "
            "assert not {'kalloc_machine.session', 'kalloc_machine.machine'} & set(sys.modules)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_the_shared_option_table_has_run_options_defaults():
    defaults = RunOptions()
    names = {f.name for f in dataclasses.fields(RunOptions)}
    for field, spec in RUN_OPTIONS.items():
        assert field in names and spec.default == getattr(defaults, field), field
