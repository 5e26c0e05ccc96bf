"""`kalloc lab`'s score, as CS:APP's malloc lab driver computes it, but deterministic.

Per trace:
    utilization   = peak live payload / peak committed heap (the pages below the
                    highest break, 4096 bytes each: what the machine really gave);
                    `utilization_break` divides by the exact highest break instead
    instructions_per_op = emulated instructions the student's code executed / operations
Total (only when every trace is correct; else null, as mdriver prints no index):
    utilization   = the mean of the traces' utilizations
    throughput    = min(1, REFERENCE_IPO / (all instructions / all operations))
    score         = 100 * (UTIL_WEIGHT * utilization + THROUGHPUT_WEIGHT * throughput)

Weights and the reference are those of CS:APP (0.6 / 0.4; its reference was libc's
throughput on the grading machine): here a fixed number of instructions per
operation, so the same allocator scores the same on every host.

Invariants:
 1. A function of the TraceRuns: no wall-clock time anywhere in the document.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from kalloc_machine.tools.lab import PAGE, LabOptions, TraceRun
from kalloc_machine.tools.labcheck import IRQ_BASE

UTIL_WEIGHT = 0.6
THROUGHPUT_WEIGHT = 0.4
REFERENCE_IPO = 250  # instructions per operation that earn full throughput marks
MAX_FRAMES = 8  # frames of a violation's backtrace the text shows (the JSON has them all)


def figures(run: TraceRun) -> dict[str, Any]:
    """One trace's entry of the JSON document."""
    rec = run.record
    peak_payload = rec.peak_payload if rec else 0
    peak_break = rec.peak_brk if rec else 0
    committed = -(-peak_break // PAGE) * PAGE
    ok = run.violation is None
    extra: dict[str, Any] = {}
    if run.hints is not None:  # --uninit
        extra["hints"] = run.hints
    if run.irq is not None:  # --irq
        extra["irq"] = run.irq
    return {
        **extra,
        "trace": run.trace,
        "status": run.status,
        "ops": run.ops,
        "skipped_requests": run.skipped,
        "peak_payload_bytes": peak_payload,
        "peak_break_bytes": peak_break,
        "peak_committed_bytes": committed,
        "utilization": round(peak_payload / committed, 6) if ok and committed else None,
        "utilization_break": round(peak_payload / peak_break, 6) if ok and peak_break else None,
        "instructions": run.instructions,
        "instructions_per_op": round(run.instructions / run.ops, 2) if run.ops else None,
        "violation": run.violation,
    }


def document(elf_name: str, options: LabOptions, runs: list[TraceRun], board_label: str) -> dict[str, Any]:
    """The whole `--json` document."""
    traces = [figures(r) for r in runs]
    correct = all(t["violation"] is None for t in traces)
    total: dict[str, Any] = {
        "correct": correct,
        "traces": len(traces),
        "failed": sum(t["violation"] is not None for t in traces),
    }
    ops = sum(t["ops"] for t in traces)
    instr = sum(t["instructions"] for t in traces)
    total["instructions_per_op"] = round(instr / ops, 2) if ops else None
    if correct and traces:
        util = sum(t["utilization"] or 0.0 for t in traces) / len(traces)
        thru = min(1.0, REFERENCE_IPO / (instr / ops)) if ops and instr else 1.0
        total |= {
            "utilization": round(util, 6),
            "throughput": round(thru, 6),
            "score": round(100 * (UTIL_WEIGHT * util + THROUGHPUT_WEIGHT * thru), 2),
        }
    else:
        total |= {"utilization": None, "throughput": None, "score": None}
    return {
        "lab": {
            "firmware": elf_name,
            "board": board_label,
            "align": options.align,
            "heap_max": options.heap_max,
            "op_budget": options.op_budget,
            "mm_check": options.mm_check,
            "guard": options.guard,
            **_used(options),
        },
        "scoring": {
            "utilization_weight": UTIL_WEIGHT,
            "throughput_weight": THROUGHPUT_WEIGHT,
            "reference_instructions_per_op": REFERENCE_IPO,
        },
        "traces": traces,
        "total": total,
    }


def _used(options: LabOptions) -> dict[str, Any]:
    """The options of the optional detectors, only when used (a plain run keeps its bytes)."""
    out: dict[str, Any] = {}
    if options.sanitize != "off":
        out["sanitize"] = options.sanitize
    if options.uninit:
        out["uninit"] = True
    if options.irq:
        out["irq"] = {"seed": options.seed, "period": options.irq_period}
    return out


def table(doc: dict[str, Any]) -> Table:
    """The terminal table: one row per trace, then the total."""
    t = Table(
        title=f"kalloc lab: {doc['lab']['firmware']} (utilization = peak payload / peak committed pages)"
    )
    for col in ("trace", "result", "ops", "peak payload", "peak heap", "utilization", "instr/op"):
        t.add_column(col, justify="left" if col in ("trace", "result") else "right")
    for tr in doc["traces"]:
        util = tr["utilization"]
        result = "ok" if tr["violation"] is None else f"[red]{tr['violation']['kind']}[/]"
        t.add_row(
            tr["trace"],
            result,
            f"{tr['ops']:,}",
            f"{tr['peak_payload_bytes']:,}",
            f"{tr['peak_committed_bytes']:,}",
            "-" if util is None else f"{util:.1%}",
            "-" if tr["instructions_per_op"] is None else f"{tr['instructions_per_op']:,.0f}",
        )
    tot = doc["total"]
    ipo = tot["instructions_per_op"]
    if tot["score"] is not None:
        t.add_section()
        t.add_row(
            "total",
            f"score {tot['score']:.1f}/100",
            "",
            "",
            "",
            f"{tot['utilization']:.1%}",
            "-" if ipo is None else f"{ipo:,.0f}",
        )
    return t


def _block_name(ident: int) -> str:
    if ident < 0:
        return "object (new)"
    if ident >= IRQ_BASE:
        return f"the timer handler's block #{ident - IRQ_BASE}"
    return f"object {ident}"


def violation_lines(tr: dict[str, Any]) -> list[str]:
    """A failed trace's report, one fact per line (kalloc's text report style)."""
    v = tr["violation"]
    where = f"{tr['trace']}" + (f":{v['trace_line']}" if v.get("trace_line") else "")
    loc = v.get("location") or {}
    at = f"{v.get('symbol') or '??'}" + (f" ({loc['file']}:{loc['line']})" if loc.get("file") else "")
    out = [
        f"error: {v['kind']}: {v['message']}",
        f"  operation {v['op']} ({v['request']}) at {where}",
        f"  in {at}",
    ]
    out += [f"  block: {_block_name(b['id'])} at {b['addr']:#x}, {b['size']} bytes" for b in v["blocks"]]
    frames = v.get("backtrace") or []
    if len(frames) > MAX_FRAMES:  # a runaway recursion: the innermost frames say it
        frames = [*frames[:MAX_FRAMES], {"pc": None, "symbol": f"... {len(frames) - MAX_FRAMES} more frames"}]
    for f in frames:
        floc = f" ({f['file']}:{f['line']})" if f.get("file") else ""
        pc = f"{f['pc']:#010x} " if f.get("pc") is not None else ""
        out.append(f"    {pc}{f.get('symbol') or '??'}{floc}")
    return out


def hint_lines(tr: dict[str, Any]) -> list[str]:
    """A trace's hints and interrupt round, one fact per line (before its violation, if any)."""
    out = []
    for h in tr.get("hints") or []:
        loc = h.get("location") or {}
        at = f"{h.get('symbol') or '??'}" + (f" ({loc['file']}:{loc['line']})" if loc.get("file") else "")
        where = tr["trace"] + (f":{h['trace_line']}" if h.get("trace_line") else "")
        times = f", {h['count']:,} times" if h["count"] > 1 else ""
        out += [
            f"hint: {h['kind']}: {h['message']}",
            f"  first at operation {h['op']} ({h['request']}) at {where}{times}",
            f"  in {at}",
        ]
    irq = tr.get("irq")
    if irq is not None:
        out.append(
            f"irq round on {tr['trace']}: ticks {irq['ticks']:,} ({irq['in_call']:,} inside a trace "
            f"operation), handler allocations {irq['seq']:,}, frees {irq['frees']:,}, NULL {irq['nulls']:,}"
        )
    return out
