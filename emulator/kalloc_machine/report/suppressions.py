"""Suppressions (`--suppress FILE`, repeatable): known errors in third-party code left out of the report.

A suppressions file is TOML, one `[[suppress]]` table per rule (docs/user-guide.md,
"Suppressions"):

    [[suppress]]
    kind = "leak"              # an error kind (docs/abi.md), or "*" for any
    function = "cJSON_*"       # fnmatch pattern on a frame's function
    file = "third_party/*"     # fnmatch pattern on the same frame's source file
    reason = "upstream bug #123"

A rule needs `kind` and at least one of `function` / `file`; `reason` is optional
text. A rule matches an error of its kind when one frame of the error's backtrace
(for a leak: its allocation backtrace), or of the hypercall caller's site, matches
every pattern the rule gives. `file` is matched against the file as the report
names it, and also at any directory boundary ("third_party/*" matches
"src/third_party/cjson.c"). Patterns are case-sensitive (fnmatch.fnmatchcase).

Errors that end a run are never suppressed: a rule naming `cpu-fault`,
`page-fault`, `stack-overflow`, `timeout` or `internal` is refused, "*" skips them, and
so does it skip the error that ended a faulted run. A matched error is not listed in
`errors` and does not count towards the exit status; the report gains a
`suppressions` key {files, count, used: [{file, rule, reason, count}]} (only when
--suppress was given). This is not the `suppressed` key (errors past --max-errors).

Invariants:
 1. `load` raises SuppressionError (a ValueError) with one line naming the file and
    the rule for anything it cannot use: unreadable file, bad TOML, unknown key or
    kind, missing pattern. Never another exception.
 2. The first rule (files in command-line order, rules in file order) that matches an
    error takes it; `count` is the errors it took (a repeated error's `count`, 1 per leak entry).
 3. Deterministic: the section names files by their base name only (no host paths).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from kalloc.errors import KINDS, KallocError

RUN_ENDING = frozenset({"cpu-fault", "page-fault", "stack-overflow", "timeout", "internal"})
_KEYS = ("kind", "function", "file", "reason")
Entry = dict[str, Any]  # a report entry (report/json_report.py)


class SuppressionError(ValueError):
    """A suppressions file kalloc cannot use (one line: file, rule, what is wrong)."""


@dataclass(frozen=True, slots=True)
class Rule:
    file: str  # the suppressions file's base name
    number: int  # 1-based, in its file
    kind: str
    function: str | None
    source: str | None
    reason: str

    def matches(self, entry: dict[str, Any]) -> bool:
        if entry["kind"] in RUN_ENDING or (self.kind != "*" and entry["kind"] != self.kind):
            return False
        caller = entry.get("caller_site") or {}
        frames = [*entry.get("backtrace", []), *(caller.get("backtrace") or [])]
        return any(self._frame(f) for f in frames)

    def _frame(self, frame: dict[str, Any]) -> bool:
        if self.function is not None and not fnmatchcase(frame.get("symbol") or "", self.function):
            return False
        if self.source is not None:
            name = frame.get("file") or ""
            return fnmatchcase(name, self.source) or fnmatchcase(name, "*/" + self.source)
        return True


@dataclass(slots=True)
class Suppressions:
    """The rules of every --suppress file, in order."""

    files: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def apply(self, errors: list[KallocError], entries: list[dict[str, Any]],
              fatal: KallocError | None = None) -> tuple[list[KallocError], list[Entry], Entry]:  # fmt: skip
        """(errors kept, their entries, the report's {"suppressions": ...} or {} without --suppress)."""
        if not self.files:
            return errors, entries, {}
        used: dict[Rule, int] = {}
        kept_errors, kept_entries = [], []
        for err, entry in zip(errors, entries, strict=True):
            rule = None if err is fatal else next((r for r in self.rules if r.matches(entry)), None)
            if rule is None:
                kept_errors.append(err)
                kept_entries.append(entry)
            else:
                used[rule] = used.get(rule, 0) + (1 if entry["kind"] == "leak" else entry.get("count", 1))
        section = {
            "files": list(self.files),
            "count": sum(used.values()),
            "used": [{"file": r.file, "rule": r.number, "kind": r.kind, "reason": r.reason, "count": n}
                     for r, n in used.items()],
        }  # fmt: skip
        return kept_errors, kept_entries, {"suppressions": section}


def load(paths: tuple[str, ...] | list[str]) -> Suppressions:
    """The rules of the suppressions files at `paths` (SuppressionError: invariant 1)."""
    out = Suppressions()
    for path in paths:
        name = Path(path).name
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SuppressionError(f"--suppress {path}: cannot read: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SuppressionError(f"--suppress {path}: not valid TOML: {exc}") from None
        out.files.append(name)
        out.rules.extend(_rules(path, name, data))
    return out


def _rules(path: str, name: str, data: dict[str, Any]) -> list[Rule]:
    extra = sorted(k for k in data if k != "suppress")
    if extra:
        raise SuppressionError(f"--suppress {path}: unknown key {extra[0]!r} (rules are [[suppress]] tables)")
    tables = data.get("suppress", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SuppressionError(f"--suppress {path}: 'suppress' must be [[suppress]] tables")
    return [_rule(path, name, i, t) for i, t in enumerate(tables, 1)]


def _rule(path: str, name: str, number: int, table: dict[str, Any]) -> Rule:
    def bad(why: str) -> SuppressionError:
        return SuppressionError(f"--suppress {path}: rule {number}: {why}")

    unknown = sorted(k for k in table if k not in _KEYS)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r} (keys: {', '.join(_KEYS)})")
    for key in _KEYS:
        if key in table and (not isinstance(table[key], str) or (key != "reason" and not table[key])):
            raise bad(f"{key!r} must be a non-empty string")
    kind = table.get("kind")
    if kind is None:
        raise bad("'kind' is missing (an error kind, or \"*\")")
    if kind in RUN_ENDING:
        raise bad(f"{kind!r} errors end the run and cannot be suppressed")
    if kind != "*" and kind not in KINDS:
        kinds = ", ".join(k for k in KINDS if k not in RUN_ENDING)
        raise bad(f'unknown kind {kind!r} (one of {kinds}, or "*")')
    if "function" not in table and "file" not in table:
        raise bad("needs 'function' or 'file' (a pattern naming the code to suppress)")
    return Rule(name, number, kind, table.get("function"), table.get("file"), table.get("reason", ""))
