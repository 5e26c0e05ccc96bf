"""Tests of the allocator alone: pure Python, `kalloc` over a bytearray, no emulated machine.

Nothing here may need Unicorn or Capstone (tests/checks proves `pytest tests/allocator`
collects without importing them).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kalloc import Kalloc


def allocator_state(ka: Kalloc) -> tuple:
    """What a failed or rejected call must leave unchanged: pages, caches, reports, live objects."""
    return (ka.buddyinfo(), ka.slabinfo(), len(ka.reports), sorted(ka.live.items()))


@pytest.fixture
def snapshot() -> Callable[[Kalloc], tuple]:
    """snapshot(ka): the allocator's observable state, to compare before and after a misuse."""
    return allocator_state
