"""The option groups `kalloc` commands share, as click decorators, and their output helpers.

The run options (board, seed, sanitize, heap, budgets, the test interrupt's --irq-*,
fault injection's --fail-*) are defined once, front-end neutral, in
kalloc_machine.tools.options.RUN_OPTIONS (the pytest plugin's --kalloc-* options come
from the same table); `run_options(...)` makes click options of them. `json_option`
and `quiet_option` are the output options of run, replay and bench; `color_option`
(--color/--no-color) that of every command that prints a report, whose consoles come
from `console()` / `stderr()` (kalloc_machine.report.console: rich on a terminal, one
line per fact and no padding when piped, NO_COLOR / FORCE_COLOR honoured).

    @run_options("board", "seed")           the listed run options, in that order in --help
    @run_option("sanitize", help=None)      one, with click keywords overridden

Invariants:
 1. A run option's flag, destination, type, default and help are RUN_OPTIONS'; a
    command overrides only what it documents differently (keywords of `run_option`).
 2. A list value that does not parse is a usage error (status 2) with the parser's message.
 3. `fail(message)` is the one way a command reports bad input: one line on
    stderr, `kalloc: error: ...`, status 3 (EXIT_BAD_INPUT); no traceback.
 4. Every output path (--json, --record, --plot) is checked when the command line is
    parsed, before any run (`output_file`, `output_dir`): a missing directory, a
    directory where a file goes, a file where a directory goes or a path that cannot be
    written is one line, status 2 (EXIT_USAGE); `--json -` (stdout) is always valid.
    A write that still fails at the end is one line, status 3.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from kalloc_machine.report.console import report_console
from kalloc_machine.session import EXIT_BAD_INPUT, EXIT_USAGE
from kalloc_machine.tools.options import RUN_OPTIONS, RunOption
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

# --fail-nth's usage error has always named the flag unquoted ("Invalid value for --fail-nth"),
# the others click's way ("'--irq-at'"): kept, command-line output is a contract.
_UNQUOTED_HINT = {"fail_nth"}


def _click_type(spec: RunOption) -> Any:
    if spec.choices:
        return click.Choice(list(spec.choices))
    if spec.low is None and spec.high is None:
        return spec.type
    if spec.type is int:
        return click.IntRange(min=None if spec.low is None else int(spec.low),
                              max=None if spec.high is None else int(spec.high))  # fmt: skip
    return _FiniteFloatRange(min=spec.low, max=spec.high)


class _FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses nan and inf (nan passes every range test; inf is no limit)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _list_callback(spec: RunOption) -> Callable[[click.Context, click.Parameter, str], tuple[int, ...]]:
    parse = spec.parse
    assert parse is not None
    hint = spec.flag if spec.field in _UNQUOTED_HINT else None

    def callback(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None

    return callback


def run_option(field: str, **overrides: Any) -> Callable[[F], F]:
    """The click option of one run option (RUN_OPTIONS[field]); keywords override click's arguments."""
    spec = RUN_OPTIONS[field]
    kw: dict[str, Any] = {"type": _click_type(spec), "default": spec.default, "help": spec.help}
    if spec.parse is not None:
        kw.update(type=str, default=",".join(map(str, spec.default)), callback=_list_callback(spec))
    if spec.multiple:  # repeatable: a tuple of the values given (--suppress FILE)
        kw["multiple"] = True
    if spec.metavar:
        kw["metavar"] = spec.metavar
    if spec.show_default:
        kw["show_default"] = True
    kw.update(overrides)
    return click.option(spec.flag, spec.field, **kw)


def run_options(*fields: str) -> Callable[[F], F]:
    """The click options of these run options, listed in --help in the order given."""

    def apply(fn: F) -> F:
        for field in reversed(fields):  # click lists the decorator applied last first
            fn = run_option(field)(fn)
        return fn

    return apply


def json_option(help: str) -> Callable[[F], F]:
    """--json FILE ('-': stdout), into the `json_path` parameter (checked: invariant 4)."""
    return click.option("--json", "json_path", metavar="FILE", help=help, callback=output_file)


def _shown(value: str) -> str:
    return value if value.isprintable() else repr(value)


def _output_problem(p: Path, directory: bool) -> str | None:
    """Why `p` cannot be written as an output file (or directory), or None."""
    if p.exists():
        if directory:
            if not p.is_dir():
                return "is not a directory"
            return None if os.access(p, os.W_OK | os.X_OK) else "directory is not writable"
        if p.is_dir():
            return "is a directory"
        if not p.is_file():  # /dev/stdout, a pipe: opening could block; ask the kernel
            return None if os.access(p, os.W_OK) else "is not writable"
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))  # changes nothing
        except OSError as exc:
            return f"cannot be written ({exc.strerror or exc})"
        return None
    parent = p.parent
    while directory and not parent.exists() and parent != parent.parent:
        parent = parent.parent  # --plot DIR is created with its parents
    if not parent.exists():
        return f"directory {_shown(str(parent))} does not exist"
    if not parent.is_dir():
        return f"{_shown(str(parent))} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {_shown(str(parent))} is not writable"
    return None


def check_output(flag: str, value: str | None, directory: bool = False) -> None:
    """Exit with a one-line usage error (status 2) unless `value` can be written (invariant 4)."""
    if value is None or (value == "-" and flag == "--json"):
        return
    try:
        problem = "is empty" if not value else _output_problem(Path(value), directory)
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long
        problem = f"cannot be used ({exc})"
    if problem:
        fail(f"{flag} {_shown(value)}: {problem}", status=EXIT_USAGE)


def output_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback: an output FILE option, checked before the command runs."""
    check_output(param.opts[0], value)
    return value


def output_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback: an output DIR option (created with its parents when missing)."""
    check_output(param.opts[0], value, directory=True)
    return value


def quiet_option(help: str) -> Callable[[F], F]:
    return click.option("-q", "--quiet", is_flag=True, help=help)


def color_option() -> Callable[[F], F]:
    """--color/--no-color into the `color` parameter (None: kalloc_machine.report.console decides)."""
    return click.option("--color/--no-color", "color", default=None,
                        help="Colour even when piped (CI logs that render ANSI), or never. Default: colour "
                             "on a terminal only; NO_COLOR set: never; FORCE_COLOR set: always.")  # fmt: skip


def console(color: bool | None = None, terminal_width: int | None = None) -> Console:
    """The console of a report on stdout: rich on a terminal, one line per fact when piped."""
    return report_console(color=color, terminal_width=terminal_width)


def stderr(color: bool | None = None) -> Console:
    """The same on stderr (the text report under `--json -`, progress, errors)."""
    return report_console(stderr=True, color=color)


def fail(message: object, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """`kalloc: error: message` on stderr, then exit (invariant 3)."""
    stderr().print(f"kalloc: error: {message}", markup=False, soft_wrap=True)  # never wrapped: one line
    sys.exit(status)


def write_json(json_path: str, text: str) -> None:
    """JSON text to the --json FILE, or to stdout for '-'."""
    if json_path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(json_path).write_text(text)
    except OSError as exc:  # checked at the start (invariant 4), but the disk can fill up
        fail(f"--json {_shown(json_path)}: cannot write: {exc.strerror or exc}")
