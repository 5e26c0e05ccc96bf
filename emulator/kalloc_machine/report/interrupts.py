"""Interrupts and DMA in the report: both backtraces of an interrupt-context error, and
the per-line interrupt and DMA sections (issue 4).

An allocation made in an interrupt handler records one raw stack (bridge/doorbell.py
walks the frame-pointer chain over RAM). The SDK's trap vector builds a frame whose
"return address" slot holds `mepc` (firmware/trap.S, docs/abi.md "Trap frames"), so that
stack reads: the handler's frames, a return address inside the trap vector, then the
interrupted PC (exact, not a return address) and the interrupted code's callers. Here it
is cut in two at the trap vector, so an `invalid-context` report names both the handler
(where the bad call is) and the code the interrupt landed in.

Invariants:
 1. Only raw facts from the run are used (depot stacks, counters, transfers): the
    sections are deterministic, like the rest of the JSON.
 2. A stack without a trap frame (irqs-off in task code, a walk cut short) is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc.errors import KallocError

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.elf import Firmware
    from kalloc_machine.machine import Machine, RunResult
    from kalloc_machine.report.symbols import Symbolizer

DMA_TRANSFERS_LISTED = 64  # the report lists the first transfers; counts cover all


def trap_vector(firmware: Firmware) -> tuple[int, int] | None:
    """[kalloc_trap_vector, __kalloc_trap_vector_end), or None for a non-SDK ELF."""
    lo = firmware.symbol_addr("kalloc_trap_vector")
    hi = firmware.symbol_addr("__kalloc_trap_vector_end")
    return (lo, hi) if lo is not None and hi is not None else None


def split_at_trap(pcs: tuple[int, ...], vector: tuple[int, int]) -> tuple[list[int], list[int]]:
    """(handler part up to the trap vector's frame, interrupted part starting at mepc)."""
    lo, hi = vector
    for i, pc in enumerate(pcs):
        if lo < pc <= hi and i + 1 < len(pcs):  # a return address: the call is at pc - 1
            return list(pcs[: i + 1]), list(pcs[i + 1 :])
    return list(pcs), []


def annotate_interrupt_context(entry: dict[str, Any], err: KallocError, sym: Symbolizer,
                               firmware: Firmware) -> None:  # fmt: skip
    """Give an interrupt-context `invalid-context` entry its two backtraces.

    Adds `handler` (the handler function's name), `interrupted_pc` (the trap frame's
    mepc) and `interrupted` {pc, symbol, location, backtrace}; `backtrace` keeps the
    handler's frames only.
    """
    vector = trap_vector(firmware)
    if err.kind != "invalid-context" or err.fields.get("context") != "irq" or vector is None:
        return
    if sym.depot is None or not err.site:
        return
    handler_pcs, interrupted_pcs = split_at_trap(sym.depot.get(err.site), vector)
    if not interrupted_pcs:
        return
    frames = sym.user_frames(handler_pcs)
    mepc = interrupted_pcs[0]
    inner = [sym.frame(mepc)] + [sym.frame(pc, returns=True) for pc in interrupted_pcs[1:]]
    top = inner[0]
    entry["backtrace"] = frames
    entry["handler"] = frames[0]["symbol"] if frames else None
    entry["interrupted_pc"] = mepc
    location = {"file": top["file"], "line": top["line"]}
    entry["interrupted"] = {"pc": mepc, "symbol": top["symbol"], "location": location, "backtrace": inner}
    where = f" ({top['file']}:{top['line']})" if top["file"] else ""
    who = top["symbol"] or "??"
    entry["message"] += f" (handler {entry['handler']}, interrupted {who} at {mepc:#x}{where})"


def interrupts_section(result: RunResult, machine: Machine, lines_stats: dict[int, Any],
                       ka: Kalloc) -> dict[str, Any]:  # fmt: skip
    """Per line: taken, raised, allocations/frees/bytes/failures in its handler; the
    lowest free-page level each zone reached; the injector's firing times."""
    per_line: dict[str, Any] = {}
    for line in sorted(set(result.irq_counts) | set(result.irq_raised) | set(lines_stats)):
        st = lines_stats.get(line)
        per_line[str(line)] = {
            "count": result.irq_counts.get(line, 0),
            "raised": result.irq_raised.get(line, result.irq_counts.get(line, 0) if line == 0 else 0),
            "allocs": st.allocs if st else 0,
            "frees": st.frees if st else 0,
            "bytes": st.bytes if st else 0,
            "failures": st.failures if st else 0,
        }
    out: dict[str, Any] = {
        "per_line": per_line,
        "lowest_free_pages": {z["name"]: z["min_free_seen"] for z in ka.stats().get("zones", [])},
        "exact_cuts": machine.cuts,
    }
    if machine.injector is not None:
        inj = machine.injector  # times: the first FIRED_KEPT; count: all of them
        out["injected"] = {"line": inj.line, "times": list(inj.fired), "count": inj.fired_count}
    return out


def dma_section(result: RunResult, machine: Machine, errors: list[KallocError]) -> dict[str, Any]:
    """Transfers, bytes moved, failed transfers and DMA error reports."""
    transfers = result.dma_transfers
    done = [t for t in transfers if t["status"] == "done"]
    dma = machine.dma  # its counters cover every transfer; result.dma_transfers only the first ones
    count, completed = (dma.count, dma.completed) if dma is not None else (len(transfers), len(done))
    dma_errors = [e for e in errors if e.kind in ("dma-unreachable", "dma-boundary") or e.fields.get("dma")]
    return {
        "transfers": count,
        "completed": completed,
        "failed": count - completed,
        "bytes": dma.bytes_done if dma is not None else sum(t["len"] for t in done),
        "errors": sum(e.fields.get("count", 1) for e in dma_errors),  # repeats too (report/errorlog.py)
        "ignored_starts": machine.dma.ignored_starts if machine.dma is not None else 0,
        "list": transfers[:DMA_TRANSFERS_LISTED],
    }
