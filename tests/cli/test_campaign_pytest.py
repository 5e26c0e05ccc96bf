"""The pytest face of campaigns (issue 15): `pytest --kalloc-campaign=fail-each` reruns each passing
kalloc test under the sweep and fails it with the deduplicated bugs, each with a pytest line that
reproduces it; it works under pytest-xdist, and a test that does not use kalloc is left alone.

Firmware (firmware/tests/): campaign_null_third.c (4 requests, the 3rd dereferenced unchecked),
campaign_handled.c (5 requests, every failure handled), irq_race.c (a handler racing the task).
"""

from __future__ import annotations

import re
import shlex
import textwrap

import pytest
from kalloc_machine.sdk import prebuilt

pytest_plugins = ["pytester"]

NULL3, HANDLED = (str(prebuilt(f"tests/campaign_{n}")) for n in ("null_third", "handled"))
RACE = str(prebuilt("tests/irq_race"))

SUITE = f"""
    from kalloc_machine.tools.pytest_plugin import assert_exit

    def test_null(kalloc_run):
        assert_exit(kalloc_run({NULL3!r}), 0)

    def test_handled(kalloc_run):
        out = kalloc_run({HANDLED!r})
        assert out.exit_status in (0, 1, 2, 3, 4, 5)  # an error code when an allocation failed: handled

    def test_calls(kalloc_target):
        fw = kalloc_target({HANDLED!r}, until="main")
        p = fw.call("kmalloc", 32, 0xCC0)
        assert p
        fw.call("kfree", p)

    def test_not_kalloc():
        assert True
"""


def _pytest(pytester, body: str, *args: str):
    pytester.makepyfile(test_user=textwrap.dedent(body))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def _failure(result, test: str) -> str:
    """The failure text pytest printed for `test` (its section, up to the next one)."""
    out = result.stdout.str()
    m = re.search(rf"_+ {test} _+\n(.*?)(?=\n_{{3,}} |\n=+ short test summary)", out, re.S)
    assert m, out
    return m.group(1)


def test_without_the_option_the_suite_passes(pytester):
    _pytest(pytester, SUITE).assert_outcomes(passed=4)


def test_fail_each_fails_the_test_with_its_bug_and_a_pytest_line_that_reproduces_it(pytester):
    result = _pytest(pytester, SUITE, "--kalloc-campaign=fail-each")
    result.assert_outcomes(failed=1, passed=3)  # test_handled, test_calls and test_not_kalloc pass
    text = _failure(result, "test_null")
    assert text.splitlines()[0] == ("kalloc campaign (fail-each): 1 distinct bug(s) in 5 rerun(s) of this "
                                    "test (1 hit(s))")  # 4 requests, then a rerun that reached no 5th
    assert ("#1 cpu-fault in make_label < main < _start after an injected failure in make_label: 1 rerun(s)"
            in text)  # fmt: skip
    [line] = [ln.strip() for ln in text.splitlines() if "reproduce:" in ln]
    assert line == "reproduce: pytest test_user.py::test_null --kalloc-fail-nth 3"
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider", *shlex.split(line)[2:])
    again.assert_outcomes(failed=1)  # the reproducer: the test with request 3 failing
    again.stdout.fnmatch_lines(["*exit status 65, expected 0*", "*after injected allocation failure #3*"])


def test_the_sweep_keeps_the_command_lines_options_in_the_reproducer(pytester):
    result = _pytest(pytester, SUITE, "--kalloc-campaign=fail-each", "--kalloc-sanitize", "kasan",
                     "-k", "null")  # fmt: skip
    result.assert_outcomes(failed=1, deselected=3)
    assert ("reproduce: pytest test_user.py::test_null --kalloc-sanitize kasan --kalloc-fail-nth 3"
            in _failure(result, "test_null"))  # fmt: skip


def test_under_xdist_the_same_failure(pytester):
    pytest.importorskip("xdist")
    spread = _pytest(pytester, SUITE, "-n", "2", "--kalloc-campaign=fail-each")
    spread.assert_outcomes(failed=1, passed=3)
    worker = _failure(spread, "test_null")
    assert worker[worker.index("kalloc campaign") :].splitlines() == [  # after xdist's "[gw0] linux ..." line
        "kalloc campaign (fail-each): 1 distinct bug(s) in 5 rerun(s) of this test (1 hit(s))",
        "#1 cpu-fault in make_label < main < _start after an injected failure in make_label: 1 rerun(s)",
        "   write of 2 bytes at unmapped address 0x0 (after injected allocation failure #3: MALLOC returned "
        "NULL; was it checked?)",
        "   reproduce: pytest test_user.py::test_null --kalloc-fail-nth 3",
    ]  # the same lines as without xdist (test_fail_each_...)


def test_irq_raises_the_test_line_over_the_run_and_finds_the_race(pytester):
    body = f"""
        from kalloc_machine.tools.pytest_plugin import assert_clean

        def test_race(kalloc_run):
            assert_clean(kalloc_run({RACE!r}))
    """
    result = _pytest(pytester, body, "--kalloc-campaign=irq", "--kalloc-campaign-points", "40")
    result.assert_outcomes(failed=1)
    text = _failure(result, "test_race")
    assert "1 distinct bug(s) in 40 rerun(s)" in text and "#1 double-free in " in text
    [line] = [ln.strip() for ln in text.splitlines() if "reproduce:" in ln]
    assert re.fullmatch(r"reproduce: pytest test_user.py::test_race --kalloc-irq-at \d+", line)
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider", *shlex.split(line)[2:])
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*kalloc found 1 problem(s)*", "*double-free*"])


def test_max_runs_bounds_the_reruns_and_a_bad_dimension_is_a_usage_error(pytester):
    result = _pytest(pytester, SUITE, "--kalloc-campaign=fail-each", "--kalloc-campaign-max-runs", "2",
                     "-k", "null")  # fmt: skip
    result.assert_outcomes(passed=1, deselected=3)  # requests 1 and 2 fail harmlessly; 3 is never tried
    bad = _pytest(pytester, SUITE, "--kalloc-campaign=fail-all")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--kalloc-campaign fail-all: not a dimension (choose from fail-each, irq, "
                              "seeds)"])  # fmt: skip
    seeds = _pytest(pytester, SUITE, "--kalloc-campaign=seeds")
    seeds.stderr.fnmatch_lines(["*--kalloc-campaign=seeds needs a schedule to seed: --kalloc-irq-every N"])
