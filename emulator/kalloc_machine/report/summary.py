"""The text report's last line, one summary a script can rely on, and the poison mode's limits.

    summary: clean
    summary: 200000 double-free, 1 leak (96 bytes in 3 objects)
    summary: 2 use-after-free; warnings: 3 oom
    summary: no errors; warnings: 1 oom
    summary: 1 cpu-fault; leaks not checked

Format (docs/abi.md, "The text report's summary line"): `summary: ` then the errors,
`<count> <kind>` for each kind in the order the kinds first appear in the report,
joined by ", " (`no errors` when there is none), then `; warnings: ` and the warnings
the same way when there are any, then `; leaks not checked` when the firmware did not
exit by itself (`end` is not "exit": leaks are judged only then); `clean` alone when the
report has no error nor warning and the leaks were checked. Counts are
plain integers (no thousands separator) and count every time an error happened: an
entry's `count` (identical errors are one entry, report/errorlog.py) and the errors
past --max-errors (`suppressed`). A `leak`'s count is its entries (allocation sites),
followed by `(<bytes> byte(s) in <objects> object(s))`; when the leak entries carry
`lost` ("definitely" / "indirectly"), one such part per kind of loss, e.g.
`1 leak (64 bytes in 4 objects definitely lost, 32 bytes in 1 object indirectly lost)`.

Poison mode's limits (`poison_hint`): a run under --sanitize=poison (the default) that
reports no error ends with two `note:` lines (just before the summary) saying what the
mode cannot see and how to look deeper; --quiet leaves them out.

Invariants:
 1. Reads the report dict only; the same report gives the same line.
 2. The summary is one line whatever the counts (no wrapping: report/console.py).
"""

from __future__ import annotations

from typing import Any

POISON_HINT = (
    "note: poison mode (the default) cannot see reads of freed memory or past an object, nor writes "
    "that stay in its slot's slack: run with --sanitize=kasan (a firmware built with KASAN=1 then "
    "checks in the CPU, faster)",
    "note: a -O2 build (the SDK's default) can delete a buggy store or a malloc/free pair entirely: "
    "rebuild with OPT=-Og to run the code as written (GCC deletes it at -O1 too)",
)


def repeats(entry: dict[str, Any]) -> int:
    """How many times more than once the error of `entry` happened (a leak's `count` is objects)."""
    return 0 if entry["kind"] == "leak" else max(int(entry.get("count", 1)) - 1, 0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _leak_detail(leaks: list[dict[str, Any]]) -> str:
    """`(96 bytes in 3 objects)`, or one part per `lost` value (definitely first)."""
    totals: dict[str, list[int]] = {}
    for e in leaks:
        lost = e.get("lost")
        t = totals.setdefault(lost if isinstance(lost, str) else "", [0, 0])
        t[0] += int(e.get("bytes", 0) or 0)
        t[1] += int(e.get("count", 1) or 0)
    order = sorted(totals, key=lambda k: (k != "definitely", k != "indirectly", k))
    parts = [f"{_plural(b, 'byte')} in {_plural(n, 'object')}" + (f" {lost} lost" if lost else "")
             for lost in order for b, n in [totals[lost]]]  # fmt: skip
    return f" ({', '.join(parts)})"


def _counts(report: dict[str, Any], severity: str) -> list[str]:
    entries = [e for e in report.get("errors", []) if e.get("severity") == severity]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["kind"]] = counts.get(e["kind"], 0) + (1 if e["kind"] == "leak" else 1 + repeats(e))
    sup = report.get("suppressed") or {}
    warned = sup.get("warnings_by_kind", {})
    for kind, n in sup.get("by_kind", {}).items():
        extra = warned.get(kind, 0) if severity == "warning" else n - warned.get(kind, 0)
        if extra:
            counts[kind] = counts.get(kind, 0) + extra
    leaks = [e for e in entries if e["kind"] == "leak"]
    return [f"{n} {kind}" + (_leak_detail(leaks) if kind == "leak" and leaks else "")
            for kind, n in counts.items()]  # fmt: skip


def summary_line(report: dict[str, Any]) -> str:
    """The report's last line (module docstring)."""
    errors, warnings = _counts(report, "error"), _counts(report, "warning")
    judged = report.get("end", "exit") == "exit"  # leaks are checked only when the firmware exited
    if not errors and not warnings and judged:
        return "summary: clean"
    text = "summary: " + (", ".join(errors) or "no errors")
    text += f"; warnings: {', '.join(warnings)}" if warnings else ""
    return text + ("" if judged else "; leaks not checked")


def poison_hint(report: dict[str, Any]) -> tuple[str, ...]:
    """The `note:` lines of a poison-mode run that reported no error (module docstring)."""
    if report.get("options", {}).get("sanitize") != "poison":
        return ()
    if any(e.get("severity") == "error" for e in report.get("errors", [])):
        return ()
    sup = report.get("suppressed") or {}
    if sup.get("count", 0) > sum(sup.get("warnings_by_kind", {}).values()):
        return ()
    return POISON_HINT
