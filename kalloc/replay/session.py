"""Long sessions built from traces: `kalloc replay --loop N` and `--session FILE`.

A long session is one `Trace` whose steps are the steps of shorter traces, one
after another, each instance with its own object ids (an instance's ids are its
trace's ids plus an offset, so the n-th lap never frees the first lap's objects),
and the list of `Phase` marks saying which step starts which phase.

    loop(trace, n)        the trace n times in a row; objects a lap leaves live stay
                          live (what a long session accumulates)
    load_session(path)    a session file (TOML), phases in rounds:

        rounds = 20                     # the phase list, this many times (default 1)
        [[phase]]
        name = "load level"
        trace = "level.trace"           # relative to the session file; any trace format
        [[phase]]
        name = "play"
        trace = "play.trace"
        repeat = 5                      # the trace 5 times in a row (default 1)
        [[phase]]
        name = "unload"
        free = ["load level"]           # free what those phases of this round left live

      A phase has a trace, a `free` list, or both (the frees come first). Unknown keys
      are errors.

Invariants:
 1. Building a session is a pure function of the files: same files, same trace.
 2. A session never frees an object twice or one it did not allocate: `free` lists
    only the objects still live (by the trace's own allocs and frees) when it runs.
"""

from __future__ import annotations

import bisect
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalloc.replay.trace import FREE, REALLOC, Op, Trace, TraceError, load

MAX_SESSION_STEPS = 20_000_000  # a session this long is a typo (rounds = 1e9), not a forecast


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase starts at `step` (the index of its first op) in round `round` (from 0)."""

    step: int
    name: str
    round: int

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, "round": self.round}


class _Builder:
    """Appends trace instances (fresh ids each) and frees, tracking which ids are live per phase."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.next_id = 0
        self.phases: list[Phase] = []
        self.live_by_phase: dict[str, set[int]] = {}

    def mark(self, name: str, rnd: int) -> None:
        self.phases.append(Phase(len(self.ops), name, rnd))

    def add(self, trace: Trace, phase: str) -> None:
        base = self.next_id
        live = self.live_by_phase.setdefault(phase, set())
        top = -1
        for op in trace.ops:
            ident = op.id + base
            top = max(top, op.id)
            if op.kind == FREE:
                live.discard(ident)
            elif op.kind != REALLOC or ident not in live:
                live.add(ident)
            self.ops.append(Op(op.kind, ident, op.size, op.arg, op.api, op.tag))
        self.next_id = base + top + 1
        if len(self.ops) > MAX_SESSION_STEPS:
            raise TraceError(f"the session has more than {MAX_SESSION_STEPS:,} steps")

    def free(self, phase: str) -> None:
        live = self.live_by_phase.get(phase, set())
        for ident in sorted(live):
            self.ops.append(Op(FREE, ident))
        live.clear()


def loop(trace: Trace, n: int) -> tuple[Trace, list[Phase]]:
    """`trace` n times in a row (fresh ids per lap); phase marks name each lap."""
    if n < 1:
        raise TraceError("--loop needs at least 1 lap")
    b = _Builder()
    for lap in range(n):
        b.mark("lap", lap)
        b.add(trace, "lap")
        b.live_by_phase.clear()  # a lap's survivors are never freed by name
    name = f"{trace.name} x{n}" if n > 1 else trace.name
    return Trace(name, trace.format, b.ops, {"num_ops": len(b.ops), "laps": n}), b.phases


_PHASE_KEYS = {"name", "trace", "repeat", "free"}


def _phase_spec(raw: Any, i: int, base: Path) -> tuple[str, Trace | None, int, list[str]]:
    if not isinstance(raw, dict):
        raise TraceError(f"phase {i + 1}: expected a table")
    extra = sorted(set(raw) - _PHASE_KEYS)
    if extra:
        raise TraceError(f"phase {i + 1}: unknown key {extra[0]!r} (name, trace, repeat, free)")
    name = raw.get("name", f"phase {i + 1}")
    repeat = raw.get("repeat", 1)
    frees = raw.get("free", [])
    if isinstance(frees, str):
        frees = [frees]
    if not isinstance(name, str) or not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise TraceError(f"phase {i + 1}: name must be a string and repeat a positive integer")
    if not isinstance(frees, list) or not all(isinstance(f, str) for f in frees):
        raise TraceError(f"phase {name!r}: free must be a list of phase names")
    trace = None
    if "trace" in raw:
        if not isinstance(raw["trace"], str):
            raise TraceError(f"phase {name!r}: trace must be a file name")
        trace = load(base / raw["trace"])
    elif not frees:
        raise TraceError(f"phase {name!r}: a phase needs a trace, a free list or both")
    return name, trace, repeat, frees


def load_session(path: str | Path) -> tuple[Trace, list[Phase]]:
    """Read a session file (see the module docstring); TraceError when it does not follow the format."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceError(f"{p.name}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"{p.name}: not a TOML session file: {exc}") from None
    extra = sorted(set(doc) - {"rounds", "phase"})
    if extra:
        raise TraceError(f"{p.name}: unknown key {extra[0]!r} (rounds, phase)")
    rounds = doc.get("rounds", 1)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise TraceError(f"{p.name}: rounds must be a positive integer")
    raw = doc.get("phase", [])
    if not isinstance(raw, list) or not raw:
        raise TraceError(f"{p.name}: a session needs at least one [[phase]]")
    specs = [_phase_spec(r, i, p.parent) for i, r in enumerate(raw)]
    names = [s[0] for s in specs]
    for _name, _t, _r, frees in specs:
        for f in frees:
            if f not in names:
                raise TraceError(f"{p.name}: free names {f!r}, which is not a phase")
    b = _Builder()
    for rnd in range(rounds):
        for name, trace, repeat, frees in specs:
            b.mark(name, rnd)
            for f in frees:
                b.free(f)
            for _ in range(repeat if trace is not None else 0):
                assert trace is not None
                b.add(trace, name)
    return Trace(p.name, "session", b.ops, {"num_ops": len(b.ops), "rounds": rounds}), b.phases


def phase_at(phases: list[Phase], step: int) -> Phase | None:
    """The phase step `step` belongs to (phases are in step order)."""
    i = bisect.bisect_right([ph.step for ph in phases], step) - 1
    return phases[i] if i >= 0 else None
