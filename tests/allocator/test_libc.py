"""The C library face: zero size, realloc, calloc overflow, aligned_alloc, limits, misuse."""

from __future__ import annotations

import pytest

from kalloc import Caller, Config, Context, Kalloc, gfp
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidContextError,
    InvalidFreeError,
    OutOfBoundsError,
    OutOfMemoryError,
    UseAfterFreeError,
)
from kalloc.page import PAGE_SIZE, pages_for


def test_malloc_zero_returns_a_unique_pointer_that_must_be_freed() -> None:
    ka = Kalloc.standalone()
    a, b = ka.malloc(0), ka.malloc(0)
    assert a and b and a != b
    assert {x.size for x in ka.live_allocations()} == {0}
    assert ka.malloc_usable_size(a) == 8
    ka.free(a)
    ka.free(b)
    with pytest.raises(DoubleFreeError):
        ka.free(a)
    ka.check()


def test_malloc_zero_object_has_no_accessible_bytes() -> None:
    ka = Kalloc.standalone()
    a = ka.malloc(0)
    ka.phys.write(a, b"x")
    ka.free(a)
    (err,) = ka.reports
    assert isinstance(err, OutOfBoundsError) and err.fields["offset"] == 0


def test_null_zero_size_policy() -> None:
    ka = Kalloc.standalone(config=Config(zero_size_policy="null"))
    assert ka.malloc(0) is None and ka.calloc(0, 5) is None and ka.aligned_alloc(64, 0) is None
    p = ka.malloc(10)
    assert ka.realloc(p, 0) is None
    assert ka.lookup(p).addr == p  # still allocated: free(p) is right, never a double free
    ka.free(p)
    assert ka.reports == []
    ka.check()


def test_realloc_zero_never_returns_null_and_never_double_frees() -> None:
    ka = Kalloc.standalone()
    p = ka.malloc(100)
    q = ka.realloc(p, 0)
    assert q is not None
    live = [a.addr for a in ka.live_allocations()]
    assert live == [q]  # exactly one object: either p shrunk in place or a moved copy
    ka.free(q)
    assert ka.live_allocations() == []
    small = ka.malloc(3)
    assert ka.realloc(small, 0) == small  # same class: shrunk in place
    ka.free(small)
    ka.check()


def test_realloc_null_is_malloc_and_free_null_is_a_no_op() -> None:
    ka = Kalloc.standalone()
    p = ka.realloc(0, 50)
    assert p is not None and ka.lookup(p).kind == "malloc"
    ka.free(0)
    ka.free(p)
    ka.check()


@pytest.mark.parametrize("sanitize", ["off", "poison", "kasan"])
def test_realloc_preserves_contents(sanitize: str) -> None:
    ka = Kalloc.standalone(config=Config(sanitize=sanitize))
    data = bytes(range(256)) * 40
    p = ka.malloc(100)
    ka.phys.write(p, data[:100])
    for size in (120, 50, 5000, 9000, 20000, 8200, 3000, 1, 200):
        old = ka.lookup(p).size
        p = ka.realloc(p, size)
        keep = min(old, size)
        assert ka.phys.read(p, keep) == data[:keep]
        ka.phys.write(p, data[:size])
        ka.check()
    assert ka.reports == []


def test_realloc_in_place_when_the_class_is_unchanged() -> None:
    ka = Kalloc.standalone()
    p = ka.malloc(100)
    assert ka.realloc(p, 120) == p  # both kmalloc-128
    assert ka.realloc(p, 97) == p
    q = ka.realloc(p, 10)  # shrinks to a smaller class: moves
    assert q != p
    big = ka.malloc(10000)
    assert ka.realloc(big, 12000) == big  # still three pages
    assert ka.realloc(big, 12289) != big
    kasan = Kalloc.standalone(config=Config(sanitize="kasan"))
    r = kasan.malloc(100)
    assert kasan.realloc(r, 100) != r


def test_realloc_failure_leaves_the_object() -> None:
    ka = Kalloc.standalone()
    p = ka.malloc(100)
    assert ka.realloc(p, 8 << 20) is None
    assert isinstance(ka.reports[-1], OutOfMemoryError)
    assert ka.lookup(p).size == 100
    ka.free(p)


