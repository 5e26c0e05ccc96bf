"""Where a `kalloc lab` violation happened, as its report entry: the operation, the trace line, the code.

`place` turns a Violation (tools/labcheck.py) raised while operation i of a trace ran
into the JSON entry of that trace's failure: the operation number and request, its line
in the trace file, the blocks, and the function and line in the student's code — for
overwritten contents, the store the write watch finds (tools/labwatch.py); for a wrong
answer with no frames, the entry of the mm_* function that gave it. `at_op` gives the
same first fields for a hint.

Invariants:
 1. The top frame is the first one in the student's own source (not firmware/...), when any.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc.replay.trace import CALLOC, FREE, REALLOC, Trace, format_op
from kalloc_machine.tools.labcheck import Violation, request_lines

if TYPE_CHECKING:
    from kalloc_machine.tools.lab import LabMachine, LabOptions


def at_op(trace: Trace, lines: list[int | None], k: int) -> dict[str, Any]:
    """The op, request and trace line of operation k (0-based; -1 is mm_init)."""
    if k < 0:
        return {"op": 0, "request": "mm_init", "trace_line": None}
    return {"op": k + 1, "request": format_op(trace.ops[k]), "trace_line": lines[k]}


def place(
    v: Violation,
    lab: LabMachine,
    trace: Trace,
    i: int,
    path: str | None,
    elf: str | None,
    options: LabOptions,
) -> dict[str, Any]:
    """The violation as the report entry: op, request, trace line, blocks, the student's code."""
    ops = trace.ops
    op = ops[i] if 0 <= i < len(ops) else None
    lines = request_lines(path, trace) if op is not None else []
    frames = list(v.frames)
    if v.kind == "corrupted" and elf is not None and v.addr is not None and v.since_op is not None:
        from kalloc_machine.tools.labwatch import find_writer

        frames = find_writer(elf, trace, options, v.addr, v.since_op, i) or frames
    if not frames and op is not None:
        function = {FREE: "mm_free", REALLOC: "mm_realloc"}.get(op.kind, "mm_malloc")
        if op.kind == CALLOC and lab.has & 1:
            function = "mm_calloc"
        frames = [lab.locate(function)]
    elif not frames:
        frames = [lab.locate("mm_init")]
    top = next((f for f in frames if f.get("file") and not str(f["file"]).startswith("firmware/")), frames[0])
    return {
        **v.extra,
        "kind": v.kind,
        "message": v.message,
        "op": i + 1 if op is not None else 0,
        "request": format_op(op) if op is not None else "mm_init",
        "trace_line": lines[i] if op is not None else None,
        "blocks": v.blocks,
        "pc": top.get("pc"),
        "symbol": top.get("symbol"),
        "location": {"file": top.get("file"), "line": top.get("line")},
        "backtrace": frames,
    }
