"""Issue 13, "exact facts", where the allocator alone shows them.

A freed object is named by its requested size and kind (the slot beside it); a realloc in
place becomes the object's allocation site; ksize() of a freed pointer is a use-after-free;
discarding a slab (kmem_cache_destroy, shrink) checks its freed objects; bytes KASAN
reported at the access are not reported again by the free and exit checks.
"""

from __future__ import annotations

import pytest

from kalloc import Caller, Config, Kalloc, gfp
from kalloc.errors import BadArgumentError, DoubleFreeError, OutOfBoundsError, UseAfterFreeError
from kalloc.page import PAGE_SIZE

KERNEL = gfp.GFP_KERNEL


def sites(ka: Kalloc, n: int) -> list[int]:
    return [ka.depot.save((0x100 + i,)) for i in range(n)]


# -- a freed object's size and kind ---------------------------------------------------------


def test_freed_heap_objects_keep_their_requested_size_and_kind() -> None:
    ka = Kalloc.standalone()
    k, m = ka.kmalloc(177, KERNEL), ka.malloc(70)
    ka.kfree(k)
    ka.free(m)
    assert ka.describe(k + 3)["object"] == {
        "addr": k, "size": 177, "kind": "kmalloc", "usable": 192, "cache": "kmalloc-192"
    }  # fmt: skip
    assert ka.describe(m)["object"] == {
        "addr": m, "size": 70, "kind": "malloc", "usable": 96, "cache": "kmalloc-96"
    }  # fmt: skip
    c = ka.kmem_cache_create("things", 40)
    o = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, o)
    # a cache's objects are of its size exactly: no slot beside it
    assert ka.describe(o)["object"] == {"addr": o, "size": 40, "kind": "cache:things"}


def test_double_free_says_the_requested_size() -> None:
    ka = Kalloc.standalone()
    s_alloc, s_free, s_again = sites(ka, 3)
    p = ka.malloc(177, Caller(site=s_alloc))
    ka.free(p, Caller(site=s_free))
    with pytest.raises(DoubleFreeError) as exc:
        ka.free(p, Caller(site=s_again))
    err = exc.value
    assert err.message == (
        "free() of an object that was already freed:"
        " a 177-byte malloc object in a 192-byte slot of kmalloc-192"
    )
    assert err.fields["alloc_site"] == s_alloc and err.fields["free_site"] == s_free


def test_write_after_free_names_the_requested_size_not_the_class() -> None:
    ka = Kalloc.standalone()
    p = ka.malloc(177)
    ka.free(p)
    ka.phys.write(p + 180, b"\x00")  # past the 177 bytes, inside the slot: still a write after free
    (err,) = ka.check_poison()
    assert isinstance(err, UseAfterFreeError)
    tail = "at offset 180 of a freed 177-byte malloc object in a 192-byte slot of kmalloc-192"
    assert err.message.endswith(tail)
    assert "kmalloc-192 object" not in err.message


def test_a_freed_object_has_the_size_of_its_last_realloc() -> None:
    ka = Kalloc.standalone()
    p = ka.malloc(40)
    assert ka.realloc(p, 60) == p  # same class: in place
    ka.free(p)
    assert ka.describe(p)["object"]["size"] == 60


# -- realloc in place -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [40, 3 * PAGE_SIZE + 100])  # a slab slot, exact pages
def test_realloc_in_place_is_the_allocation_site(size: int) -> None:
    ka = Kalloc.standalone()
    s_malloc, s_realloc, s_free = sites(ka, 3)
    p = ka.malloc(size, Caller(site=s_malloc))
    assert ka.realloc(p, size + 10, Caller(site=s_realloc)) == p
    assert ka.live[p].site == s_realloc and ka.live[p].size == size + 10
    ka.free(p, Caller(site=s_free))
    if size < PAGE_SIZE:  # the slot remembers the realloc too
        assert ka.describe(p)["alloc_site"] == s_realloc


def test_a_shrinking_realloc_in_place_is_the_allocation_site() -> None:
    ka = Kalloc.standalone()
    s_malloc, s_realloc = sites(ka, 2)
    p = ka.malloc(60, Caller(site=s_malloc))
    assert ka.realloc(p, 50, Caller(site=s_realloc)) == p
    assert ka.live[p].site == s_realloc


def test_krealloc_in_place_is_the_allocation_site_of_a_later_overflow() -> None:
    ka = Kalloc.standalone()
    s_kmalloc, s_krealloc = sites(ka, 2)
    p = ka.kmalloc(20, KERNEL, Caller(site=s_kmalloc))
    assert ka.krealloc(p, 30, KERNEL, Caller(site=s_krealloc)) == p
    ka.phys.write(p + 30, b"X")
    ka.kfree(p)
    (err,) = ka.reports
    assert isinstance(err, OutOfBoundsError) and err.fields["alloc_site"] == s_krealloc


# -- ksize after free -------------------------------------------------------------------------


