"""The consoles reports are printed on: rich's rendering on a terminal, one line per fact elsewhere.

Every front end that prints with rich (kalloc run, replay, bench, explore, boards, the
pytest plugin's and the harness's report text) makes its Console here:

    report_console()                     stdout; colour and layout decided as below
    report_console(stderr=True)          stderr (the text report under `--json -`, errors)
    report_console(color=True)           --color: ANSI colour even when piped
    report_console(file=buf)             a string buffer (never a terminal: plain layout)

Layout, from the stream's own isatty() (not FORCE_COLOR, TTY_COMPATIBLE or COLUMNS):
  terminal   rich as usual: the terminal's width, long lines wrapped, rules across it.
  otherwise  (a pipe, a file, a CI log) no line is ever hard-wrapped or padded: the
             console is PLAIN_WIDTH columns wide (tables keep their natural width,
             never squeezed nor cut) and soft-wrapped (a long line stays one line), and
             `is_terminal` is False, which render.py reads to print a plain header
             instead of a rule padded to the width. One line per fact, for grep.
Colour (`want_colour`), first that applies:
  1. --color / --no-color on the command line (`color` True / False);
  2. NO_COLOR set and non-empty (https://no-color.org): no colour, no ANSI style at all;
  3. FORCE_COLOR set and non-empty (https://force-color.org): colour, even piped;
  4. otherwise colour only on a terminal.
Colour forced onto a non-terminal uses the 16 standard colours (what CI log viewers
such as GitHub Actions render); it never changes the layout.

Invariants:
 1. A non-terminal console never inserts a line break nor pads a line to a width.
 2. Without colour the output holds no ANSI escape sequence.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Literal

from rich.console import Console

PLAIN_WIDTH = 1 << 16  # "unlimited": a table wider than this would be squeezed; no line is padded to it


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):  # a closed stream (the end of a pytest run)
        return False


def want_colour(color: bool | None, tty: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour (module docstring: the flag, then NO_COLOR, then FORCE_COLOR, then the tty)."""
    if color is not None:
        return color
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR", ""):
        return False
    if env.get("FORCE_COLOR", ""):
        return True
    return tty


def report_console(*, stderr: bool = False, color: bool | None = None, file: IO[str] | None = None,
                   terminal_width: int | None = None,
                   environ: Mapping[str, str] | None = None) -> Console:  # fmt: skip
    """A Console for a report on stdout (stderr, or `file`): module docstring.

    `terminal_width` fixes the width on a terminal (a table that reads better wide);
    a non-terminal is always PLAIN_WIDTH.
    """
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    tty = _isatty(stream)
    colour = want_colour(color, tty, environ)
    color_system: Literal["auto", "standard"] | None = None
    if colour:
        color_system = "auto" if tty and color is None else "standard"
    return Console(
        file=file,
        stderr=stderr,
        force_terminal=tty,
        color_system=color_system,
        no_color=False if colour else None,  # --color wins over NO_COLOR (no-color.org)
        highlight=False,
        width=terminal_width if tty else PLAIN_WIDTH,
        soft_wrap=not tty,
    )
