"""The run's error log: identical errors kept once with a count, distinct ones capped (error storms).

Firmware that double-frees in a loop of 200,000, or retries an allocation that
fails with a warning, files the same error over and over. Like Valgrind and
ASan, kalloc keeps the first of each kind of error and counts the rest, at the
moment each is filed, from raw fields only (PCs, stack-depot handles), so
filing costs O(1) time and the log O(max_errors) memory however long the storm:

  signature   (kind, severity, site, pc, backtrace, every `*_site` handle, service),
              and the message too for an error that names neither a pc nor a
              site (nothing else says where it came from). Addresses, sizes and
              the message otherwise are not part of it: a double free of a new
              object on each turn of the same loop is the same error.
  count       the first error of a signature gets `fields["count"]` = how many
              times it was filed, once that is more than 1 (the JSON entry's
              `count` key; absent means 1, so a run without repeats reports the
              same bytes as before). Leak entries have always carried `count`
              (objects lost at one site) and never pass through here.
  cap         once `max_errors` distinct errors are kept, a new distinct one is
              not kept but counted in `suppressed` (total and per kind);
              repeats of a kept error are still counted on it; the suppressed
              warnings are counted apart too (`warnings_by_kind`).

`ErrorLog` is the machine's `errors` list (Machine.report files through `add`).
Plain `append` (fatal errors, the run loop's timeouts and faults) keeps the error
unconditionally: the error that ended a run is never deduplicated nor suppressed.

Invariants:
 1. `len(log) <= max_errors + (errors appended directly)`; memory does not grow
    with repeats or with suppressed errors.
 2. Deterministic: the same sequence of errors gives the same entries, counts and
    suppressed summary.
 3. A suppressed error of severity "error" still makes the run's status 64
    (`suppressed_error`): an error is an error.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, SupportsIndex

from kalloc.errors import KallocError

DEFAULT_MAX_ERRORS = 1000  # distinct errors kept per run (`kalloc run --max-errors N`)
KEPT_KINDS = frozenset({"leak", "timeout", "internal"})  # admit() keeps these as they are


def signature(err: KallocError) -> tuple[Hashable, ...]:
    """What makes two errors "the same" (module docstring): raw fields only, no symbols."""
    fields = err.fields
    pc = fields.get("pc")
    bt = fields.get("backtrace")
    sites = tuple((k, v) for k, v in fields.items() if k.endswith("_site") and isinstance(v, int))
    service = fields.get("service")
    where: Hashable = None if pc is not None or err.site is not None else err.message
    return (err.kind, err.severity, err.site, pc, tuple(bt) if bt else None, sites,
            service if isinstance(service, int | str) else None, where)  # fmt: skip


class ErrorLog(list[KallocError]):
    """The errors of one run, deduplicated and capped as they are filed (module docstring)."""

    def __init__(self, max_errors: int = DEFAULT_MAX_ERRORS) -> None:
        super().__init__()
        self.max_errors = max_errors
        self.seen: dict[tuple[Hashable, ...], KallocError] = {}
        self.suppressed: dict[str, int] = {}  # kind -> errors not kept (the cap)
        self.suppressed_warnings: dict[str, int] = {}  # kind -> how many of those were warnings
        self.suppressed_error = False  # one of them had severity "error" (invariant 3)

    def add(self, err: KallocError) -> bool:
        """File a non-fatal error: counted on its first twin, kept, or suppressed past the cap.
        True when `err` itself was kept (a new entry)."""
        key = signature(err)
        first = self.seen.get(key)
        if first is not None:
            first.fields["count"] = first.fields.get("count", 1) + 1
            return False
        if len(self.seen) >= self.max_errors:
            self.suppressed[err.kind] = self.suppressed.get(err.kind, 0) + 1
            self.suppressed_error = self.suppressed_error or err.severity == "error"
            if err.severity == "warning":
                self.suppressed_warnings[err.kind] = self.suppressed_warnings.get(err.kind, 0) + 1
            return False
        err.fields.pop("count", None)  # filed again after clear() (the harness's take_errors): anew
        self.seen[key] = err
        self.append(err)
        return True

    def admit(self, errors: list[KallocError]) -> list[KallocError]:
        """File `errors` filed outside the machine (the allocator's leftover reports, the end-of-run
        checks) and return the ones kept, in order. Leaks (already one per site), timeouts and
        kalloc's own `internal` errors are kept as they are: they are never storms."""
        kept = []
        for err in errors:
            if err.kind in KEPT_KINDS:
                self.append(err)
                kept.append(err)
            elif self.add(err):
                kept.append(err)
        return kept

    def clear(self) -> None:
        super().clear()
        self.seen.clear()
        self.suppressed.clear()
        self.suppressed_warnings.clear()
        self.suppressed_error = False

    def pop(self, index: SupportsIndex = -1) -> KallocError:
        err = super().pop(index)
        key = signature(err)
        if self.seen.get(key) is err:
            del self.seen[key]
        return err

    def section(self) -> dict[str, Any]:
        """The report's `suppressed` key, {count, by_kind} (kinds sorted), or {} when none was (so a
        run under the cap reports the same keys as before); `warnings_by_kind`, how many of them
        were warnings, only when some were (the text summary counts errors and warnings apart)."""
        if not self.suppressed:
            return {}
        by_kind = dict(sorted(self.suppressed.items()))
        section: dict[str, Any] = {"count": sum(by_kind.values()), "by_kind": by_kind}
        if self.suppressed_warnings:
            section["warnings_by_kind"] = dict(sorted(self.suppressed_warnings.items()))
        return {"suppressed": section}
