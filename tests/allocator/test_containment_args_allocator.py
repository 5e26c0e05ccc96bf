"""Hostile arguments against the allocator itself (issue 12: host memory, memory handed out twice).

Every entry point must refuse a request no board could meet BEFORE it builds anything
host-side: the host's cost of one call is bounded by what the guest could use. Each
hostile call is measured with tracemalloc (peak Python allocation during the call), then
`check()` must pass and normal allocations must still work.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from kalloc import Kalloc
from kalloc import gfp as G
from kalloc.dma import MAX_POOLS
from kalloc.errors import BadArgumentError, InvalidFreeError, KallocError
from kalloc.slab import KmemCache
from kalloc.slub import MAX_USER_CACHES
from kalloc.vmalloc import Vmalloc

U32 = 0xFFFF_FFFF
HOST_BOUND = 4 << 20  # bytes one refused call may allocate host-side (it should be ~nothing)


def fresh() -> tuple[Kalloc, Vmalloc]:
    ka = Kalloc.standalone(size=4 << 20, dma_size=1 << 20)
    return ka, Vmalloc(ka)


def peak_of(fn: Callable[[], object]) -> tuple[object, int]:
    """(fn's result or the KallocError it raised, peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            out: object = fn()
        except KallocError as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HOSTILE: dict[str, Callable[[Kalloc, Vmalloc], object]] = {
    "kmem_cache_create 4 GiB": lambda ka, vm: ka.kmem_cache_create("x", U32, 0, 0),
    "kmem_cache_create 2 GiB aligned": lambda ka, vm: ka.kmem_cache_create("x", 0x7FFF_FFFF, 4096, 0),
    "kmem_cache_create 8 MiB": lambda ka, vm: ka.kmem_cache_create("x", 8 << 20, 0, 0),
    "kmem_cache_create align 2 GiB": lambda ka, vm: ka.kmem_cache_create("x", 64, 1 << 31, 0),
    "dma_pool_create 4 GiB": lambda ka, vm: ka.dma_pool_create("p", U32, 0, 0),
    "dma_pool_create align 2 GiB": lambda ka, vm: ka.dma_pool_create("p", 8, 1 << 31, 0),
    "dma_pool_create boundary 4 GiB": lambda ka, vm: ka.dma_pool_create("p", 64, 0, U32),
    "kmalloc 4 GiB": lambda ka, vm: ka.kmalloc(U32, G.GFP_KERNEL),
    "kcalloc overflow": lambda ka, vm: ka.kcalloc(0x10000, 0x10000, G.GFP_KERNEL),
    "kcalloc 4 GiB": lambda ka, vm: ka.kcalloc(0xFFFF, 0xFFFF, G.GFP_KERNEL),
    "malloc 4 GiB": lambda ka, vm: ka.malloc(U32),
    "calloc 4 GiB": lambda ka, vm: ka.calloc(0xFFFF, 0xFFFF),
    "realloc 4 GiB": lambda ka, vm: ka.realloc(0, U32),
    "aligned_alloc 2 GiB": lambda ka, vm: ka.aligned_alloc(1 << 31, 16),
    "alloc_pages order 31": lambda ka, vm: ka.alloc_pages(G.GFP_KERNEL, 31),
    "alloc_pages_exact 4 GiB": lambda ka, vm: ka.alloc_pages_exact(U32, G.GFP_KERNEL),
    "dma_alloc_coherent 4 GiB": lambda ka, vm: ka.dma_alloc_coherent(U32, G.GFP_KERNEL),
    "vmalloc 4 GiB": lambda ka, vm: vm.vmalloc(U32),
    "vmalloc 500 MiB (in the window, past RAM)": lambda ka, vm: vm.vmalloc(500 << 20),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_size_fails_cheaply_and_leaves_a_working_allocator(name: str) -> None:
    ka, vm = fresh()
    before = ka.buddy.free_pages
    out, peak = peak_of(lambda: HOSTILE[name](ka, vm))
    assert out is None or isinstance(out, BadArgumentError), out
    assert peak < HOST_BOUND, f"{name}: {peak} bytes host-side"
    if out is None and name not in ("aligned_alloc 2 GiB",):  # C: a bad alignment is a silent NULL
        assert ka.reports and ka.reports[-1].kind == "oom", ka.reports
    assert ka.buddy.free_pages == before
    ka.check()
    vm.check()
    p = ka.kmalloc(100, G.GFP_KERNEL)
    c = ka.kmem_cache_create("ok", 48)
    o = ka.kmem_cache_alloc(c, G.GFP_KERNEL)
    assert p and o
    ka.kmem_cache_free(c, o)
    ka.kmem_cache_destroy(c)
    ka.kfree(p)
    ka.check()


def test_a_cache_of_large_objects_costs_host_memory_only_while_it_has_slabs() -> None:
    ka = Kalloc.standalone()  # 16 MiB
    c, peak = peak_of(lambda: ka.kmem_cache_create("big", 256 << 10))
    assert peak < 64 << 10, "patterns are built with the first slab, not at create"
    assert isinstance(c, KmemCache) and not c.built
    o = ka.kmem_cache_alloc(c, G.GFP_KERNEL)
    assert o and c.built
    ka.kmem_cache_free(c, o)
    ka.kmem_cache_shrink(c)
    assert not c.slabs and not c.built and c.template == b""
    ka.check()
    o = ka.kmem_cache_alloc(c, G.GFP_KERNEL)  # rebuilt on demand
    assert o
    ka.kmem_cache_free(c, o)
    ka.kmem_cache_destroy(c)
    ka.check()


def test_live_caches_and_pools_are_capped() -> None:
    ka, _vm = fresh()
    caches = [ka.kmem_cache_create(f"c{i}", 1 << 20) for i in range(MAX_USER_CACHES)]
    with pytest.raises(BadArgumentError, match="caches exist already"):
        ka.kmem_cache_create("one too many", 1 << 20)
    ka.kmem_cache_destroy(caches.pop())
    caches.append(ka.kmem_cache_create("room again", 64))
    pools = [ka.dma_pool_create(f"p{i}", 64, 0, 0) for i in range(MAX_POOLS)]
    with pytest.raises(BadArgumentError, match="pools exist already"):
        ka.dma_pool_create("one too many", 64, 0, 0)
    for c in caches:
        ka.kmem_cache_destroy(c)
    for p in pools:
        ka.dma_pool_destroy(p)
    ka.check()


def test_destroy_of_none_is_a_no_op_as_in_linux() -> None:
    ka, _vm = fresh()
    ka.kmem_cache_destroy(None)
    ka.dma_pool_destroy(None)
    assert ka.reports == []
    ka.check()


def test_kmemleak_not_leak_of_a_vmalloc_area_marks_it() -> None:
    ka, vm = fresh()
    v = vm.vmalloc(3 * 4096)
    assert v is not None
    ka.not_leak(v)
    assert vm.areas[v].not_leak
    with pytest.raises(BadArgumentError):
        ka.not_leak(v + 8)  # not an area's start
    vm.vfree(v)
    ka.check()
    vm.check()


# ------------------------------------------------------------------ memory handed out twice


def test_free_pages_of_a_vmapped_page_is_refused_naming_the_area() -> None:
    ka, vm = fresh()
    pages = [ka.alloc_pages(G.GFP_KERNEL, 0) for _ in range(2)]
    v = vm.vmap([a >> 12 for a in pages])
    assert v is not None
    with pytest.raises(InvalidFreeError, match=f"vmap area at {v:#x}") as exc:
        ka.free_pages(pages[0], 0)
    assert exc.value.fields["vmap_area"] == v
    assert pages[0] in ka.live  # still the caller's: not handed to the next allocation
    nxt = ka.alloc_pages(G.GFP_KERNEL, 0)
    assert nxt not in pages
    ka.check()
    vm.check()
    vm.vunmap(v)
    for a in [*pages, nxt]:
        ka.free_pages(a, 0)  # accepted once unmapped
    ka.check()
    vm.check()


@pytest.mark.parametrize("api", ["kfree", "free", "free_pages_exact", "dma_free_coherent", "krealloc"])
def test_every_page_level_free_of_a_vmapped_block_is_refused(api: str) -> None:
    ka, vm = fresh()
    if api == "kfree" or api == "krealloc":
        a = ka.kmalloc(3 * 4096, G.GFP_KERNEL)
    elif api == "free":
        a = ka.malloc(3 * 4096)
    elif api == "free_pages_exact":
        a = ka.alloc_pages_exact(3 * 4096, G.GFP_KERNEL)
    else:
        got = ka.dma_alloc_coherent(3 * 4096, G.GFP_KERNEL)
        assert got
        a = got[0]
    assert a
    v = vm.vmap([(a >> 12) + 2])  # the block's last page only
    assert v
    free: dict[str, Callable[[], object]] = {
        "kfree": lambda: ka.kfree(a),
        "free": lambda: ka.free(a),
        "free_pages_exact": lambda: ka.free_pages_exact(a, 3 * 4096),
        "dma_free_coherent": lambda: ka.dma_free_coherent(3 * 4096, a, a),
        "krealloc": lambda: ka.krealloc(a, 64 << 10, G.GFP_KERNEL),
    }
    live_before = len(ka.live)
    with pytest.raises(InvalidFreeError, match="vmap area"):
        free[api]()
    assert len(ka.live) == live_before and a in ka.live
    ka.check()
    vm.check()
    vm.vunmap(v)
    free[api]() if api != "krealloc" else ka.kfree(a)
    ka.check()


def test_vmap_refuses_pages_the_caller_does_not_own_as_pages() -> None:
    ka, vm = fresh()
    obj = ka.kmalloc(64, G.GFP_KERNEL)  # a slab page: freed by the slab layer, not by its owner
    big = vm.vmalloc(4096)  # a vmalloc page: vfree would free it
    assert obj and big
    for pfn in (obj >> 12, vm.translate(big) >> 12):  # type: ignore[operator]
        with pytest.raises(BadArgumentError, match="page-level"):
            vm.vmap([pfn])
    ka.check()
    vm.check()


def test_vm_check_trusts_host_state_not_page_table_bytes() -> None:
    ka, vm = fresh()
    v = vm.vmalloc(2 * 4096)
    assert v
    for pfn in vm.table_pfns():  # the firmware scribbles over every page-table page
        ka.phys.fill(pfn << 12, 4096, 0xAB)
    vm.check()  # no InvariantError: the mirror is the truth, and it is intact
    assert vm.translate(v) is not None
    vm.vfree(v)
    vm.check()
    ka.check()


# ------------------------------------------------------------------ trace sizes beyond 32 bits


@pytest.mark.parametrize(
    "text",
    [
        "0\n1\n2\n100\na 0 4294967296\nf 0\n",  # malloc-lab
        "Alloc(4294967296),\n",  # wee_alloc
        "# kalloc trace v1\na 0 4294967296\n",  # kalloc
        "4294967296\n1\n1\n0\na 0 8\n",  # a malloc-lab 2002 header
    ],
)
def test_a_trace_size_beyond_32_bits_is_a_parse_error(text: str) -> None:
    from kalloc.replay.trace import TraceError, parse

    with pytest.raises(TraceError, match="does not fit in 32 bits"):
        parse(text, "t")
    assert parse(text.replace("4294967296", "4294967295"), "t").ops  # the largest size_t parses


def test_the_stack_depot_is_bounded_against_forged_return_addresses() -> None:
    from kalloc.stackdepot import MAX_STACKS, StackDepot

    depot = StackDepot()
    handles = [depot.save((0x8000_0000 + 4 * i,)) for i in range(MAX_STACKS + 10)]
    assert len(depot) == MAX_STACKS and depot.dropped == 10
    assert handles[-1] == 0 and depot.get(0) == ()
    assert depot.save((0x8000_0000,)) == handles[0] == 1  # known stacks keep their handle
