"""The pytest plugin: test firmware allocation behaviour from an ordinary pytest suite.

Installed with the package (entry point `pytest11: kalloc`), so `pip install kalloc`
is all a suite needs. Like kalloc.cli, this module composes the allocator and the
machine (kalloc_machine.tools.harness); the allocator itself never imports it.

Fixtures (docs/user-guide.md, "Testing firmware with pytest"):

  kalloc_target(firmware=None, *, until=None, **options) -> Target
      The firmware booted on the board and run to `until` (a symbol), restored from a
      snapshot taken the first time: a suite of 100 tests boots once per (firmware,
      options, until). The Target runs, calls functions, reads memory by symbol, drives
      the allocator (`.ka`) and reports (kalloc_machine.tools.harness).
  kalloc_run(firmware=None, **options) -> RunOutcome
      One whole run, as `kalloc run` does it (from the cached boot, when there is one).
  kalloc_options -> RunOptions
      The options the command line chose (below); keywords of the fixtures override them.

Assertions (plain functions; each fails the test with the text report `kalloc run`
prints): `assert_clean(x, leaks=True)`, `assert_exit(x, code)`, `assert_uart(x, text)`,
`assert_errors(x, kinds={...})` (these kinds, any order and number),
`assert_errors(x, at_least={...})` (these kinds among others), `assert_errors(x, *kinds)`
or `exact=[...]` (exactly this list, in order); x is a Target, a RunOutcome or a report dict.

Firmware names: a path that exists, else a shipped name ("tests/hello"), resolved by
`kalloc_machine.sdk.resolve_firmware` as `kalloc run` does. A Target's calls are
attributed to the test (`Target.origin`: its name, and the line of each `call`).
A MissingFunction or StopError a test lets through, and a firmware that cannot be
loaded, fail the test with their one-line message (and the report), no traceback.

A test that drives a Target and never looks at its report (`report()`, `errors()`,
`take_errors()`, `finish()`) still fails when kalloc found an error during it.

Command-line options: --kalloc-board, --kalloc-sanitize, --kalloc-seed,
--kalloc-irq-every, --kalloc-fail-nth, --kalloc-max-errors, --kalloc-suppress (repeatable), --kalloc-irq-at:
`kalloc run`'s options of the same names
(kalloc_machine.tools.options, where both are defined). --kalloc-campaign=fail-each,irq,seeds
reruns each passing test under a campaign's sweep (kalloc_machine.tools.campaign_pytest).

Invariants:
 1. Loading the plugin imports neither Unicorn nor the machine, the session or the
    harness: pytest loads it in every session of anyone who installed kalloc. They
    are imported when a fixture or an assertion first needs them.
 2. A test fails when a Target it drove saw a kalloc error it never looked at.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

from kalloc_machine.tools import campaign_pytest
from kalloc_machine.tools.options import RUN_OPTIONS, RunOption

if TYPE_CHECKING:  # imported when used: this module loads in every pytest session (Unicorn is heavy)
    from kalloc_machine.session import RunOptions, RunOutcome
    from kalloc_machine.snapshot import Snapshot
    from kalloc_machine.tools.harness import MissingFunction, StopError, Target

__all__ = ["MissingFunction", "StopError", "Target",
           "assert_clean", "assert_errors", "assert_exit", "assert_uart"]  # fmt: skip

_USED = pytest.StashKey[list["Target"]]()

# The run options a suite sets from the command line, as --kalloc-<flag> (RUN_OPTIONS).
PLUGIN_OPTIONS = ("board", "sanitize", "seed", "irq_every", "fail_nth", "max_errors", "suppress", "irq_at")
_METAVARS = {"board": "NAME|PATH"}


def __getattr__(name: str) -> Any:
    """`from kalloc_machine.tools.pytest_plugin import Target, StopError` (imported on first use)."""
    if name in ("MissingFunction", "StopError", "Target"):
        from kalloc_machine.tools import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plugin_flag(spec: RunOption) -> str:
    return "--kalloc-" + spec.flag.removeprefix("--")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kalloc", "kalloc firmware tests")
    for field in PLUGIN_OPTIONS:
        spec = RUN_OPTIONS[field]
        kw: dict[str, Any] = {"dest": f"kalloc_{field}", "default": spec.default, "help": spec.help}
        if spec.multiple:  # repeatable: --kalloc-suppress A --kalloc-suppress B
            kw.update(action="append", default=[])
        elif spec.parse is not None:
            kw["default"] = ""
        elif spec.choices:
            kw["choices"] = spec.choices
        elif spec.type is not str:
            kw["type"] = spec.type
        if not spec.choices:
            kw["metavar"] = _METAVARS.get(field) or spec.metavar or "N"
        if spec.show_default:
            kw["help"] += " (default: %(default)s)"
        group.addoption(_plugin_flag(spec), **kw)
    campaign_pytest.addoption(group)  # --kalloc-campaign=fail-each,irq,seeds (tools/campaign_pytest.py)


def pytest_configure(config: pytest.Config) -> None:
    campaign_pytest.dimensions(config)  # a bad --kalloc-campaign: a usage error before any test runs


def options_from_config(config: pytest.Config) -> RunOptions:
    """RunOptions from the --kalloc-* command-line options."""
    from kalloc_machine.session import RunOptions

    values: dict[str, Any] = {}
    for field in PLUGIN_OPTIONS:
        spec, value = RUN_OPTIONS[field], config.getoption(f"kalloc_{field}")
        if spec.multiple:
            value = tuple(value or ())
            _check_suppressions(value)
        elif spec.parse is not None:
            try:
                value = spec.parse(str(value or ""))
            except ValueError as exc:
                raise pytest.UsageError(f"{_plugin_flag(spec)} {value!r}: {exc}") from None
        elif spec.low is not None and value is not None and value < spec.low:
            raise pytest.UsageError(f"{_plugin_flag(spec)} {value!r}: must be at least {spec.low:g}")
        values[field] = value
    return RunOptions(**values)


def _check_suppressions(paths: tuple[str, ...]) -> None:
    """--kalloc-suppress files that cannot be used: a one-line usage error, before any test runs."""
    from kalloc_machine.report import suppressions

    try:
        suppressions.load(paths)
    except suppressions.SuppressionError as exc:
        raise pytest.UsageError(str(exc).replace("--suppress", "--kalloc-suppress", 1)) from None


def _options(base: RunOptions, firmware: str | Path | None, overrides: dict[str, Any]) -> RunOptions:
    fw = str(firmware) if firmware is not None else base.firmware
    if fw is not None:
        from kalloc_machine.sdk import resolve_firmware

        missing: str | None = None
        try:
            fw = str(resolve_firmware(fw, _board_isa(overrides.get("board", base.board))))  # as `kalloc run`
        except FileNotFoundError as exc:
            missing = f"firmware {exc}"
        if missing is not None:
            pytest.fail(missing, pytrace=False)
    for key in ("irq_at", "fail_nth"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return dataclasses.replace(base, firmware=fw, **overrides)


def _board_isa(board: str) -> str | None:
    """The ISA of a board, whose shipped ELFs a name resolves to (None: the Session reports the board)."""
    from kalloc_machine.board import load_board

    try:
        return load_board(board).cpu.isa
    except (ValueError, OSError):
        return None


class _BootCache:
    """One booted Target and its snapshot per (options, until): boot once, restore per test."""

    def __init__(self) -> None:
        self._booted: dict[tuple[Any, ...], tuple[Target, Snapshot]] = {}
        self.boots = 0
        self.restores = 0

    def get(self, options: RunOptions, until: str | None) -> Target:
        from kalloc_machine.tools.harness import Target

        key = (*dataclasses.astuple(options), until)
        hit = self._booted.get(key)
        if hit is None:
            target = Target(options)
            self.boots += 1
            if until is not None:
                target.run_to(until)
            hit = self._booted[key] = (target, target.snapshot())
            return target
        target, snap = hit
        target.restore(snap)
        self.restores += 1
        return target


@pytest.fixture(scope="session")
def _kalloc_boot_cache() -> _BootCache:
    return _BootCache()


@pytest.fixture(scope="session")
def kalloc_options(pytestconfig: pytest.Config) -> RunOptions:
    """The RunOptions chosen by --kalloc-board, --kalloc-sanitize, --kalloc-seed, ..."""
    return options_from_config(pytestconfig)


@pytest.fixture
def kalloc_target(request: pytest.FixtureRequest, kalloc_options: RunOptions,
                  _kalloc_boot_cache: _BootCache) -> Callable[..., Target]:  # fmt: skip
    """Factory: kalloc_target(firmware=None, *, until=None, snapshot=True, **options) -> Target.

    `firmware` is a path or a shipped name ("demo", "tests/hello"); `until` a symbol to
    run to before the test gets the Target (e.g. "main"). With snapshot=True (default)
    the boot is done once per session and restored for every test.
    """
    used = request.node.stash.setdefault(_USED, [])

    def make(firmware: str | Path | None = None, *, until: str | None = None, snapshot: bool = True,
             **overrides: Any) -> Target:  # fmt: skip
        from kalloc_machine.session import BadInput
        from kalloc_machine.tools.harness import CallOrigin, Target

        opts = _options(kalloc_options, firmware, overrides)
        rerun = request.node.stash.get(campaign_pytest.OVERRIDE, None)  # a campaign's rerun: fresh boots
        if rerun is not None:
            opts, snapshot = dataclasses.replace(opts, **rerun), False
        bad: str | None = None
        try:
            if snapshot:
                target = _kalloc_boot_cache.get(opts, until)
            else:
                target = Target(opts)
                if until is not None:
                    target.run_to(until)
        except BadInput as exc:  # an unreadable ELF or board: the CLI's one line
            bad = str(exc)
        if bad is not None:
            pytest.fail(bad, pytrace=False)
        target.autocheck = True
        node = request.node
        target.origin = CallOrigin(node.name, str(node.path), node.nodeid.split("::")[0])
        used.append(target)
        return target

    return make


@pytest.fixture
def kalloc_run(kalloc_target: Callable[..., Target]) -> Callable[..., RunOutcome]:
    """Factory: kalloc_run(firmware=None, **options) -> RunOutcome (report, exit_status)."""

    def run(firmware: str | Path | None = None, **overrides: Any) -> RunOutcome:
        return kalloc_target(firmware, **overrides).finish()

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test whose Target saw kalloc errors the test never looked at.

    A MissingFunction or StopError the test let through fails it with its message (and the
    test's line), no traceback: the harness's frames say nothing the message does not.
    """
    failed = None
    try:
        result = yield
    except Exception as exc:
        harness = sys.modules.get("kalloc_machine.tools.harness")
        if harness is None or not isinstance(exc, (harness.MissingFunction, harness.StopError)):
            raise
        failed = f"{_test_line(item, exc)}{exc}"
    if failed is not None:  # outside the except: no "during handling of the above exception"
        pytest.fail(failed, pytrace=False)
    for target in item.stash.get(_USED, []):
        if getattr(target, "autocheck", False) and _has_errors(target.report(consult=False)):
            pytest.fail("kalloc found errors the test did not examine:\n" + target.text(), pytrace=False)
    if item.config.getoption("kalloc_campaign"):  # rerun under the sweep (tools/campaign_pytest.py)
        failure = campaign_pytest.run(item, item.stash.get(_USED, []), options_from_config(item.config))
        if failure is not None:
            pytest.fail(failure, pytrace=False)
    return result


