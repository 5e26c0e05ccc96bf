"""Slab caches: layout, slab states, shrink/destroy, misuse, and the poison/red-zone sanitizer."""

from __future__ import annotations

import pytest

from kalloc import SLAB_CACHE_DMA, SLAB_HWCACHE_ALIGN, SLAB_KALLOC_CTOR, Caller, Config, Kalloc, gfp
from kalloc.debug import POISON_END, POISON_FREE, POISON_INUSE, RED_ACTIVE
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidFreeError,
    LeakError,
    OutOfBoundsError,
    UseAfterFreeError,
)
from kalloc.page import PAGE_SIZE
from kalloc.slab import (
    SLAB_CPU,
    SLAB_EMPTY,
    SLAB_FULL,
    SLAB_PARTIAL,
    calculate_order,
    min_partial_for,
    slot_layout,
)

KERNEL = gfp.GFP_KERNEL


# ---------------------------------------------------------------- layout


def test_handles_are_small_and_deterministic() -> None:
    ka = Kalloc.standalone()
    a, b, c = (ka.kmem_cache_create(n, 40) for n in "abc")
    assert (a.handle, b.handle, c.handle) == (1, 2, 3)
    assert ka.cache_by_handle(2) is b and ka.cache_by_handle(9) is None
    ka.kmem_cache_destroy(b)
    assert ka.cache_by_handle(2) is None
    assert ka.kmem_cache_create("d", 8).handle == 4  # never reused


def test_slot_layout_with_and_without_red_zones() -> None:
    assert slot_layout(40, 8, 16) == (16, 72)
    assert slot_layout(40, 64, 16) == (64, 128)
    assert slot_layout(40, 8, 0) == (0, 40)
    assert slot_layout(20, 8, 0) == (0, 24)
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("aligned", 40, 64)
    objs = [ka.kmem_cache_alloc(c, KERNEL) for _ in range(10)]
    assert all(o % 64 == 0 for o in objs)
    h = ka.kmem_cache_create("hw", 100, 0, SLAB_HWCACHE_ALIGN)
    assert h.align == 64 and ka.kmem_cache_alloc(h, KERNEL) % 64 == 0
    small = ka.kmem_cache_create("hw-small", 20, 0, SLAB_HWCACHE_ALIGN)
    assert small.align == 32  # halved while the object fits in half a line


def test_calculate_order_follows_slub() -> None:
    # Waste at most 1/16, 1/8 or 1/4 of the slab, at most order 3, at least 8 objects if possible.
    for stride in range(8, 8300, 8):
        order = calculate_order(stride, 10)
        slab = PAGE_SIZE << order
        assert order <= 3 or stride > PAGE_SIZE << 3
        assert slab % stride <= slab // 4
    assert calculate_order(64, 10) == 0
    assert calculate_order(1056, 10) == 2
    assert min_partial_for(40) == 5 and min_partial_for(1 << 30) == 10


@pytest.mark.parametrize("sanitize", ["off", "poison"])
def test_kmalloc_slabs_waste_little(sanitize: str) -> None:
    ka = Kalloc.standalone(config=Config(sanitize=sanitize))
    for c in ka.slub.all_caches:
        limit = 8 if sanitize == "off" or c.size < 4096 else 4
        assert c.wasted_per_slab <= c.slab_bytes // limit, c


# ---------------------------------------------------------------- slab states


def test_slab_state_transitions() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("obj", 1000)  # 1000 + 2*16 -> 1040 stride
    n = c.nobjs
    first = [ka.kmem_cache_alloc(c, KERNEL) for _ in range(n)]
    (s1,) = c.slabs.values()
    assert s1.where == SLAB_CPU and s1.inuse == n
    second = ka.kmem_cache_alloc(c, KERNEL)
    assert s1.where == SLAB_FULL and len(c.slabs) == 2
    ka.kmem_cache_free(c, first[0])
    assert s1.where == SLAB_PARTIAL and c.partial == {s1.pfn: s1}
    for p in first[1:]:
        ka.kmem_cache_free(c, p)
    assert s1.where == SLAB_EMPTY and c.empty == [s1] and not c.partial
    ka.check()
    ka.kmem_cache_free(c, second)
    assert ka.kmem_cache_shrink(c) == 2 << c.order
    assert not c.slabs
    ka.check()


