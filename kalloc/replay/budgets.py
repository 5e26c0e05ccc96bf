"""Memory budgets per allocation tag, and a trace's memory per tag (issue 18).

    load_budgets(path, ram_bytes)   a budgets file (TOML): `audio = "2MiB"`, `net = 4096`,
                                    `textures = 0.25` (a fraction of RAM) -> {tag: bytes}
    tag_table(trace, budgets)       per tag of a trace (kalloc format's `@tag`; none:
                                    "untagged"): live bytes at the end, high water and
                                    its step, and each step at which an allocation took
                                    the tag over its budget — the requested bytes, as
                                    the trace asked for them, whatever the heap

`kalloc run --budgets` (kalloc_machine.report.tags) and `kalloc replay --budgets` read
the same files.

Invariants:
 1. The table is a function of the trace and the budgets (not of the heap).
 2. Every live byte is under exactly one tag.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from kalloc.replay.trace import FREE, REALLOC, Trace

UNTAGGED = "untagged"
_SIZE = re.compile(r"^\s*([0-9]{1,15})\s*([KMG]i?B?|B)?\s*$", re.ASCII | re.IGNORECASE)
_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class BudgetError(ValueError):
    """A budgets file that cannot be read or does not follow the format."""


def _budget(name: str, tag: str, value: Any, ram_bytes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BudgetError(f"--budgets {name}: {tag}: expected a size (\"2MiB\", 4096) or a fraction")
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise BudgetError(f"--budgets {name}: {tag}: a fraction of RAM is in (0, 1], not {value}")
        return int(ram_bytes * value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise BudgetError(f"--budgets {name}: {tag}: {value!r} is not a size such as \"2MiB\"")
        return int(m.group(1)) * (_UNITS[m.group(2)[0].upper()] if m.group(2) else 1)
    if value < 0:
        raise BudgetError(f"--budgets {name}: {tag}: a budget is not negative")
    return value


def load_budgets(path: str | Path, ram_bytes: int) -> dict[str, int]:
    """tag -> budget in bytes, from a TOML file (module docstring)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BudgetError(f"--budgets {p.name}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BudgetError(f"--budgets {p.name}: not TOML: {exc}") from None
    return {tag: _budget(p.name, tag, value, ram_bytes) for tag, value in doc.items()}


def tag_table(trace: Trace, budgets: dict[str, int]) -> list[dict[str, Any]]:
    """Per tag: live and high-water requested bytes over the trace, budget crossings (module docstring)."""
    live: dict[int, tuple[str, int]] = {}
    now: dict[str, int] = {}
    high: dict[str, tuple[int, int]] = {}  # tag -> (bytes, step)
    over: dict[str, list[dict[str, int]]] = {}
    for step, op in enumerate(trace.ops):
        if op.kind == FREE:
            got = live.pop(op.id, None)
            if got is not None:
                now[got[0]] -= got[1]
            continue
        old = live.get(op.id) if op.kind == REALLOC else None
        if old is None and op.id in live:
            continue  # an id allocated twice: skipped, as the replay does
        tag = old[0] if old is not None else (op.tag or UNTAGGED)
        before = now.get(tag, 0)  # the tag's live bytes before this request
        now[tag] = before - (old[1] if old is not None else 0) + op.nbytes
        live[op.id] = (tag, op.nbytes)
        if now[tag] > high.get(tag, (0, 0))[0]:
            high[tag] = (now[tag], step)
        budget = budgets.get(tag)
        if budget is not None and before <= budget < now[tag]:
            crossing = {"step": step, "id": op.id, "size": op.nbytes, "live_bytes": now[tag]}
            over.setdefault(tag, []).append(crossing)
    names = sorted(set(now) | set(budgets), key=lambda t: (t == UNTAGGED, t))
    rows = []
    for tag in names:
        hw, at = high.get(tag, (0, None))
        budget = budgets.get(tag)
        rows.append({"tag": tag, "live_bytes": now.get(tag, 0), "high_water_bytes": hw, "high_water_step": at,
                     "budget_bytes": budget, "headroom_bytes": None if budget is None else budget - hw,
                     "over_budget": over.get(tag, [])[:20]})  # fmt: skip
    return rows


def tag_series(trace: Trace, samples: int = 500) -> tuple[list[int], dict[str, list[int]]]:
    """(steps, {tag: live requested bytes at those steps}): about `samples` points, the last included."""
    every = max(1, len(trace.ops) // samples)
    live: dict[int, tuple[str, int]] = {}
    now: dict[str, int] = {}
    steps: list[int] = []
    series: dict[str, list[int]] = {}
    for step, op in enumerate(trace.ops):
        if op.kind == FREE:
            got = live.pop(op.id, None)
            if got is not None:
                now[got[0]] -= got[1]
        else:
            old = live.get(op.id) if op.kind == REALLOC else None
            if old is not None or op.id not in live:
                tag = old[0] if old is not None else (op.tag or UNTAGGED)
                now[tag] = now.get(tag, 0) - (old[1] if old is not None else 0) + op.nbytes
                live[op.id] = (tag, op.nbytes)
        if step % every == 0 or step == len(trace.ops) - 1:
            steps.append(step)
            for tag in now:
                series.setdefault(tag, [0] * (len(steps) - 1))
            for tag, values in series.items():
                values.append(now.get(tag, 0))
    return steps, series
