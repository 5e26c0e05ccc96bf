"""Issue 14, seventh session: poison's checks on the slab hot paths, inline and compared as memcmp.

- a free of an intact object under poison runs no Sanitizer method (the red-zone check's usual
  case is inline in SlubPaths.free); damage takes Sanitizer.check_redzones, which reports it;
- the inline check finds exactly what check_redzones finds: for any object size, request size,
  ksize() and damage (left red zone, tail, red zone after the object, the object's own bytes),
  the reports and the bytes left in the slot equal those of the reference path (check_redzones,
  forced by a KASAN mark elsewhere in RAM, which makes the free take it);
- an allocation compares the free poison with a bytearray (one memcmp) and reports a write
  after free as before;
- the fill an allocation of n bytes writes is 0x5a * n + 0xcc * (size - n), and the kept views
  go with the cache's patterns.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kalloc import Kalloc
from kalloc.config import Config
from kalloc.debug import POISON_INUSE, RED_ACTIVE, free_pattern
from kalloc.page import PAGE_SHIFT
from kalloc.sanitize import Sanitizer
from kalloc.slab import Slab


def _ka(sanitize: str = "poison") -> Kalloc:
    return Kalloc.standalone(config=Config(sanitize=sanitize))


def _slab_of(ka: Kalloc, addr: int) -> Slab:
    slab = ka.live.page_owner[addr >> PAGE_SHIFT]
    assert isinstance(slab, Slab)
    return slab


def _count_check_redzones(monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    real = Sanitizer.check_redzones

    def counting(self: Sanitizer, *args: Any) -> None:
        calls.append(1)
        real(self, *args)

    monkeypatch.setattr(Sanitizer, "check_redzones", counting)
    return calls


def test_an_intact_free_runs_no_sanitizer_method(monkeypatch: Any) -> None:
    calls = _count_check_redzones(monkeypatch)
    ka = _ka()
    addr = ka.malloc(100)
    assert addr is not None
    ka.free(addr)
    assert calls == [] and not ka.reports
    slab = _slab_of(ka, addr)
    off = addr - slab.base
    assert bytes(slab.mv[off : off + slab.cache.size]) == free_pattern(slab.cache.size)


def test_damage_takes_the_reporting_path(monkeypatch: Any) -> None:
    calls = _count_check_redzones(monkeypatch)
    ka = _ka()
    left = ka.malloc(100)
    tail = ka.malloc(100)
    assert left is not None and tail is not None
    ka.phys.write(left - 1, b"\x00")
    ka.phys.write(tail + 100, b"\x00")  # first byte after the request: the tail
    ka.free(left)
    ka.free(tail)
    assert len(calls) == 2
    found = [(e.kind, e.fields["offset"]) for e in ka.reports]
    assert found == [("out-of-bounds", -1), ("out-of-bounds", 100)]


def _run(size: int, use_ksize: bool, damage: list[tuple[str, int, int]], reference: bool) -> tuple[Any, ...]:
    """malloc(size), damage it, free it; (reports, the slot's bytes after the free)."""
    ka = _ka()
    if reference:  # a KASAN mark far away: the free takes Sanitizer.check_redzones (the reference)
        ka.sanitizer.mark_reported(ka.phys.banks[-1].end - 8, 1)
    addr = ka.malloc(size)
    assert addr is not None
    slab = _slab_of(ka, addr)
    cache = slab.cache
    if use_ksize:
        assert ka.ksize(addr) == cache.size
    guard = cache.size if use_ksize else size
    for where, pos, value in damage:
        if where == "left":
            at = addr - 1 - pos % cache.left
        elif where == "after":  # from the end of what the caller may use to the end of the slot
            room = cache.stride - cache.left - guard
            if room == 0:
                continue
            at = addr + guard + pos % room
        else:  # the object's own bytes: never reported
            at = addr + pos % guard
        ka.phys.write(at, bytes([value]))
    ka.free(addr)
    slot = addr - cache.left
    reports = [(e.kind, str(e), sorted(e.fields.items(), key=lambda kv: kv[0])) for e in ka.reports]
    return reports, ka.phys.read(slot, cache.stride)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 3000),
    use_ksize=st.booleans(),
    damage=st.lists(
        st.tuples(st.sampled_from(["left", "after", "object"]), st.integers(0, 5000), st.integers(0, 255)),
        max_size=4,
    ),
)
def test_the_inline_check_reports_what_check_redzones_reports(
    size: int, use_ksize: bool, damage: list[tuple[str, int, int]]
) -> None:
    fast = _run(size, use_ksize, damage, reference=False)
    ref = _run(size, use_ksize, damage, reference=True)
    assert fast == ref


def test_a_write_after_free_is_reported_at_the_next_allocation() -> None:
    ka = _ka()
    addr = ka.malloc(200)
    assert addr is not None
    ka.free(addr)
    ka.phys.write(addr + 7, b"\x42")
    again = ka.malloc(200)
    assert again == addr
    (err,) = ka.reports
    assert err.kind == "use-after-free" and err.fields["offset"] == 7 and err.fields["count"] == 1
    slab = _slab_of(ka, addr)
    off = addr - slab.base
    assert bytes(slab.mv[off : off + 200]) == bytes([POISON_INUSE]) * 200


def test_an_untouched_free_object_is_not_reported() -> None:
    ka = _ka()
    addrs = [ka.malloc(n) for n in (1, 8, 100, 1000, 2000)]
    for a in addrs:
        assert a is not None
        ka.free(a)
    for n in (1, 8, 100, 1000, 2000):
        assert ka.malloc(n) is not None
    assert not ka.reports


def test_fill_views_are_fresh_then_red_zone_and_go_with_the_patterns() -> None:
    ka = _ka()
    addr = ka.malloc(100)
    assert addr is not None
    cache = _slab_of(ka, addr).cache
    size = cache.size
    for n in range(1, size + 1):
        assert bytes(cache.fill_views[n]) == bytes([POISON_INUSE]) * n + bytes([RED_ACTIVE]) * (size - n)
    assert len(cache.fill_views) == size
    cache.drop_patterns()
    assert len(cache.fill_views) == 0 and cache.pat_free_cmp == bytearray()