def test_empty_slabs_beyond_min_partial_are_freed() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("big", 3000)
    objs = [ka.kmem_cache_alloc(c, KERNEL) for _ in range(c.nobjs * 12)]
    assert len(c.slabs) == 12
    for p in objs:
        ka.kmem_cache_free(c, p)
    # The current slab stays; min_partial empty slabs are kept; the rest went back to the buddy.
    assert len(c.empty) == c.min_partial
    assert len(c.slabs) == c.min_partial + 1
    ka.check()


def test_freed_objects_are_reused_lifo_and_fresh_is_reported() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("fresh", 64, 0, SLAB_KALLOC_CTOR)
    a = ka.kmem_cache_alloc(c, KERNEL)
    assert c.last_alloc_fresh
    b = ka.kmem_cache_alloc(c, KERNEL)
    assert c.last_alloc_fresh and b != a
    ka.kmem_cache_free(c, a)
    assert ka.kmem_cache_alloc(c, KERNEL) == a
    assert not c.last_alloc_fresh
    # A constructed object keeps its contents while free: no poison.
    ka.phys.write(b, b"constructed!")
    ka.kmem_cache_free(c, b)
    assert ka.kmem_cache_alloc(c, KERNEL) == b
    assert ka.phys.read(b, 12) == b"constructed!"
    assert not ka.reports


def test_python_ctor_runs_for_every_object_at_slab_creation() -> None:
    ka = Kalloc.standalone()
    seen: list[int] = []

    def ctor(addr: int) -> None:
        seen.append(addr)
        ka.phys.write(addr, b"\x01\x02")

    c = ka.kmem_cache_create("ctor", 32, 0, 0, ctor)
    p = ka.kmem_cache_alloc(c, KERNEL)
    assert len(seen) == c.nobjs and p in seen
    assert ka.phys.read(p, 2) == b"\x01\x02"
    ka.kmem_cache_free(c, p)
    assert ka.phys.read(p, 2) == b"\x01\x02"  # not poisoned


def test_dma_cache_slabs_come_from_the_dma_zone() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("dmabuf", 256, 0, SLAB_CACHE_DMA)
    p = ka.kmem_cache_alloc(c, KERNEL)
    assert ka.buddy.zone_of(p // PAGE_SIZE).name == "DMA"


def test_destroy_with_live_objects_raises_leak_and_keeps_the_cache() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("leaky", 48)
    p = ka.kmem_cache_alloc(c, KERNEL)
    q = ka.kmem_cache_alloc(c, KERNEL)
    with pytest.raises(LeakError) as exc:
        ka.kmem_cache_destroy(c)
    assert exc.value.kind == "leak" and exc.value.fields["live"] == 2
    assert exc.value.fields["objects"] == sorted([p, q])
    assert ka.cache_by_handle(c.handle) is c
    ka.check()
    ka.kmem_cache_free(c, p)
    ka.kmem_cache_free(c, q)
    ka.kmem_cache_destroy(c)
    assert c.destroyed and ka.cache_by_handle(c.handle) is None
    ka.check()
    with pytest.raises(BadArgumentError, match="destroyed"):
        ka.kmem_cache_alloc(c, KERNEL)


# ---------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("", 10), "name"),
        (("x", 0), "0-byte"),
        (("x", 1 << 33), "size overflow"),
        (("x", 10, 3), "power of two"),
        (("x", 10, 8192), "power of two"),
        (("x", 10, 0, 0x1), "flags"),
        (("x", 8 << 20), "largest slab"),
    ],
)
def test_bad_cache_arguments(snapshot, args: tuple, words: str) -> None:
    ka = Kalloc.standalone()
    before = snapshot(ka)
    with pytest.raises(BadArgumentError, match=words):
        ka.kmem_cache_create(*args)
    assert snapshot(ka) == before and ka.cache_by_handle(1) is None
    ka.check()