def _test_line(item: pytest.Item, exc: BaseException) -> str:
    """The prefix "tests/test_x.py:12: " for the test's last line in the exception's traceback, else ""."""
    path, line = str(item.path), None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{item.nodeid.split('::')[0]}:{line}: " if line is not None else ""


# -- assertions ---------------------------------------------------------------------------------

Checked: TypeAlias = "Target | RunOutcome | dict[str, Any]"  # what the assertions accept


def _report_of(x: Checked) -> dict[str, Any]:
    from kalloc_machine.session import RunOutcome
    from kalloc_machine.tools.harness import Target

    if isinstance(x, Target):
        return x.report()
    if isinstance(x, RunOutcome):
        return x.report
    return x


def report_text(report: dict[str, Any], *, quiet: bool = True) -> str:
    """The text report `kalloc run` prints piped for this report (quiet: UART, end, errors, summary)."""
    from kalloc_machine.report.console import report_console
    from kalloc_machine.report.render import render_text

    buf = io.StringIO()
    render_text(report, report_console(file=buf, color=False), quiet=quiet)  # one line per fact
    return buf.getvalue()


def _has_errors(report: dict[str, Any]) -> bool:
    return any(e["severity"] == "error" for e in report["errors"])


def assert_clean(x: Checked, *, leaks: bool = True, warnings: bool = True) -> None:
    """No kalloc error (and, with leaks=True, no leak; with warnings=False, no warning either)."""
    report = _report_of(x)
    bad = [e for e in report["errors"]
           if (e["severity"] == "error" and (leaks or e["kind"] != "leak")) or not warnings]  # fmt: skip
    if bad:
        pytest.fail(f"kalloc found {len(bad)} problem(s):\n" + report_text(report), pytrace=False)


