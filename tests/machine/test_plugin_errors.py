"""assert_errors: a set of kinds (any order, any number), a subset (at_least), or the exact ordered list.

Firmware: firmware/tests/uaf_then_double_free.c writes to a freed object, then frees it
again. Poison mode sees [double-free, use-after-free] (the damaged poison, at exit);
KASAN sees [use-after-free, double-free] (the store, when it happens), and may see the
damage once more at exit. One test, written with kinds= or at_least=, holds in both.
"""

from __future__ import annotations

import textwrap

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.pytest_plugin import assert_errors

pytest_plugins = ["pytester"]
FW = "tests/uaf_then_double_free"

BODY = f"""
    from kalloc_machine.tools.pytest_plugin import assert_errors

    def test_same_bugs_any_mode(kalloc_run):
        out = kalloc_run({FW!r})
        assert_errors(out, kinds={{"use-after-free", "double-free"}})
        assert_errors(out, {{"double-free", "use-after-free"}})   # a set given positionally: the same
        assert_errors(out, at_least={{"double-free"}})

    def test_exact_order_is_mode_specific(kalloc_run, kalloc_options):
        out = kalloc_run({FW!r})
        if kalloc_options.sanitize == "kasan":
            more = ["use-after-free"] * (len(out.report["errors"]) - 2)  # the damage again at exit, or not
            assert_errors(out, exact=["use-after-free", "double-free", *more])
        else:
            assert_errors(out, "double-free", "use-after-free")   # positional: exact, in order, as before
            assert_errors(out, exact=["double-free", "use-after-free"])
"""


def _run_pytester(pytester, body: str, *args: str):
    pytester.makepyfile(test_user=textwrap.dedent(body))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("mode", ["poison", "kasan"])
def test_one_test_holds_under_poison_and_kasan(pytester, mode):
    result = _run_pytester(pytester, BODY, "--kalloc-sanitize", mode)
    result.assert_outcomes(passed=2)


def _kinds(sanitize: str) -> dict:
    return Session(RunOptions(firmware=str(prebuilt(FW)), sanitize=sanitize)).run().report


def test_the_modes_really_differ_in_order():
    poison, kasan = _kinds("poison"), _kinds("kasan")
    assert [e["kind"] for e in poison["errors"]] == ["double-free", "use-after-free"]
    assert [e["kind"] for e in kasan["errors"]][:2] == ["use-after-free", "double-free"]


def _fails(*args, **kw) -> str:
    with pytest.raises(pytest.fail.Exception) as info:
        assert_errors(*args, **kw)
    return str(info.value)


def test_failures_say_what_was_expected_and_show_the_report():
    report = _kinds("poison")
    msg = _fails(report, kinds={"use-after-free"})
    got = "error kinds ['double-free', 'use-after-free'], expected"
    assert msg.startswith(f"{got} the kinds ['use-after-free'] (any order):")
    assert "ERROR double-free" in msg  # the text report follows
    assert _fails(report, at_least={"leak", "double-free"}).startswith(
        f"{got} at least ['double-free', 'leak']:"
    )
    exact = _fails(report, "use-after-free", "double-free")
    assert exact.startswith(f"{got} exactly ['use-after-free', 'double-free']:")
    assert _fails(report).startswith(f"{got} exactly []:")


def test_returns_the_entries_and_rejects_two_forms_at_once():
    report = _kinds("poison")
    assert assert_errors(report, at_least=["use-after-free"]) is report["errors"]
    with pytest.raises(TypeError):
        assert_errors(report, "double-free", kinds={"double-free"})