def test_ksize_of_a_freed_pointer_is_use_after_free() -> None:
    ka = Kalloc.standalone()
    s_alloc, s_free = sites(ka, 2)
    p = ka.kmalloc(100, KERNEL, Caller(site=s_alloc))
    ka.kfree(p, Caller(site=s_free))
    with pytest.raises(UseAfterFreeError) as exc:
        ka.ksize(p)
    err = exc.value
    assert err.message == "ksize() of a freed 100-byte kmalloc object in a 128-byte slot of kmalloc-128"
    assert err.fields["alloc_site"] == s_alloc and err.fields["free_site"] == s_free
    assert err.fields["object"]["size"] == 100
    big = ka.kmalloc(5 * PAGE_SIZE, KERNEL)
    ka.kfree(big)
    with pytest.raises(UseAfterFreeError):
        ka.ksize(big)
    # other pointers that are no live object keep their kind
    for bad in (p + 8, 0x8020_0000):
        with pytest.raises(BadArgumentError):
            ka.ksize(bad)
    with pytest.raises(BadArgumentError):
        ka.ksize(ka.alloc_pages(KERNEL, 0))  # live, but not a kmalloc object


# -- a slab's discard checks its freed objects -------------------------------------------------


def test_kmem_cache_destroy_checks_freed_objects_before_the_slabs_go() -> None:
    ka = Kalloc.standalone()
    s_a, s_b, s_fa, s_fb, s_destroy = sites(ka, 5)
    c = ka.kmem_cache_create("items", 24)
    a = ka.kmem_cache_alloc(c, KERNEL, Caller(site=s_a))
    b = ka.kmem_cache_alloc(c, KERNEL, Caller(site=s_b))
    ka.kmem_cache_free(c, a, Caller(site=s_fa))
    ka.kmem_cache_free(c, b, Caller(site=s_fb))
    ka.phys.write(a + 4, b"\x11")  # a's poison
    ka.phys.write(b + 24, b"\x22")  # the red zone after b
    ka.kmem_cache_destroy(c, Caller(site=s_destroy))
    uaf, oob = ka.reports
    assert isinstance(uaf, UseAfterFreeError) and uaf.addr == a + 4 and uaf.site == s_destroy
    assert uaf.fields["alloc_site"] == s_a and uaf.fields["free_site"] == s_fa
    assert isinstance(oob, OutOfBoundsError) and oob.addr == b + 24 and oob.site == s_destroy
    assert oob.message.startswith("red zone after a free object overwritten")
    assert oob.fields["alloc_site"] == s_b and oob.fields["free_site"] == s_fb
    ka.check()


def test_kmem_cache_shrink_checks_the_slabs_it_frees() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("items", 24)
    a = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, a)
    ka.phys.write(a, b"\x00")
    assert ka.kmem_cache_shrink(c) > 0
    (err,) = ka.reports
    assert isinstance(err, UseAfterFreeError) and err.addr == a


def test_a_clean_destroy_reports_nothing() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("items", 24)
    ka.kmem_cache_free(c, ka.kmem_cache_alloc(c, KERNEL))
    ka.kmem_cache_destroy(c)
    assert ka.reports == []


# -- bytes reported at the access are not reported again ------------------------------------


def test_marked_red_zone_bytes_are_not_reported_at_free() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    p = ka.kmalloc(13, KERNEL)
    ka.sanitizer.mark_reported(p + 13, 1)  # KASAN reported this store
    ka.phys.write(p + 13, b"X")
    ka.kfree(p)
    assert ka.reports == []
    ka.check()


def test_unmarked_damage_is_still_reported_and_marks_are_consumed() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    p = ka.kmalloc(13, KERNEL)
    ka.sanitizer.mark_reported(p + 13, 1)
    ka.phys.write(p + 13, b"XY")  # p[14] was no reported access (a device, uninstrumented code)
    ka.kfree(p)
    (err,) = ka.reports
    assert err.addr == p + 14 and err.fields["count"] == 1
    assert ka.sanitizer.seen == {}


def test_marked_poison_and_large_tail_bytes_are_not_reported() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    p = ka.malloc(70)
    big = ka.kmalloc(10000, KERNEL)
    ka.free(p)
    for addr in (p + 5, big + 10001):
        ka.sanitizer.mark_reported(addr, 1)
        ka.phys.write(addr, b"X")
    ka.kfree(big)
    assert ka.check_poison() == [] and ka.reports == []


def test_poison_mode_reports_what_it_finds() -> None:
    """The marks come only from KASAN's access reports: without one the checks report as before."""
    ka = Kalloc.standalone()
    p = ka.kmalloc(13, KERNEL)
    ka.phys.write(p + 13, b"X")
    ka.kfree(p)
    assert [e.kind for e in ka.reports] == ["out-of-bounds"]


def test_marks_do_not_outlive_the_memory_they_cover() -> None:
    """A new slab lays its pages out anew: a mark left on them must not hide later damage."""
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    c = ka.kmem_cache_create("items", 24)
    a = ka.kmem_cache_alloc(c, KERNEL)
    ka.kmem_cache_free(c, a)
    ka.kmem_cache_destroy(c)  # the pages are free: no check will look at them
    ka.sanitizer.mark_reported(a - 1, 1)  # a write reported there (into free pages)
    c = ka.kmem_cache_create("items2", 24)
    b = ka.kmem_cache_alloc(c, KERNEL)
    assert b == a and ka.sanitizer.seen == {}
    ka.phys.write(b - 1, b"X")  # an unreported write (no access report): found at free
    ka.kmem_cache_free(c, b)
    assert [e.kind for e in ka.reports] == ["out-of-bounds"]
