"""memlayout.gaps: the inclusive spans a hook takes to leave half-open spans alone (the sled's
memory-fault hook around RAM and the fast path's window, the TLB-fill hook around its traps)."""

from __future__ import annotations

from kalloc_machine.memlayout import gaps


def test_gaps_leave_exactly_the_covered_spans() -> None:
    assert gaps([], 16) == [(0, 15)]
    assert gaps([(4, 8)], 16) == [(0, 3), (8, 15)]
    assert gaps([(8, 12), (0, 4)], 16) == [(4, 7), (12, 15)]  # unsorted in, sorted out
    assert gaps([(0, 16)], 16) == []
    assert gaps([(2, 10), (4, 6)], 16) == [(0, 1), (10, 15)]  # a span inside another
    assert gaps([(2, 5), (5, 9)], 2**64) == [(0, 1), (9, 2**64 - 1)]  # adjacent: no empty gap
