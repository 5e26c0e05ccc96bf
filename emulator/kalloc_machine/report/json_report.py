"""The JSON report: raw errors turned into entries a person can act on, and the canonical text.

Errors arrive raw (kalloc.errors.KallocError: addresses, depot handles, PCs).
`error_entry()` makes one entry of the report's `errors` list: every PC becomes
`{pc, symbol, file, line}` and every `*_site` depot handle a symbolized backtrace
(report/symbols.py). The report's top-level dict is assembled from each part's
section by `Session.build_report` (kalloc_machine.session); `dumps()` is its one
JSON spelling (`--json`); report/render.py renders it as text.

Invariants:
 1. The JSON holds no wall-clock times and no host paths: the same firmware,
    board, options and seed give the same bytes (wall time is text-only).
 2. Every error entry has kind, severity, message, pc (int or null), symbol,
    location {file, line} and backtrace (a list of frames).
"""

from __future__ import annotations

import json
from typing import Any

from kalloc.errors import KallocError
from kalloc_machine.report.symbols import Symbolizer


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def error_entry(err: KallocError, sym: Symbolizer) -> dict[str, Any]:
    """One error as the JSON contract describes it (docs/abi.md)."""
    fields = dict(err.fields)
    entry: dict[str, Any] = {"kind": err.kind, "severity": err.severity, "message": err.message}
    raw_bt = fields.pop("backtrace", None)
    raw_pc = fields.pop("pc", None)
    site = sym.site(err.site)
    if raw_pc is not None:
        frames = sym.trace(raw_bt or [raw_pc], first_is_return=False)
        if frames[0]["pc"] != raw_pc:
            frames.insert(0, sym.frame(raw_pc))
        top = frames[0]
    elif site is not None:
        frames, top = site["backtrace"], site["backtrace"][0]
    else:
        frames, top = [], {"pc": None, "symbol": None, "file": None, "line": None}
    entry["pc"] = top["pc"]
    entry["symbol"] = top["symbol"]
    entry["location"] = {"file": top["file"], "line": top["line"]}
    entry["backtrace"] = frames
    if err.addr is not None:
        entry["addr"] = err.addr
    for key, value in fields.items():
        if key.endswith("_site") and isinstance(value, int):
            entry[key] = sym.site(value)
        else:
            entry[key] = _jsonable(value)
    if site is not None and raw_pc is not None and "caller_site" not in entry:
        entry["caller_site"] = site
    return entry


def dumps(report: dict[str, Any]) -> str:
    """The report's canonical JSON text (stable key order, trailing newline)."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"
