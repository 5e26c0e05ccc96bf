"""kalloc.percpu: the per-CPU array caches (magazines) in front of SLUB (issue 14, part 3)."""

from __future__ import annotations

import random

import pytest

from kalloc import Caller, Config, Context, Kalloc, percpu
from kalloc import gfp as G
from kalloc.errors import DoubleFreeError, InvalidFreeError
from kalloc.slab import OBJ_PERCPU, OBJ_PERCPU_NEW


def magazines(limit: int = 8, size: int = 16 << 20) -> tuple[Kalloc, percpu.Magazines]:
    ka = Kalloc.standalone(size=size, config=Config(sanitize="off"))
    return ka, percpu.enable(ka, limit)


def test_alloc_pops_lifo_and_free_pushes() -> None:
    ka, mags = magazines()
    a = ka.kmalloc(100, G.GFP_KERNEL)
    assert a is not None
    ka.kfree(a)
    assert ka.kmalloc(100, G.GFP_KERNEL) == a  # the object just freed comes back first (LIFO)
    ci = mags.class_of[100]
    assert len(mags.mags[ci]) == mags.batch - 1  # one refill of `batch`, one object out
    ka.check()


def test_objects_in_magazines_are_in_use_for_the_slab_layer_and_never_leaks() -> None:
    ka, mags = magazines()
    a = ka.malloc(40)
    assert a is not None
    ka.free(a)
    assert ka.live_allocations() == []
    row = next(line for line in ka.slabinfo().splitlines() if line.startswith("kmalloc-64 "))
    assert int(row.split()[1]) == mags.batch  # active_objs: the whole refill
    assert "tunables    8    4    0" in row
    ka.check()


def test_a_second_free_of_a_magazine_object_is_a_double_free() -> None:
    ka, _ = magazines()
    a = ka.kmalloc(24, G.GFP_KERNEL)
    assert a is not None
    ka.kfree(a)
    with pytest.raises(DoubleFreeError):
        ka.kfree(a)


def test_a_free_of_a_never_handed_out_magazine_object_is_invalid() -> None:
    ka, mags = magazines()
    a = ka.kmalloc(24, G.GFP_KERNEL)
    assert a is not None
    fresh = mags.mags[mags.class_of[24]][-1]
    slab = ka.page_owner[fresh >> 12]
    assert slab.obj[(fresh - slab.base) // slab.cache.stride] == OBJ_PERCPU_NEW  # type: ignore[union-attr]
    with pytest.raises(InvalidFreeError):
        ka.kfree(fresh)


def test_the_wrong_api_goes_to_the_slow_path_and_is_reported() -> None:
    ka, _ = magazines()
    a = ka.malloc(24)
    assert a is not None
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.kfree(a)


def test_full_magazines_flush_the_oldest_batch() -> None:
    ka, mags = magazines(limit=4)
    objs = [ka.kmalloc(8, G.GFP_KERNEL) for _ in range(12)]
    for a in objs:
        ka.kfree(a)  # type: ignore[arg-type]
    mag = mags.mags[mags.class_of[8]]
    assert len(mag) <= 4 and mags.flushes >= 2
    slab = ka.page_owner[mag[0] >> 12]
    assert all(slab.obj[(x - slab.base) // slab.cache.stride] == OBJ_PERCPU for x in mag)  # type: ignore[union-attr]
    ka.check()


def test_reclaim_flushes_the_magazines_before_an_allocation_fails() -> None:
    ka, _ = magazines(limit=64, size=1 << 20)
    got = []
    for size in (2048, 1024, 512):
        while (a := ka.kmalloc(size, G.GFP_KERNEL | G.NOWARN)) is not None:
            got.append(a)
        for a in got:
            ka.kfree(a)
        got.clear()
    assert ka.kmalloc(2048, G.GFP_KERNEL) is not None  # what the other classes held came back
    ka.check()


def test_random_programs_keep_the_invariants() -> None:
    ka, _ = magazines(limit=6)
    rnd, live = random.Random(7), []
    for i in range(5000):
        if live and rnd.random() < 0.5:
            addr, k = live.pop(rnd.randrange(len(live)))
            (ka.kfree if k else ka.free)(addr)
        else:
            k = rnd.random() < 0.5
            size = rnd.randint(1, 3000)
            addr = ka.kmalloc(size, G.GFP_KERNEL) if k else ka.malloc(size)
            live.append((addr, k))
        if i % 500 == 0:
            ka.check()
    ka.check()


def test_only_with_sanitize_off() -> None:
    with pytest.raises(ValueError, match="--sanitize off"):
        percpu.enable(Kalloc.standalone(config=Config(sanitize="poison")))


def test_malloc_outside_task_context_is_reported_and_served_as_libc_does() -> None:
    ka, _ = magazines()
    plain = Kalloc.standalone(config=Config(sanitize="off"))
    irq = Caller(Context.IRQ, 0, 1)
    assert ka.malloc(40, irq) is not None and plain.malloc(40, irq) is not None
    assert [e.kind for e in ka.reports] == [e.kind for e in plain.reports] == ["invalid-context"]


def test_krealloc_and_realloc_tell_that_their_object_left_the_magazines_reach() -> None:
    """Magazines.left (issue 14, fifth session): krealloc / realloc free or resize their old object
    through Slub directly, so the layer tells `on_free` first (the fast path's byte map)."""
    ka, mags = magazines()
    told: list[int] = []
    mags.on_free = told.append
    k = ka.kmalloc(24, G.GFP_KERNEL)
    m = ka.malloc(40)
    assert k and m and not told
    k2 = ka.krealloc(k, 200, G.GFP_KERNEL)
    m2 = ka.realloc(m, 300)
    assert told == [k, m] and k2 and m2 and k2 != k and m2 != m
    assert ka.krealloc.__self__ is mags and ka.realloc.__self__ is mags  # type: ignore[attr-defined]
