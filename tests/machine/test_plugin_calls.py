"""The pytest plugin's Target.call: a missing function in one line, and who an allocation is charged to.

Firmware: firmware/tests/call_targets.c (unused_helper dropped by --gc-sections, add_one
inlined, twice inlined and its copy dropped, kept_helper kept with __attribute__((used,
retain)), make_buffer/drop_buffer allocate and free for the test).
"""

from __future__ import annotations

import textwrap

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions
from kalloc_machine.tools.harness import MissingFunction, Target

from kalloc import gfp

pytest_plugins = ["pytester"]
CALLS = "tests/call_targets"  # a shipped name, as the plugin and `kalloc run` accept it


def _target() -> Target:
    fw = Target(RunOptions(firmware=str(prebuilt(CALLS))))
    fw.run_to("main")
    return fw


# -- 1. a function the firmware does not have ------------------------------------------------


def test_a_function_the_linker_dropped_says_so_and_how_to_keep_it():
    fw = _target()
    assert fw.call("kept_helper", 3) == 15  # the same code, kept with used+retain
    with pytest.raises(MissingFunction) as info:
        fw.call("unused_helper", 3)
    msg = str(info.value)
    assert "\n" not in msg
    head = "call('unused_helper'): call_targets.elf has no code for unused_helper() (call_targets.c:14)"
    assert msg.startswith(head) and "--gc-sections dropped it" in msg
    assert "__attribute__((used, retain))" in msg and "KEEP(" in msg
    assert "-Wl,--undefined=unused_helper" in msg


def test_running_to_a_dropped_function_says_so_too(pytester):
    fw = _target()
    with pytest.raises(MissingFunction) as info:
        fw.run_to("unused_helper")
    assert str(info.value).startswith(
        "run('unused_helper'): call_targets.elf has no code for unused_helper()"
    )
    body = f"""
        def test_until(kalloc_target):
            kalloc_target({CALLS!r}, until="twice")
    """
    result = _run_pytester(pytester, body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["test_user.py:2: run('twice'): call_targets.elf has no code for twice()*"])


def test_an_inlined_static_function_is_told_apart():
    fw = _target()
    with pytest.raises(MissingFunction) as info:
        fw.call("add_one", 1)
    msg = str(info.value)
    assert (
        "add_one() (call_targets.c:16): the compiler inlined it into its callers and kept no out-of-line copy"
        in msg
    )
    assert "--gc-sections" not in msg
    with pytest.raises(MissingFunction) as info:  # external: its copy was emitted, then dropped
        fw.call("twice", 1)
    msg = str(info.value)
    assert "twice() (call_targets.c:18): the compiler inlined it into its callers and the linker's " in msg
    assert "--gc-sections dropped its copy" in msg and "-Wl,--undefined=twice" in msg


def test_an_sdk_function_the_firmware_never_calls_is_named_as_such():
    fw = _target()  # call_targets uses malloc only: the SDK's kmalloc was dropped
    with pytest.raises(MissingFunction) as info:
        fw.call("kmalloc", 32, gfp.GFP_KERNEL)
    msg = str(info.value)
    assert "kmalloc(), an SDK function (kalloc.h) the firmware never calls" in msg
    assert "-Wl,--undefined=kmalloc" in msg and "Target.ka" in msg
    p = fw.ka.kmalloc(32, gfp.GFP_KERNEL)  # what it suggests works
    fw.ka.kfree(p)


def test_a_name_nothing_knows_is_unknown_with_close_names():
    fw = _target()
    with pytest.raises(KeyError) as info:  # MissingFunction is a KeyError, as addr()'s was
        fw.call("make_bufer", 8)
    msg = str(info.value)
    assert "has no function make_bufer() (no symbol, and its debug info defines none: a typo" in msg
    assert msg.endswith("did you mean make_buffer?")