def test_kmalloc_caches_are_private() -> None:
    ka = Kalloc.standalone()
    with pytest.raises(BadArgumentError):
        ka.kmem_cache_alloc(ka.kmalloc_api.by_size[64], KERNEL)
    with pytest.raises(BadArgumentError):
        ka.kmem_cache_alloc("not a cache", KERNEL)  # type: ignore[arg-type]


def test_cache_free_misuse(snapshot) -> None:
    ka = Kalloc.standalone()
    s_alloc, s_free, s_again = (ka.depot.save((n,)) for n in (1, 2, 3))
    a = ka.kmem_cache_create("a", 40)
    b = ka.kmem_cache_create("b", 40)
    pa = ka.kmem_cache_alloc(a, KERNEL, Caller(site=s_alloc))
    k = ka.kmalloc(40, KERNEL)
    before = snapshot(ka)
    with pytest.raises(InvalidFreeError, match="cache 'a' passed with cache 'b'"):
        ka.kmem_cache_free(b, pa)
    with pytest.raises(InvalidFreeError, match="8 bytes into a live object"):
        ka.kmem_cache_free(a, pa + 8)
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.kmem_cache_free(a, k)
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.kfree(pa)
    with pytest.raises(InvalidFreeError, match="never allocated"):
        ka.kmem_cache_free(a, pa + 72)  # the next, never used slot
    assert snapshot(ka) == before
    ka.check()
    ka.kmem_cache_free(a, pa, Caller(site=s_free))
    with pytest.raises(DoubleFreeError) as exc:
        ka.kmem_cache_free(a, pa, Caller(site=s_again))
    assert exc.value.fields["free_site"] == s_free and exc.value.fields["alloc_site"] == s_alloc
    assert exc.value.site == s_again and exc.value.addr == pa
    ka.check()


# ---------------------------------------------------------------- sanitizer bytes


def test_poison_bytes_of_fresh_free_and_red_zone() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("bytes", 40)
    p = ka.kmem_cache_alloc(c, KERNEL)
    assert ka.phys.read(p, 40) == bytes([POISON_INUSE]) * 40
    assert ka.phys.read(p - 16, 16) == bytes([RED_ACTIVE]) * 16
    assert ka.phys.read(p + 40, 16) == bytes([RED_ACTIVE]) * 16
    z = ka.kmem_cache_alloc(c, KERNEL | gfp.ZERO)
    assert ka.phys.read(z, 40) == bytes(40)
    ka.kmem_cache_free(c, p)
    assert ka.phys.read(p, 40) == bytes([POISON_FREE]) * 39 + bytes([POISON_END])


def test_write_past_the_end_is_reported_at_free() -> None:
    ka = Kalloc.standalone()
    s_alloc, s_free = ka.depot.save((0xA,)), ka.depot.save((0xF,))
    p = ka.kmalloc(20, KERNEL, Caller(site=s_alloc))  # kmalloc-32: tail 20..32 is red zone too
    ka.phys.write(p + 20, b"\x11\x22")
    ka.kfree(p, Caller(site=s_free))
    (err,) = ka.reports
    assert isinstance(err, OutOfBoundsError) and err.kind == "out-of-bounds"
    assert err.addr == p + 20 and err.site == s_free
    assert err.fields["alloc_site"] == s_alloc
    assert err.fields["offset"] == 20 and err.fields["count"] == 2
    assert err.fields["changed"] == [
        {"offset": 20, "value": 0x11, "expected": 0xCC},
        {"offset": 21, "value": 0x22, "expected": 0xCC},
    ]
    assert err.fields["object"] == {"addr": p, "size": 20, "kind": "kmalloc"}
    ka.check()
    # The red zone was repaired: reusing and freeing the slot reports nothing new.
    q = ka.kmalloc(20, KERNEL)
    ka.kfree(q)
    assert len(ka.reports) == 1


def test_write_before_the_start_is_reported() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("under", 64)
    p = ka.kmem_cache_alloc(c, KERNEL)
    ka.phys.write(p - 1, b"\x00")
    ka.kmem_cache_free(c, p)
    (err,) = ka.reports
    assert isinstance(err, OutOfBoundsError) and err.fields["offset"] == -1
    assert "before the object" in err.message


