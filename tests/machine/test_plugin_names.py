"""Firmware names: the pytest plugin and `kalloc run` resolve them with one function (sdk.resolve_firmware).

A path that exists wins; else a shipped name ("tests/double_free", ".elf" optional); a
name that matches nothing is one line naming where it looked, in both front ends.
"""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import prebuilt, resolve_firmware

from kalloc.cli import main

pytest_plugins = ["pytester"]


def _run(*args: str):
    return CliRunner().invoke(main, ["run", "-q", *args], catch_exceptions=False)


def test_the_cli_accepts_the_plugins_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of that name here: the shipped ELF
    out = tmp_path / "r.json"
    res = _run("tests/double_free", "--json", str(out))
    assert res.exit_code == 64, res.output
    report = json.loads(out.read_text())
    assert report["firmware"] == "double_free.elf"
    assert [e["kind"] for e in report["errors"]] == ["double-free"]
    assert _run("tests/hello.elf").exit_code == 0  # ".elf" optional


def test_a_path_on_disk_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").mkdir()
    shutil.copy(prebuilt("tests/hello"), tmp_path / "tests" / "double_free")  # a user's file of that name
    assert resolve_firmware("tests/double_free").resolve() == (tmp_path / "tests" / "double_free").resolve()
    res = _run("tests/double_free")
    assert res.exit_code == 0 and "hello, world" in res.output


def test_a_name_that_matches_nothing_is_one_line_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _run("tests/double_fre")
    assert res.exit_code == 3 and "Traceback" not in res.output
    [line] = [ln for ln in res.output.splitlines() if ln.strip()]
    assert line.startswith("kalloc: error: firmware tests/double_fre: no such file, and no shipped firmware")
    assert str(tmp_path / "tests" / "double_fre") in line and str(prebuilt("tests/double_fre")) in line


def test_the_plugin_resolves_names_as_the_cli_does(pytester):
    (pytester.path / "tests").mkdir()
    shutil.copy(prebuilt("tests/hello"), pytester.path / "tests" / "exit7")  # shadows the shipped exit7
    pytester.makepyfile(
        test_user=textwrap.dedent("""
        from kalloc_machine.tools.pytest_plugin import assert_exit, assert_uart

        def test_shipped(kalloc_run):
            assert_exit(kalloc_run("tests/double_free"), 64)

        def test_path_wins(kalloc_run):
            out = kalloc_run("tests/exit7")
            assert_exit(out, 0)
            assert_uart(out, "hello, world")

        def test_nothing(kalloc_run):
            kalloc_run("tests/double_fre")
    """)
    )
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    result = pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    looked = "(looked for */tests/double_fre and */build/tests/double_fre.elf)"
    result.stdout.fnmatch_lines(
        ["firmware tests/double_fre: no such file, and no shipped firmware of that name " + looked]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("name", ["../build/demo", "/nonexistent/demo"])
def test_names_outside_the_build_directory_are_never_shipped(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        resolve_firmware(name)
    assert "\n" not in str(info.value)