def _run_pytester(pytester, body: str, *args: str):
    pytester.makepyfile(test_user=textwrap.dedent(body))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def test_in_a_suite_a_missing_function_is_one_line_no_traceback(pytester):
    body = f"""
        def test_dropped(kalloc_target):
            fw = kalloc_target({CALLS!r}, until="main")
            fw.call("unused_helper", 2)
    """
    result = _run_pytester(pytester, body, "-rf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    line = "test_user.py:3: call('unused_helper'): call_targets.elf has no code for unused_helper() "
    result.stdout.fnmatch_lines([line + "(call_targets.c:14): the linker's --gc-sections dropped it*"])
    assert "Traceback" not in out and "harness.py" not in out and "exception" not in out


# -- 2. allocations made through call --------------------------------------------------------


def test_allocations_through_call_are_charged_to_the_function_then_the_test(pytester):
    body = f"""
        from kalloc_machine.tools.pytest_plugin import assert_errors

        def test_leaky(kalloc_target):
            fw = kalloc_target({CALLS!r}, until="main")
            fw.call("make_buffer", 24)
            fw.call("malloc", 40)
            out = fw.finish()
            leaks = assert_errors(out, kinds={{"leak"}})
            print("TEXT", fw.text())
            by_size = {{e["bytes"]: e for e in leaks}}
            made, direct = by_size[24], by_size[40]
            assert [f["symbol"] for f in made["backtrace"]] == ["make_buffer", "test_leaky"]
            test = {{"pc": None, "symbol": "test_leaky", "file": "test_user.py", "line": 5}}
            assert made["backtrace"][-1] == test and made["symbol"] == "make_buffer"
            assert made["location"]["file"] == "firmware/tests/call_targets.c"
            assert direct["pc"] is None and direct["symbol"] == "test_leaky"
            assert direct["location"] == {{"file": "test_user.py", "line": 6}}
    """
    result = _run_pytester(pytester, body, "-s")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "__kalloc_stack_top" not in out
    result.stdout.fnmatch_lines(["*at 0x* make_buffer (firmware/tests/call_targets.c:*",
                                 "*called from test_leaky (test_user.py:5)*"])  # fmt: skip
    result.stdout.fnmatch_lines(["*at test_leaky (test_user.py:6)*"])


def _leak_twelve(fw: Target) -> dict:
    fw.call("make_buffer", 12)  # the calling line: this helper's, whoever called it
    [leak] = [e for e in fw.finish().report["errors"] if e.get("bytes") == 12]
    return {k: leak[k] for k in ("pc", "symbol", "location", "backtrace")}


def test_the_chain_ends_at_the_called_function_and_the_frame_is_deterministic():
    alone = Target(RunOptions(firmware=str(prebuilt(CALLS))))
    alone.run_to("drop_buffer")  # mid-run: main's frames are below the call
    after = Target(RunOptions(firmware=str(prebuilt(CALLS))))
    after.run_to("drop_buffer")
    after.call("free", after.call("malloc", 16))  # another line takes the first call stop
    leak = _leak_twelve(alone)
    # the called function, then the calling line: not main, not __kalloc_stack_top
    assert [f["symbol"] for f in leak["backtrace"]] == ["make_buffer", "_leak_twelve"]
    assert leak["backtrace"][-1] == {"pc": None, "symbol": "_leak_twelve", "file": "test_plugin_calls.py",
                                     "line": leak["backtrace"][-1]["line"]}  # fmt: skip
    assert _leak_twelve(after) == leak


def test_in_a_suite_a_call_that_does_not_return_is_its_line_and_the_report(pytester):
    body = f"""
        def test_wild_call(kalloc_target):
            fw = kalloc_target({CALLS!r}, until="main")
            fw.call(0x10)
    """
    result = _run_pytester(pytester, body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["test_user.py:3: 16() did not return (fault):", "*kalloc report: call_targets.elf*"]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "harness.py" not in out and "exception" not in out