def test_write_after_free_found_by_check_poison_and_at_reuse() -> None:
    ka = Kalloc.standalone()
    s_alloc, s_free = ka.depot.save((1,)), ka.depot.save((2,))
    c = ka.kmem_cache_create("uaf", 64)
    keep = ka.kmem_cache_alloc(c, KERNEL)
    p = ka.kmem_cache_alloc(c, KERNEL, Caller(site=s_alloc))
    ka.kmem_cache_free(c, p, Caller(site=s_free))
    ka.phys.write(p + 8, b"\x00\x00\x00\x00")
    (err,) = ka.check_poison()
    assert isinstance(err, UseAfterFreeError) and err.kind == "use-after-free"
    assert err.addr == p + 8 and err.fields["free_site"] == s_free and err.fields["alloc_site"] == s_alloc
    assert err.fields["object"] == {"addr": p, "size": 64, "kind": "cache:uaf"}
    assert ka.check_poison() == []  # repaired
    assert ka.reports == []
    ka.phys.write(p, b"\x01")
    assert ka.kmem_cache_alloc(c, KERNEL) == p
    (err,) = ka.reports
    assert isinstance(err, UseAfterFreeError) and err.fields["free_site"] == s_free
    ka.kmem_cache_free(c, keep)


def test_check_poison_walks_live_red_zones_and_slab_padding() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("pad", 1000)  # 3 objects of 1040 in a page: 976 bytes of padding
    p = ka.kmem_cache_alloc(c, KERNEL)
    assert c.wasted_per_slab > 0
    ka.phys.write(p + 1000, b"!")
    ka.phys.write(c.cpu.base + c.nobjs * c.stride, b"!")
    errs = ka.check_poison()
    assert sorted(type(e).__name__ for e in errs) == ["OutOfBoundsError", "OutOfBoundsError"]
    assert any("padding" in e.message for e in errs)
    assert ka.check_poison() == []


def test_sanitize_off_does_no_poisoning() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="off"))
    c = ka.kmem_cache_create("plain", 40)
    assert c.stride == 40 and c.left == 0
    p = ka.kmem_cache_alloc(c, KERNEL)
    ka.phys.write(p, b"data")
    ka.kmem_cache_free(c, p)
    assert ka.phys.read(p, 4) == b"data"
    assert ka.check_poison() == [] and ka.reports == []


def test_redzone_zero_keeps_poison() -> None:
    ka = Kalloc.standalone(config=Config(redzone=0))
    c = ka.kmem_cache_create("norz", 40)
    assert c.stride == 40
    p = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, p)
    assert ka.phys.read(p, 1) == bytes([POISON_FREE])


# ---------------------------------------------------------------- kasan quarantine


def test_kasan_quarantine_delays_reuse_and_catches_double_free() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan", quarantine_bytes=1024))
    c = ka.kmem_cache_create("q", 64)
    p = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, p)
    assert ka.kmem_cache_alloc(c, KERNEL) != p  # still quarantined
    with pytest.raises(DoubleFreeError):
        ka.kmem_cache_free(c, p)
    ka.check()
    # 16 more 64-byte frees push p out of the 1 KiB quarantine.
    objs = [ka.kmem_cache_alloc(c, KERNEL) for _ in range(16)]
    for o in objs:
        ka.kmem_cache_free(c, o)
    assert ka.slub.quarantine is not None and ka.slub.quarantine.nbytes <= 1024
    ka.check()
    assert ka.stats()["totals"]["quarantine_bytes"] == ka.slub.quarantine.nbytes


def test_kasan_quarantine_is_drained_by_shrink_and_destroy() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    c = ka.kmem_cache_create("q", 64)
    p = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, p)
    assert ka.kmem_cache_shrink(c) == 1
    ka.kmem_cache_destroy(c)
    assert len(ka.slub.quarantine) == 0
    ka.check()


def test_kasan_quarantine_default_budget_scales_with_ram() -> None:
    assert Kalloc.standalone(config=Config(sanitize="kasan")).slub.quarantine.budget == 256 << 10
    small = Kalloc.standalone(size=1 << 20, dma_size=1 << 20, config=Config(sanitize="kasan"))
    assert small.slub.quarantine.budget == 32 << 10
