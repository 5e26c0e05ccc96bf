"""Progress on long work: on stderr, only when stderr is a terminal, erased when the work ends.

    with steps("replaying", total=n) as bar:       # kalloc replay, explore, bench
        bar.doing("trace-1 on firstfit"); ...; bar.done()
    with run_progress(session):                      # kalloc run: after RUN_DELAY_S seconds
        outcome = session.run()

A run shows its progress only once it has lasted RUN_DELAY_S seconds: instructions
executed and allocations live, redrawn at most every RUN_PERIOD_S. The run loop calls
back every POLL_SLICES slices (kalloc_machine.runloop `RunLoop.on_poll`); the callback
costs one clock read until it is time to redraw, and when stderr is not a terminal no
callback is installed at all.

Invariants:
 1. Nothing is written unless stderr itself is a terminal (`isatty` on its descriptor)
    and TERM is not "dumb": never into a CI log, even under FORCE_COLOR or
    TTY_COMPATIBLE (which make Rich treat a pipe as a terminal); never on stdout.
 2. Transient: the progress lines are erased when the work ends; what the command
    prints afterwards is exactly what it prints without a terminal.
 3. Progress never changes what it watches: the run callback only reads the clock and
    the live table's length, and a failure to draw (a closed terminal) turns progress
    off instead of reaching the run (an exception there would become an `internal` report).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich import progress as rp
from rich.console import Console
from rich.live import Live
from rich.text import Text

RUN_DELAY_S = 2.0  # a run shows progress once it has lasted this long
RUN_PERIOD_S = 0.25  # and redraws it at most this often


def enabled() -> bool:
    """True when progress may be drawn: stderr is a terminal (invariant 1)."""
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a captured stream)
        return False


def _console(color: bool | None = None) -> Console:
    """stderr, a terminal (checked by `enabled`); no colour under --no-color (NO_COLOR: Rich's own)."""
    no_color = True if color is False else None
    return Console(stderr=True, highlight=False, force_terminal=True, no_color=no_color)


class Steps:
    """Units of work done so far: `doing(label)` names the one that runs now, `done()` counts one."""

    def __init__(self, progress: rp.Progress | None = None) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=None, label="") if progress is not None else None

    def doing(self, label: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, label=label)

    def done(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)


@contextmanager
def steps(description: str, total: int | None = None, color: bool | None = None) -> Iterator[Steps]:
    """A transient progress bar over `total` units (None: a count); draws nothing off a terminal."""
    if not enabled():
        yield Steps()
        return
    columns = [rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(),
               rp.MofNCompleteColumn() if total else rp.TextColumn("{task.completed} done"),
               rp.TimeElapsedColumn(), rp.TextColumn("{task.fields[label]}")]  # fmt: skip
    with rp.Progress(*columns, console=_console(color), transient=True, redirect_stdout=False,
                     redirect_stderr=False) as progress:  # fmt: skip
        bar = Steps(progress)
        if bar.task is not None:
            progress.update(bar.task, description=description, total=total)
        yield bar


class RunProgress:
    """The run loop's poll callback: after RUN_DELAY_S, a one-line live display of the run."""

    def __init__(self, session: Any, console: Console) -> None:
        self.session, self.console = session, console
        self.started = time.perf_counter()
        self.next = self.started + RUN_DELAY_S
        self.live: Live | None = None

    def __call__(self, now: int) -> None:
        t = time.perf_counter()
        if t < self.next:
            return
        self.next = t + RUN_PERIOD_S
        try:
            self.draw(now, t)
        except Exception:  # invariant 3: a terminal that went away ends the progress, not the run
            self.session.machine.loop.on_poll = None

    def draw(self, now: int, t: float) -> None:
        s = self.session
        live = len(s.ka.live) + len(s.heap.live_allocations())
        line = Text(f"running {s.firmware_name}: {now:,} instructions, {live:,} allocations live, "
                    f"{t - self.started:.0f} s", style="dim", no_wrap=True, overflow="ellipsis")  # fmt: skip
        if self.live is None:
            self.live = Live(line, console=self.console, transient=True, auto_refresh=False,
                             redirect_stdout=False, redirect_stderr=False)  # fmt: skip
            self.live.start()
        self.live.update(line, refresh=True)

    def close(self) -> None:
        if self.live is not None:
            with contextlib.suppress(Exception):  # the terminal went away: nothing left to erase
                self.live.stop()
            self.live = None


@contextmanager
def run_progress(session: Any) -> Iterator[None]:
    """Progress of `session.run()` inside the block, when stderr is a terminal (module docstring)."""
    if not enabled():
        yield
        return
    loop = session.machine.loop
    progress = RunProgress(session, _console())
    loop.on_poll = progress
    try:
        yield
    finally:
        loop.on_poll = None
        progress.close()
