"""The default replay heap's utilization targets on the shipped real-program traces (issue 18).

Targets: mean >= 0.90 and every trace >= 0.80 on the wee_alloc real-program traces, measured
as `kalloc replay` does (peak live payload / peak committed pages, kalloc.replay.replayer) on
a fresh allocator shaped like the default board (16 MiB: 4 MiB DMA + 12 MiB).

One trace cannot reach 0.80 under any heap: cpp-demangle's peak is 16,197 bytes in 46 objects
whose sizes, rounded to their alignment (8 below 16 bytes, 16 from 16 on), add up to exactly
16,384 bytes — four pages with not one byte left for any metadata (a 4-byte tag per object
makes 16,664). Five pages is the least any allocator can commit there: 16,197 / 20,480 =
0.7909. The test holds the default heap to that bound on cpp-demangle and to 0.80 on the rest.
"""

from __future__ import annotations

import statistics

import pytest

from kalloc.page import PAGE_SIZE
from kalloc.replay import DEFAULT_HEAP, TRACES_DIR
from kalloc.replay.measure import build
from kalloc.replay.replayer import replay
from kalloc.replay.trace import load

DEFAULT_BOARD_BANKS = [("dma", 0x8000_0000, 4 << 20, True), ("normal", 0x8040_0000, 12 << 20, False)]
REAL_PROGRAMS = sorted(TRACES_DIR.glob("*.trace"))
BOUNDED = {"cpp-demangle.trace": 5}  # trace -> the fewest pages any heap can commit at its peak


def utilization(path, heap=DEFAULT_HEAP):  # type: ignore[no-untyped-def]
    ka, h, _vm = build(DEFAULT_BOARD_BANKS, heap, "off")
    res = replay(load(path), ka, h, verify=False, sample_every=1 << 30)
    assert not res.failed, res.failed[:3]
    return res


def aligned(n: int) -> int:
    a = 16 if n >= 16 else 8
    return max(8, -(-n // a) * a)


def test_cpp_demangle_needs_five_pages_under_any_heap() -> None:
    """The bound the module docstring states, recomputed from the trace."""
    live: dict[int, int] = {}
    payload = peak = 0
    at_peak: dict[int, int] = {}
    for op in load(TRACES_DIR / "cpp-demangle.trace").ops:
        payload -= live.pop(op.id, 0)
        if op.kind != "f":
            live[op.id] = op.nbytes
            payload += op.nbytes
        if payload > peak:
            peak, at_peak = payload, dict(live)
    assert sum(aligned(n) for n in at_peak.values()) == 4 * PAGE_SIZE  # no byte left for metadata
    assert sum(aligned(n + 4) for n in at_peak.values()) > 4 * PAGE_SIZE  # a 4-byte tag: 5 pages


def test_default_heap_meets_the_targets_on_the_real_program_traces() -> None:
    assert len(REAL_PROGRAMS) == 9
    figures = {}
    for path in REAL_PROGRAMS:
        res = utilization(path)
        figures[path.name] = res.utilization
        if path.name in BOUNDED:
            assert res.peak_committed == BOUNDED[path.name] * PAGE_SIZE, path.name
        else:
            assert res.utilization >= 0.80, (path.name, res.utilization)
    assert statistics.fmean(figures.values()) >= 0.90, figures


@pytest.mark.parametrize("heap", ["firstfit", "tlsf"])
def test_the_earlier_default_and_the_tlsf_reference_do_not(heap: str) -> None:
    """The targets are not met by construction: the previous default and TLSF fall short."""
    figures = [utilization(p, heap).utilization for p in REAL_PROGRAMS if p.name != "source-map.trace"]
    assert statistics.fmean(figures) < 0.90 or min(figures) < 0.80
