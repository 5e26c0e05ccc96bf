"""The timing-dependent fields of a JSON report: what may differ between two runs that made the
same calls with different code around them (the fast path on and off, issue 14).

Time on this machine is executed instructions. The fast path (kalloc_machine/fastpath.py)
executes other instructions than the hypercall stub and makes fewer hypercalls, so these
fields move with it and nothing else does (docs/abi.md, "Timing-dependent fields"):

    instructions, hypercalls, fastpath     the counts themselves, and what the blob served
    options.fastpath, options.percpu_cache the options (its reference is --percpu-cache alone)
    errors[].registers                     caller-saved registers the SDK's code left behind
    an error that ends a run by budget     where the budget ran out (pc, symbol, location,
      or timeout (kind "timeout")          backtrace, instruction, registers)
    dma.list[].started / done              instruction times of a transfer
    tags.table[].high_water                the slice start of the high-water mark
      .slice_start_instructions

`comparable(report)` is the report without them: the proof (tests/machine/
test_fastpath_proof.py) compares two of these for equality.
"""

from __future__ import annotations

import copy
from typing import Any

TOP_LEVEL = ("instructions", "hypercalls", "fastpath")
_WHERE = ("pc", "symbol", "location", "backtrace", "instruction", "registers")


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `report` without its timing-dependent fields (module docstring)."""
    out = copy.deepcopy(report)
    for key in TOP_LEVEL:
        out.pop(key, None)
    out.get("options", {}).pop("fastpath", None)
    out.get("options", {}).pop("percpu_cache", None)
    for err in out.get("errors", []):
        err.pop("registers", None)
        if err.get("kind") == "timeout":
            for key in _WHERE:
                err.pop(key, None)
    for transfer in out.get("dma", {}).get("list", []):
        transfer.pop("started", None)
        transfer.pop("done", None)
    for row in out.get("tags", {}).get("table", []):
        row.get("high_water", {}).pop("slice_start_instructions", None)
    return out
