"""The kmalloc family: size classes, ZERO_SIZE_PTR, large kmalloc, krealloc, ksize, misuse."""

from __future__ import annotations

import pytest

from kalloc import ZERO_SIZE_PTR, Caller, Config, Context, Kalloc, gfp
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidContextError,
    InvalidFreeError,
    OutOfBoundsError,
    OutOfMemoryError,
)
from kalloc.kmalloc import KMALLOC_CLASSES, kmalloc_index
from kalloc.page import PAGE_SIZE, get_order

KERNEL = gfp.GFP_KERNEL


def test_size_classes_are_linux_kmalloc_caches() -> None:
    assert KMALLOC_CLASSES == (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
    ka = Kalloc.standalone()
    names = {c.name for c in ka.slub.all_caches}
    assert {"kmalloc-96", "kmalloc-192", "kmalloc-1k", "kmalloc-8k", "dma-kmalloc-96"} <= names
    expected = {1: 8, 8: 8, 9: 16, 17: 32, 33: 64, 65: 96, 96: 96, 97: 128, 129: 192, 193: 256, 4097: 8192}
    for size, cls in expected.items():
        assert kmalloc_index(size) == cls
        p = ka.kmalloc(size, KERNEL)
        assert ka.ksize(p) == cls
        assert ka.lookup(p).kind == "kmalloc"


@pytest.mark.parametrize("sanitize", ["off", "poison", "kasan"])
def test_alignment_is_16_from_16_bytes(sanitize: str) -> None:
    ka = Kalloc.standalone(config=Config(sanitize=sanitize))
    for size in (1, 8, 9, 16, 24, 96, 100, 192, 1000, 5000):
        ptrs = [ka.kmalloc(size, KERNEL) for _ in range(5)]
        align = 16 if size > 8 else 8
        assert all(p % align == 0 for p in ptrs), (size, [hex(p) for p in ptrs])


def test_zero_size_ptr() -> None:
    ka = Kalloc.standalone()
    assert ka.kmalloc(0, KERNEL) == ZERO_SIZE_PTR == 16
    ka.kfree(ZERO_SIZE_PTR)
    ka.kfree(0)
    assert ka.ksize(ZERO_SIZE_PTR) == 0 and ka.ksize(0) == 0
    assert ka.live_allocations() == []
    ka.check()


def test_large_kmalloc_comes_from_the_page_allocator() -> None:
    ka = Kalloc.standalone()
    free = ka.buddy.free_pages
    p = ka.kmalloc(8193, KERNEL)
    assert p % PAGE_SIZE == 0 and p // PAGE_SIZE not in ka.page_owner
    assert free - ka.buddy.free_pages == 1 << get_order(8193)
    assert ka.ksize(p) == 4 * PAGE_SIZE
    ka.kfree(p)
    assert ka.buddy.free_pages == free
    ka.check()


def test_large_kmalloc_tail_red_zone() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(10000, KERNEL)
    assert ka.phys.read(p + 10000, 12288 - 10000) == b"\xcc" * 2288
    ka.phys.write(p + 10000, b"X")
    assert [type(e) for e in ka.check_poison()] == [OutOfBoundsError]
    ka.phys.write(p + 12287, b"Y")
    ka.kfree(p)
    (err,) = ka.reports
    assert isinstance(err, OutOfBoundsError) and err.fields["offset"] == 12287


def test_gfp_dma_kmalloc_lies_in_the_dma_zone() -> None:
    ka = Kalloc.standalone()
    for size in (8, 100, 5000, 50000):
        p = ka.kmalloc(size, KERNEL | gfp.DMA)
        assert ka.buddy.zone_of(p // PAGE_SIZE).name == "DMA"
        q = ka.kmalloc(size, KERNEL)
        assert ka.buddy.zone_of(q // PAGE_SIZE).name == "Normal"


def test_kzalloc_and_kcalloc_zero_memory() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="off"))
    p = ka.kmalloc(64, KERNEL)
    ka.phys.write(p, b"\xff" * 64)
    ka.kfree(p)
    assert ka.kzalloc(64, KERNEL) == p
    assert ka.phys.read(p, 64) == bytes(64)
    q = ka.kcalloc(10, 100, KERNEL)
    assert ka.phys.read(q, 1000) == bytes(1000)
    assert ka.kcalloc(1 << 16, 1 << 16, KERNEL) is None
    (err,) = ka.reports
    assert isinstance(err, OutOfMemoryError) and "overflows" in err.message
    assert ka.kcalloc(1 << 16, 1 << 16, KERNEL | gfp.NOWARN) is None
    assert len(ka.reports) == 1


def test_krealloc_follows_linux() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(40, KERNEL)
    ka.phys.write(p, bytes(range(40)))
    assert ka.krealloc(p, 60, KERNEL) == p  # fits in kmalloc-64
    assert ka.phys.read(p, 40) == bytes(range(40))
    assert ka.phys.read(p + 40, 20) == b"\x5a" * 20  # growth reads as fresh
    assert ka.phys.read(p + 60, 4) == b"\xcc" * 4  # new tail guarded
    q = ka.krealloc(p, 1000, KERNEL)
    assert q != p and ka.phys.read(q, 40) == bytes(range(40))
    assert ka.lookup(p) is None
    r = ka.krealloc(q, 10, KERNEL)
    assert r == q and ka.phys.read(r, 10) == bytes(range(10))
    assert ka.krealloc(r, 0, KERNEL) == ZERO_SIZE_PTR
    assert ka.lookup(r) is None
    s = ka.krealloc(0, 30, KERNEL)
    assert s is not None and ka.krealloc(ZERO_SIZE_PTR, 30, KERNEL) is not None
    assert not ka.reports
    ka.check()


def test_krealloc_zero_flag_zeroes_the_growth() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(10, KERNEL)
    p = ka.krealloc(p, 16, KERNEL | gfp.ZERO)
    assert ka.phys.read(p + 10, 6) == bytes(6)
    q = ka.krealloc(p, 5000, KERNEL | gfp.ZERO)
    assert ka.phys.read(q + 16, 4984) == bytes(4984)


def test_krealloc_failure_keeps_the_old_object() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(100, KERNEL)
    ka.phys.write(p, b"keep")
    assert ka.krealloc(p, 64 << 20, KERNEL) is None
    assert ka.phys.read(p, 4) == b"keep" and ka.lookup(p).addr == p
    ka.kfree(p)
    ka.check()


def test_krealloc_always_moves_under_kasan() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    p = ka.kmalloc(40, KERNEL)
    ka.phys.write(p, b"move me")
    q = ka.krealloc(p, 41, KERNEL)
    assert q != p and ka.phys.read(q, 7) == b"move me"
    with pytest.raises(DoubleFreeError):
        ka.kfree(p)


def test_ksize_lifts_the_tail_red_zone() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(20, KERNEL)
    assert ka.ksize(p) == 32
    ka.phys.write(p, b"\x01" * 32)
    ka.kfree(p)
    assert ka.reports == []
    big = ka.kmalloc(10000, KERNEL)
    assert ka.ksize(big) == 16384
    ka.phys.write(big + 10000, b"\x02" * 6384)
    ka.kfree(big)
    assert ka.reports == []


def test_kfree_misuse(snapshot) -> None:
    ka = Kalloc.standalone()
    s1, s2 = ka.depot.save((1,)), ka.depot.save((2,))
    p = ka.kmalloc(64, KERNEL, Caller(site=s1))
    m = ka.malloc(64)
    pages = ka.alloc_pages(KERNEL, 0)
    pool = ka.dma_pool_create("pool", 32, 0, 0)
    cpu, _ = ka.dma_pool_alloc(pool, KERNEL)
    big = ka.kmalloc(20000, KERNEL)
    before = snapshot(ka)
    for addr, words in (
        (m, "allocated by malloc"),
        (pages, "allocated by alloc_pages"),
        (cpu, "allocated by dma_pool_alloc"),
        (p + 1, "1 bytes into a live object"),
        (big + 4096, "4096 bytes into a live object"),
        (0x80F0_0000, "never allocated"),
        (0x10, None),
    ):
        if words is None:
            ka.kfree(addr)  # ZERO_SIZE_PTR
            continue
        with pytest.raises(InvalidFreeError, match=words):
            ka.kfree(addr)
    assert snapshot(ka) == before
    ka.check()
    ka.kfree(p, Caller(site=s2))
    with pytest.raises(DoubleFreeError) as exc:
        ka.kfree(p)
    assert exc.value.fields["free_site"] == s2 and exc.value.fields["alloc_site"] == s1
    ka.kfree(big)
    with pytest.raises(DoubleFreeError):
        ka.kfree(big)
    with pytest.raises(BadArgumentError):
        ka.ksize(m + 8)
    ka.check()


def test_huge_and_overflowing_sizes() -> None:
    ka = Kalloc.standalone()
    assert ka.kmalloc(5 << 20, KERNEL) is None  # above the 4 MiB largest block
    (err,) = ka.reports
    assert isinstance(err, OutOfMemoryError) and "largest block" in err.message
    assert ka.kmalloc(5 << 20, KERNEL | gfp.NOWARN) is None and len(ka.reports) == 1
    for bad in (1 << 32, -1):
        with pytest.raises(BadArgumentError, match="size overflow"):
            ka.kmalloc(bad, KERNEL, Caller(Context.IRQ))
    assert len(ka.reports) == 1  # a raised error leaves no invalid-context report behind
    ka.check()


def test_kmalloc_from_interrupt() -> None:
    ka = Kalloc.standalone()
    irq = Caller(Context.IRQ, ka.depot.save((0x42,)), 1)
    assert ka.kmalloc(32, gfp.GFP_ATOMIC, irq) is not None
    assert ka.reports == []
    assert ka.kmalloc(32, KERNEL, irq) is not None
    (err,) = ka.reports
    assert isinstance(err, InvalidContextError) and err.fields["api"] == "kmalloc"
    p = ka.kmalloc(32, gfp.GFP_ATOMIC, irq)
    p = ka.krealloc(p, 64, KERNEL, irq)
    assert len(ka.reports) == 2  # one report per call, not one per inner allocation
    ka.kfree(p, irq)  # freeing is fine anywhere


def test_not_leak_and_live_allocations() -> None:
    ka = Kalloc.standalone()
    site = ka.depot.save((7,))
    p = ka.kmalloc(30, KERNEL, Caller(site=site))
    q = ka.kmalloc(3000, KERNEL | gfp.ZERO)
    ka.not_leak(p)
    ka.not_leak(0)
    with pytest.raises(BadArgumentError):
        ka.not_leak(p + 1)
    allocs = ka.live_allocations()
    assert [a.addr for a in allocs] == sorted([p, q])
    ap = next(a for a in allocs if a.addr == p)
    assert (ap.size, ap.kind, ap.site, ap.not_leak, ap.gfp, ap.usable) == (
        30,
        "kmalloc",
        site,
        True,
        KERNEL,
        32,
    )
    assert ka.lookup(p + 40).addr == p  # in the red zone: nearest object
    ka.kfree(p)
    q2 = ka.kmalloc(30, KERNEL)
    assert q2 == p and not ka.lookup(q2).not_leak