def test_calloc_is_zeroed_and_overflow_checked() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="off"))
    p = ka.malloc(4000)
    ka.phys.write(p, b"\xff" * 4000)
    ka.free(p)
    q = ka.calloc(40, 100)
    assert q == p and ka.phys.read(q, 4000) == bytes(4000)
    big = ka.calloc(3, 5000)
    assert ka.phys.read(big, 15000) == bytes(15000)
    assert ka.calloc(0x10000, 0x10000) is None  # 2^32 overflows the 32-bit size_t
    assert ka.calloc(0xFFFF, 0x10001) is None  # 2^32 - 1: fits, but above heap_max
    assert [type(e) for e in ka.reports] == [OutOfMemoryError, OutOfMemoryError]
    assert "overflows" in ka.reports[0].message and "heap_max" in ka.reports[1].message
    ka.check()


def test_size_limits() -> None:
    ka = Kalloc.standalone(config=Config(heap_max=1 << 20))
    assert ka.malloc((1 << 20) + 1) is None
    assert "heap_max" in ka.reports[-1].message
    assert ka.malloc(1 << 20) is not None
    kb = Kalloc.standalone()
    assert kb.malloc(5 << 20) is None  # the largest buddy block is 4 MiB
    assert "largest block" in kb.reports[-1].message
    with pytest.raises(BadArgumentError, match="size overflow"):
        kb.malloc(1 << 32)


def test_malloc_alignment_and_large_requests_use_exact_pages() -> None:
    ka = Kalloc.standalone()
    for size in (1, 7, 8):
        assert ka.malloc(size) % 8 == 0
    for size in (16, 17, 100, 8192):
        assert ka.malloc(size) % 16 == 0
    free = ka.buddy.free_pages
    p = ka.malloc(3 * PAGE_SIZE + 1)
    assert free - ka.buddy.free_pages == 4 == pages_for(3 * PAGE_SIZE + 1)
    assert ka.malloc_usable_size(p) == 4 * PAGE_SIZE
    ka.free(p)
    assert ka.buddy.free_pages == free


@pytest.mark.parametrize("sanitize", ["off", "poison"])
@pytest.mark.parametrize("align", [1, 2, 8, 16, 32, 64, 256, 2048, 4096, 8192, 65536, 4 << 20])
def test_aligned_alloc(sanitize: str, align: int) -> None:
    ka = Kalloc.standalone(config=Config(sanitize=sanitize))
    for size in (0, 1, 3, 100, 1000, 5000):
        p = ka.aligned_alloc(align, size)  # DR 460: size need not be a multiple of align
        assert p is not None and p % align == 0, (align, size)
        assert ka.malloc_usable_size(p) >= size
        ka.phys.write(p, b"\x77" * size)
        ka.check()
        ka.free(p)
    assert ka.reports == []
    ka.check()


@pytest.mark.parametrize("align", [0, 3, 24, -8, 8 << 20])
def test_aligned_alloc_rejects_bad_alignment(align: int) -> None:
    ka = Kalloc.standalone()
    assert ka.aligned_alloc(align, 64) is None
    assert ka.reports == [] and ka.live_allocations() == []


def test_free_misuse() -> None:
    ka = Kalloc.standalone()
    s1, s2 = ka.depot.save((1,)), ka.depot.save((2,))
    k = ka.kmalloc(32, gfp.GFP_KERNEL)
    p = ka.malloc(32, Caller(site=s1))
    for call, words in (
        (lambda: ka.free(k), "allocated by kmalloc"),
        (lambda: ka.realloc(k, 10), "allocated by kmalloc"),
        (lambda: ka.kfree(p), "allocated by malloc"),
        (lambda: ka.free(p + 16), "16 bytes into"),
        (lambda: ka.free(0x8020_0000), "never allocated"),
    ):
        with pytest.raises(InvalidFreeError, match=words):
            call()
    ka.check()
    ka.free(p, Caller(site=s2))
    with pytest.raises(DoubleFreeError) as exc:
        ka.realloc(p, 64)
    assert exc.value.fields["free_site"] == s2
    assert ka.malloc_usable_size(k) == 32  # accepts both heaps
    with pytest.raises(UseAfterFreeError, match="of a freed") as uaf:  # dangling, not a bad argument
        ka.malloc_usable_size(p)
    assert uaf.value.fields["free_site"] == s2
    with pytest.raises(BadArgumentError):
        ka.malloc_usable_size(p + 16)
    ka.check()


def test_malloc_from_interrupt_is_invalid_context() -> None:
    ka = Kalloc.standalone()
    irq = Caller(Context.IRQ, 0, 1)
    assert ka.malloc(10, irq) is not None
    assert ka.calloc(1, 10, irq) is not None
    p = ka.aligned_alloc(64, 10, irq)
    assert ka.realloc(p, 20, irq) is not None
    assert [type(e) for e in ka.reports] == [InvalidContextError] * 4
    assert [e.fields["api"] for e in ka.reports] == ["malloc", "calloc", "aligned_alloc", "realloc"]
