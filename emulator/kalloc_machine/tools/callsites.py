"""Call sites: what a firmware call made is attributed to the Python line (the test) that called.

`Target.call` (tools/harness.py) returns to a *call stop*: an address in the second half
of the idle sled's mapping (the sled loops in its first 4 KiB and never runs there), one
4-byte slot per calling line, where one range hook ends the call. The window is the
machine's sled's (`IdleSled.call_stops`, sled.py): 0xF800_8000 on RV32, 0x7800_8000 on
Cortex-M (whose M-profile never executes above 0xE000_0000); a `CallSites` is made for it.
The firmware's frame chain then ends in that slot, so every backtrace of an allocation made during the call
holds it, and `attribute(report)` replaces it with a synthetic outermost frame:

    {"pc": null, "symbol": "test_foo", "file": "tests/test_x.py", "line": 12}

cutting off whatever follows (the frames of what the firmware was doing when the call
began). The calling line is the innermost Python frame in the pytest plugin's test module
(`CallOrigin`: the test's name and file, as its node id shows it), else the first frame
outside the harness (its function and file base name). Frames never show the slot's
address: slots are handed out in call order, the frame is the same whatever ran before.

Invariants:
 1. Same line, same slot; the table is part of the Target (snapshots restore it with the
    allocator's stack depot, whose backtraces name the slots).
 2. Past the last slot every new line shares the last one (named after the first line
    that got it): 7,168 calling lines per snapshot.
"""

from __future__ import annotations

import inspect
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLOT = 4
_HERE = {str(Path(__file__).with_name(name)) for name in ("harness.py", "pytest_plugin.py", "callsites.py")}


@dataclass(frozen=True, slots=True)
class CallOrigin:
    """The test that calls into the firmware (set by the pytest plugin for each test).

    name: the test's name; path: its module's file (the frame that gives the line);
    shown: that file as reports show it (the node id's "tests/test_x.py").
    """

    name: str
    path: str
    shown: str


@dataclass(slots=True)
class CallSites:
    """The call stops handed out so far (module docstring), in the window [lo, hi) of the
    machine's sled (`IdleSled.call_stops`)."""

    lo: int
    hi: int
    stops: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (name, file, line) -> stop
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)  # stop -> its synthetic frame

    def stop_for(self, origin: CallOrigin | None) -> int:
        """The call stop of the Python line calling now."""
        key = _calling_line(origin)
        stop = self.stops.get(key)
        if stop is None:
            stop = min(self.lo + SLOT * len(self.stops), self.hi - SLOT)
            self.stops[key] = stop
            self.frames.setdefault(stop, {"pc": None, "symbol": key[0], "file": key[1], "line": key[2]})
        return stop

    def holds(self, pc: int | None) -> bool:
        """Is pc a call stop (in the window, handed out or not)?"""
        return pc is not None and self.lo <= pc < self.hi

    def attribute(self, report: dict[str, Any]) -> None:
        """Every backtrace of the report that runs into a call stop ends at its test frame."""
        if self.frames:
            _attribute(report, self.frames)


def _calling_line(origin: CallOrigin | None) -> tuple[str, str, int]:
    """(name, file, line) of the caller: the origin's test line, else the first frame outside kalloc's."""
    frame = inspect.currentframe()
    first = None
    while frame is not None:
        path = frame.f_code.co_filename
        if origin is not None and path == origin.path:
            return origin.name, origin.shown, frame.f_lineno
        if first is None and path not in _HERE:
            first = (frame.f_code.co_name, posixpath.basename(path.replace("\\", "/")), frame.f_lineno)
            if origin is None:
                break
        frame = frame.f_back
    name, file, line = first or ("?", "?", 0)
    return (origin.name if origin is not None else name), file, line


def _attribute(node: Any, frames: dict[int, dict[str, Any]]) -> None:
    if isinstance(node, list):
        for item in node:
            _attribute(item, frames)
        return
    if not isinstance(node, dict):
        return
    trace = node.get("backtrace")
    if isinstance(trace, list):
        at = next((i for i, f in enumerate(trace) if isinstance(f, dict) and f.get("pc") in frames), None)
        if at is not None:
            test = frames[trace[at]["pc"]]
            node["backtrace"] = [*trace[:at], dict(test)]  # a new list: entries may share one
            if at == 0 and "pc" in node:  # the test itself asked (an allocator function called directly)
                node.update(pc=None, symbol=test["symbol"])
                if "location" in node:
                    node["location"] = {"file": test["file"], "line": test["line"]}
    for value in node.values():
        if isinstance(value, (dict, list)):
            _attribute(value, frames)
