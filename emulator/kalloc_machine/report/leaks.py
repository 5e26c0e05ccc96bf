"""Leak errors from the exit-time scan (kalloc.kmemleak), and the report's `leaks` section.

The scan splits the live objects into still reachable, definitely lost and indirectly
lost (Valgrind's Memcheck terms: docs/user-guide.md, "Leaks"). Lost objects become one
`leak` error per (allocation site, class), definitely-lost entries first, each group in
the address order of its first object. Every leak entry carries `lost`
("definitely" | "indirectly"), `count` (objects), `bytes` and up to 16 `objects`.
Still-reachable objects are not errors: the `leaks` section counts them apart.

Invariants:
 1. The entries are a function of the scan (deterministic: address order).
 2. Sum over the leak entries of `count` / `bytes` = the section's `count` / `bytes`
    = definitely_lost + indirectly_lost.
"""

from __future__ import annotations

from typing import Any

from kalloc.errors import KallocError, LeakError
from kalloc.kmemleak import LeakScan

SHOWN_OBJECTS = 16  # objects listed per entry (the count and bytes cover them all)

_WHY = {
    "definitely": "definitely lost at exit (no pointer to them anywhere)",
    "indirectly": "indirectly lost at exit (pointed to only from other lost objects)",
}


def leak_errors(scan: LeakScan) -> list[KallocError]:
    """One `leak` error per (allocation site, lost class) of the scan's lost objects."""
    leaks: list[KallocError] = []
    for lost, objects in (("definitely", scan.definitely), ("indirectly", scan.indirectly)):
        groups: dict[Any, list[Any]] = {}
        for obj in objects:  # Allocation records: the scan's protocol names only addr and size
            groups.setdefault(getattr(obj, "site", None), []).append(obj)
        for site, objs in groups.items():
            total = sum(o.size for o in objs)
            leaks.append(LeakError(
                f"{len(objs)} object(s), {total} bytes, allocated here: {_WHY[lost]}",
                addr=objs[0].addr, site=site, lost=lost, count=len(objs), bytes=total,
                objects=[{"addr": o.addr, "size": o.size, "kind": getattr(o, "kind", None)}
                         for o in objs[:SHOWN_OBJECTS]],
            ))  # fmt: skip
    return leaks


def _total(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {"count": sum(e.get("count", 0) for e in entries),
            "bytes": sum(e.get("bytes", 0) for e in entries)}  # fmt: skip


def leaks_section(entries: list[dict[str, Any]], still_reachable: list[Any]) -> dict[str, Any]:
    """The report's `leaks` key: lost objects in all and by class, sites, still reachable apart."""
    leaks = [e for e in entries if e["kind"] == "leak"]
    return {
        **_total(leaks),
        "sites": len(leaks),
        "still_reachable": {
            "count": len(still_reachable),
            "bytes": sum(o.size for o in still_reachable),
        },
        "definitely_lost": _total([e for e in leaks if e.get("lost") == "definitely"]),
        "indirectly_lost": _total([e for e in leaks if e.get("lost") == "indirectly"]),
    }
