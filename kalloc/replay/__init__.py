"""Trace replay: allocation traces run through a heap policy without firmware, and measured.

Part of the pure allocator product: nothing here imports kalloc_machine, Unicorn or
capstone (the machine side, `kalloc replay --firmware` and a board's RAM banks, is
kalloc_machine.tools.fwreplay; the command is kalloc.cli.replay).

    trace       the trace formats read (malloc-lab, wee_alloc, kalloc) and written
                (`kalloc run --record`): a list of `Op`s over object ids
    tracegen    seeded malloc-lab-style workload generators (the shipped *.rep traces)
    replayer    `replay(trace, ka, heap)`: every request on the heap's C library face,
                self-checked, with utilization and fragmentation figures
    measure     one (trace, heap) pair measured as `kalloc replay` does: a fresh
                allocator over RAM banks, the peak pass and the checked pass, page maps
    pagemap     the owner of every physical page (the memory-map picture's data)
    plot        PNGs of a replay (matplotlib, optional)
    session     long sessions (issue 18): a trace looped N times, a TOML session of phases
    probe       probe questions (would a contiguous request succeed now?), Linux's extfrag
                index, what pins the best window at a failure
    forecast    the observer of a long session: per-step figures, each probe's cliff
    forecastplot  the forecast's timeline, the cliff map, memory by tag stacked
    budgets     budgets files and a trace's memory per tag (`--budgets`)
    pagegrid    the page grid's data: owners, slab fullness, vmalloc pages, tags per page
    gridplot    the page grid drawn (PNG), a session as a GIF and small multiples
    traces/     the shipped traces (`shipped_traces()`), with their NOTICE.md

Invariants:
 1. A replay is a function of (trace, allocator config, RAM banks, heap): same
    inputs, same figures.
"""

from __future__ import annotations

from pathlib import Path

TRACES_DIR = Path(__file__).resolve().parent / "traces"

# The heap `kalloc replay` and `kalloc bench` use unless told: chosen by measurement
# (docs/performance.md, "Heap utilization").
DEFAULT_HEAP = "segfit"


def shipped_traces() -> list[Path]:
    """The traces that ship with kalloc (TRACES_DIR), in name order."""
    return sorted([*TRACES_DIR.glob("*.trace"), *TRACES_DIR.glob("*.rep")])
