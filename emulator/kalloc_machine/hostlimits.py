"""The host's limits on one run outside the slices: Ctrl-C, and the wall clock in the leak scan.

    with sigint_stops(machine): ...     Ctrl-C asks the machine to stop (reason "interrupted")
    BoundedPhys(phys, expired)          a PhysMem-like view for kmemleak.scan that raises
                                        HostLimit once `expired()` says so

Ctrl-C: Python runs a signal handler between bytecodes, which may be inside a Unicorn
callback (a hook or an MMIO callback). A KeyboardInterrupt raised there is swallowed by
ctypes ("Exception ignored on calling ctypes callback function") and leaves the run in
an unknown state. So while a run is under way the first Ctrl-C only sets a flag and asks
Unicorn to stop (`Machine.interrupt`: the run ends at the next boundary and the report
says `end: interrupted`, exit status 130); the second one raises KeyboardInterrupt as
usual (the front end catches it: one line, status 130). Installed only from the main
thread, and not when SIGINT is ignored (a background job keeps ignoring it); nested
uses (Session.run around Machine.run) share the outer one.

Who gets the report: only `kalloc run` wants the report of an interrupted run
(`report_interrupts` on the Session / Machine). Any other caller (the pytest plugin,
the harness, explore, bench) gets a KeyboardInterrupt raised once the machine has
stopped cleanly, so a Ctrl-C aborts a test session or a search as usual and is never
mistaken for a finding.

The leak scan reads every word of the firmware's writable memory and of every live
object: over a 1 GiB board that is minutes of Python. BoundedPhys hands the scan at
most CHUNK bytes per view and asks `expired()` before each one, so the wall clock
(and Ctrl-C) is honoured every CHUNK bytes scanned.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
CHUNK = 64 << 10  # bytes per view the leak scan gets: the clock is read this often


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


_active: list[int] | None = None  # the installed handler's counter (nesting)


class HostLimit(Exception):
    """The wall clock or Ctrl-C ended a phase after the run (the leak scan)."""


@contextmanager
def sigint_stops(machine: Interruptible) -> Iterator[list[int]]:
    """While inside: the first Ctrl-C calls `machine.interrupt()`, the next raise KeyboardInterrupt.

    Yields a one-item list counting the Ctrl-Cs seen (0 when none; the caller may read it
    after the run to tell a Ctrl-C in a later phase).
    """
    global _active
    if _active is not None:  # nested: the outer handler already stops this machine
        yield _active
        return
    seen = [0]
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):
        yield seen
        return

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        seen[0] += 1
        if seen[0] > 1:
            raise KeyboardInterrupt
        machine.interrupt()

    previous = signal.signal(signal.SIGINT, on_sigint)
    _active = seen
    try:
        yield seen
    finally:
        _active = None
        signal.signal(signal.SIGINT, previous)


@dataclass(slots=True)
class _Span:
    end: int


class BoundedPhys:
    """Delegates `bank_of` / `view` to `phys` (a PhysMem or VirtualPhys), CHUNK bytes at a time."""

    def __init__(self, phys: Any, expired: Callable[[], bool]) -> None:
        self.phys, self.expired = phys, expired

    def bank_of(self, addr: int) -> Any:
        bank = self.phys.bank_of(addr)
        return None if bank is None else _Span(min(bank.end, addr + CHUNK))

    def view(self, addr: int, n: int) -> memoryview:
        if self.expired():
            raise HostLimit
        view: memoryview = self.phys.view(addr, n)
        return view
