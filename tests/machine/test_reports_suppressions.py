"""--suppress FILE: known errors in third-party code left out of the report and the exit status.

firmware/tests/suppress_vendor.c: vendor_double_free() double-frees (called twice),
vendor_leak() and app_leak() each leak one object (report/suppressions.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import BadInput, RunOptions, Session

pytest_plugins = ["pytester"]


def _rules(tmp_path: Path, text: str, name: str = "vendor.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _kinds(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e["symbol"]) for e in report["errors"]]


VENDOR_ALL = """
    [[suppress]]
    kind = "*"
    function = "vendor_*"
    reason = "upstream bug #123"
"""


def test_without_suppressions_every_error_is_listed_and_no_new_key(run_fw):
    out = run_fw("tests/suppress_vendor")
    assert sorted(set(_kinds(out.report))) == [("double-free", "vendor_double_free"), ("leak", "app_leak"),
                                               ("leak", "vendor_leak")]  # fmt: skip
    assert "suppressions" not in out.report and "suppress" not in out.report["options"]
    assert out.exit_status == 64


def test_a_function_pattern_suppresses_the_vendor_errors_of_every_kind(run_fw, tmp_path):
    out = run_fw("tests/suppress_vendor", suppress=(_rules(tmp_path, VENDOR_ALL),))
    assert _kinds(out.report) == [("leak", "app_leak")]
    assert out.exit_status == 64  # the application's own leak still counts
    sup = out.report["suppressions"]
    assert sup == {"files": ["vendor.toml"], "count": 3,  # two double frees and one leak
                   "used": [{"file": "vendor.toml", "rule": 1, "kind": "*", "reason": "upstream bug #123",
                             "count": 3}]}  # fmt: skip
    assert out.report["leaks"]["count"] == 1 and out.report["leaks"]["bytes"] == 48


def test_everything_suppressed_is_a_clean_exit_and_two_files_are_counted_apart(run_fw, tmp_path):
    app = _rules(tmp_path, """
        [[suppress]]
        kind = "leak"
        file = "tests/suppress_vendor.c"   # a directory boundary suffix of firmware/tests/...
        function = "app_*"
    """, "app.toml")  # fmt: skip
    out = run_fw("tests/suppress_vendor", suppress=(_rules(tmp_path, VENDOR_ALL), app))
    assert out.report["errors"] == [] and out.exit_status == 0
    used = out.report["suppressions"]["used"]
    assert [(u["file"], u["count"]) for u in used] == [("vendor.toml", 3), ("app.toml", 1)]


def test_kind_and_file_must_match_too(run_fw, tmp_path):
    rules = _rules(
        tmp_path,
        """
        [[suppress]]
        kind = "use-after-free"        # the wrong kind
        function = "vendor_*"
        [[suppress]]
        kind = "leak"
        function = "*"
        file = "third_party/*"         # the wrong file
        [[suppress]]
        kind = "double-free"
        function = "vendor_double_free"
        file = "suppress_vendor.c"
    """,
    )
    out = run_fw("tests/suppress_vendor", suppress=(rules,))
    assert sorted(_kinds(out.report)) == [("leak", "app_leak"), ("leak", "vendor_leak")]
    assert out.report["suppressions"]["used"] == [{"file": "vendor.toml", "rule": 3, "kind": "double-free",
                                                   "reason": "", "count": 2}]  # fmt: skip


def test_text_names_the_file_and_rules(tmp_path):
    from kalloc_machine.tools.harness import Target

    target = Target(RunOptions(firmware=str(prebuilt("tests/suppress_vendor")),
                               suppress=(_rules(tmp_path, VENDOR_ALL),)))  # fmt: skip
    target.finish()
    text = target.text()
    assert "3 error(s) suppressed by vendor.toml (rule 1 (upstream bug #123) ×3)" in text
    assert "vendor_double_free" not in text


def test_json_names_no_host_path_and_is_deterministic(run_fw, tmp_path):
    path = _rules(tmp_path, VENDOR_ALL)
    a = dumps(run_fw("tests/suppress_vendor", suppress=(path,)).report)
    assert str(tmp_path) not in a
    assert a == dumps(run_fw("tests/suppress_vendor", suppress=(path,)).report)


@pytest.mark.parametrize(("text", "why"), [
    ("[[suppress]\nkind=", "not valid TOML"),
    ('[[suppress]]\nkind = "leak"\nfunction = "f"\nfuncion = "g"\n', "rule 1: unknown key 'funcion'"),
    ('[[suppress]]\nkind = "lek"\nfunction = "f"\n', "rule 1: unknown kind 'lek'"),
    ('[[suppress]]\nkind = "cpu-fault"\nfunction = "f"\n', "'cpu-fault' errors end the run"),
    ('[[suppress]]\nkind = "leak"\n', "rule 1: needs 'function' or 'file'"),
    ('[[suppress]]\nfunction = "f"\n', "rule 1: 'kind' is missing"),
    ('[[suppress]]\nkind = "leak"\nfunction = 3\n', "rule 1: 'function' must be a non-empty string"),
    ('suppress = 1\n', "must be [[suppress]] tables"),
    ('[[supress]]\nkind = "leak"\n', "unknown key 'supress'"),
])  # fmt: skip
def test_a_file_kalloc_cannot_use_is_bad_input_naming_file_and_rule(tmp_path, text, why):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BadInput) as info:
        Session(RunOptions(suppress=(str(path),)))
    message = str(info.value)
    assert message.startswith(f"--suppress {path}: ") and why in message and "\n" not in message


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read"):
        Session(RunOptions(suppress=(str(tmp_path / "nope.toml"),)))


def test_pytest_plugin_kalloc_suppress(pytester, tmp_path):
    rules = _rules(tmp_path, VENDOR_ALL)
    pytester.makepyfile(test_user=textwrap.dedent(f"""
        from kalloc_machine.tools.pytest_plugin import assert_errors

        def test_vendor_suppressed(kalloc_target, kalloc_options):
            assert kalloc_options.suppress == ({rules!r},)
            out = kalloc_target({str(prebuilt("tests/suppress_vendor"))!r}).finish()
            assert [e["symbol"] for e in out.report["errors"]] == ["app_leak"]
            assert out.report["suppressions"]["count"] == 3
    """))  # fmt: skip
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    result = pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", "--kalloc-suppress", rules)
    result.assert_outcomes(passed=1)
    bad = _rules(tmp_path, "[[suppress]]\nkind = 'lek'\nfunction = 'f'\n", "bad.toml")
    result = pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", "--kalloc-suppress", bad)
    result.stdout.fnmatch_lines(["*--kalloc-suppress *bad.toml: rule 1: unknown kind 'lek'*"])
    assert result.ret != 0
