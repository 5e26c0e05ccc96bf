"""The work the slab hot paths do per object (issue 14): counted, not timed.

- a listener marked @page_level_only (the commit meter's) hears page-level objects only: a
  slab object's alloc and free call no Python code for it; an unmarked listener hears all;
- under poison, an allocation reads the object once (its poison) and writes it once (the
  fresh fill and the tail red zone together), and the bytes are the ones SLUB debug expects;
- the red-zone checks still report and repair damage on both sides (compared as bytes now).
"""

from __future__ import annotations

from typing import Any

from kalloc import TASK, Kalloc
from kalloc.config import Config
from kalloc.debug import POISON_INUSE, RED_ACTIVE, free_pattern
from kalloc.live import page_level_only
from kalloc.page import PAGE_SHIFT
from kalloc.slab import Slab


def _ka(sanitize: str) -> Kalloc:
    return Kalloc.standalone(config=Config(sanitize=sanitize))


def test_a_page_level_only_listener_is_not_called_for_slab_objects() -> None:
    ka = _ka("off")
    every: list[tuple[str, int]] = []
    pages_only: list[tuple[str, int]] = []

    @page_level_only
    def pages(event: str, addr: int, size: int, usable: int) -> None:
        pages_only.append((event, addr))

    ka.listeners.append(pages)
    ka.listeners.append(lambda event, addr, size, usable: every.append((event, addr)))
    small = ka.malloc(100)
    large = ka.malloc(20000)  # above the largest class: whole pages
    assert small is not None and large is not None
    ka.free(small)
    ka.free(large)
    assert every == [("alloc", small), ("alloc", large), ("free", small), ("free", large)]
    assert pages_only == [("alloc", large), ("free", large)]


def test_slab_listeners_follow_appends() -> None:
    ka = _ka("off")
    heard: list[str] = []
    ka.listeners.append(page_level_only(lambda *a: heard.append("pages")))
    assert ka.live.slab_listeners() == []
    ka.listeners.append(lambda *a: heard.append("all"))
    addr = ka.kmalloc(32, 0)
    assert addr is not None
    assert heard == ["all"]


class _CountingView:
    """Stands in for a slab's memoryview: counts the object-sized reads and writes."""

    def __init__(self, mv: memoryview) -> None:
        self.mv = mv
        self.reads = 0
        self.writes = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        return self.mv[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.writes += 1
        self.mv[key] = value

    def tobytes(self) -> bytes:
        return self.mv.tobytes()


def test_a_poisoned_allocation_reads_and_writes_its_object_once() -> None:
    ka = _ka("poison")
    first = ka.malloc(100)  # the kmalloc-128 slab exists from here
    assert first is not None
    slab = ka.live.page_owner[first >> PAGE_SHIFT]
    assert isinstance(slab, Slab)
    real = slab.mv
    view = _CountingView(real)
    slab.mv = view  # type: ignore[assignment]
    try:
        addr = ka.malloc(100, TASK)
    finally:
        slab.mv = real
    assert addr is not None and not ka.reports
    assert (view.reads, view.writes) == (1, 1)
    cache = slab.cache
    off = addr - slab.base
    assert bytes(real[off : off + 100]) == bytes([POISON_INUSE]) * 100
    assert bytes(real[off + 100 : off - cache.left + cache.stride]) == bytes([RED_ACTIVE]) * (
        cache.stride - cache.left - 100
    )
    ka.free(addr)
    assert bytes(real[off : off + cache.size]) == free_pattern(cache.size)


def test_red_zone_damage_on_both_sides_is_reported_and_repaired() -> None:
    ka = _ka("poison")
    addr = ka.malloc(40)
    assert addr is not None
    ka.phys.write(addr - 3, b"\x00")  # left red zone
    ka.phys.write(addr + 45, b"\x11\x22")  # tail: after the 40 requested bytes
    ka.free(addr)
    kinds = [(e.kind, e.fields["offset"]) for e in ka.reports]
    assert kinds == [("out-of-bounds", -3), ("out-of-bounds", 45)]
    again = ka.malloc(40)
    assert again == addr
    ka.free(again)
    assert len(ka.reports) == 2  # repaired: no second report of the same bytes