def assert_exit(x: Checked, code: int = 0) -> None:
    """The run ended with this exit status (0 clean, 1-63 the firmware's, 64-66 kalloc's)."""
    report = _report_of(x)
    if report["exit_code"] != code:
        msg = f"exit status {report['exit_code']}, expected {code}:\n"
        pytest.fail(msg + report_text(report), pytrace=False)


def assert_uart(x: Checked, text: str) -> None:
    """The firmware printed `text` on the UART."""
    report = _report_of(x)
    if text not in report["uart"]:
        pytest.fail(f"{text!r} not in the UART output:\n" + report_text(report), pytrace=False)


def assert_errors(x: Checked, *ordered: str | Iterable[str], kinds: Iterable[str] | None = None,
                  at_least: Iterable[str] | None = None, exact: Iterable[str] | None = None,
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """The report's error kinds (errors and warnings) are as expected; returns the entries.

    kinds={...}: exactly these kinds, in any order, each any number of times (a sanitizer
    that reports a bug earlier, or twice, still passes). at_least={...}: each of these
    kinds at least once, others allowed. A single set given positionally is `kinds`.
    Positional kinds (`assert_errors(x, "double-free")`) or exact=[...]: exactly this
    list, in order, one entry each (as before kinds= existed); none at all: no entry.
    """
    if len(ordered) == 1 and isinstance(ordered[0], (set, frozenset)):
        kinds, ordered = ordered[0], ()
    forms = [f for f in (kinds, at_least, exact, ordered or None) if f is not None]
    if len(forms) > 1:
        raise TypeError("assert_errors: give one of kinds=, at_least=, exact= or positional kinds")
    report = _report_of(x)
    got = [e["kind"] for e in report["errors"]]
    if kinds is not None:
        ok, want = set(got) == set(kinds), f"the kinds {sorted(set(kinds))} (any order)"
    elif at_least is not None:
        ok, want = not Counter(set(at_least)) - Counter(got), f"at least {sorted(set(at_least))}"
    else:
        expected = [str(k) for k in (exact if exact is not None else ordered)]
        ok, want = got == expected, f"exactly {expected}"
    if not ok:
        pytest.fail(f"error kinds {got}, expected {want}:\n" + report_text(report), pytrace=False)
    return report["errors"]
