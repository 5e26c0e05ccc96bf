"""The segfit heap's ideas, each on the workload it is for (issue 18), and the TLSF reference.

    page claim      a buddy block grows by the free pages after it, and only then
    page-exact      4095 and 8190 bytes take exactly 1 and 2 pages (coalescing-bal's pattern)
    exact-fit slabs 448-byte slots freed, 512-byte objects get pages of their own (binary-bal)
    realloc         a growing buffer stays where it is (realloc-bal's pattern)
    tail trimming   whole free pages at a region's end go back before the region is empty
    tlsf            the two-level list index TLSF's mapping_insert/mapping_search compute

Each workload is also run under `firstfit` (the previous default) to show what the idea buys.
"""

from __future__ import annotations

import itertools

from kalloc import Kalloc
from kalloc import gfp as G
from kalloc.config import TASK
from kalloc.heaps import make_heap
from kalloc.heaps.pageclaim import extend
from kalloc.heaps.segfit import SegFitHeap, is_large
from kalloc.heaps.tlsf import search_class, tlsf_class
from kalloc.page import PAGE_SIZE
from kalloc.replay.measure import build
from kalloc.replay.replayer import replay
from kalloc.replay.trace import ALLOC, FREE, REALLOC, Op, Trace

BANKS = [("dma", 0x8000_0000, 4 << 20, True), ("normal", 0x8040_0000, 12 << 20, False)]


def run(ops: list[Op], heap: str) -> float:
    ka, h, _vm = build(BANKS, heap, "off")
    res = replay(Trace("t", "kalloc", ops, {}), ka, h, check_every=97)
    assert not res.failed
    return res.utilization


# ---------------------------------------------------------------- the page claim


def test_extend_takes_the_free_pages_after_a_block_and_keeps_the_buddy_consistent() -> None:
    ka = Kalloc.standalone()
    pfn = ka.pages.alloc_block(G.GFP_KERNEL, 2, TASK, PAGE_SIZE)
    assert pfn is not None
    ka.buddy.trim(pfn, 1)  # pages pfn+1 .. pfn+3 are free again
    used, free = ka.buddy.used_pages, ka.buddy.free_pages
    assert extend(ka.buddy, pfn, 3)
    assert ka.buddy.blocks[pfn] == 4 and ka.buddy.used_pages == used + 3 and ka.buddy.free_pages == free - 3
    ka.check()
    ka.buddy.free(pfn)
    ka.check()


def test_extend_refuses_when_a_page_after_the_block_is_taken_and_changes_nothing() -> None:
    ka = Kalloc.standalone()
    pfn = ka.pages.alloc_block(G.GFP_KERNEL, 1, TASK, PAGE_SIZE)
    assert pfn is not None
    ka.buddy.trim(pfn, 1)
    neighbour = ka.pages.alloc_block(G.GFP_KERNEL, 0, TASK, PAGE_SIZE)  # the freed page, most recent first
    assert neighbour == pfn + 1
    before = (dict(ka.buddy.blocks), ka.buddy.used_pages, ka.buddy.free_pages)
    assert not extend(ka.buddy, pfn, 1)
    assert (dict(ka.buddy.blocks), ka.buddy.used_pages, ka.buddy.free_pages) == before
    ka.check()


# ---------------------------------------------------------------- the workloads


def coalescing(rounds: int = 200) -> list[Op]:
    ops = []
    for r in range(rounds):
        a, b, c = 3 * r, 3 * r + 1, 3 * r + 2
        ops += [Op(ALLOC, a, 4095), Op(ALLOC, b, 4095), Op(FREE, a), Op(FREE, b)]
        ops += [Op(ALLOC, c, 8190), Op(FREE, c)]
    return ops


def binary(pairs: int = 600) -> list[Op]:
    ops = []
    for i in range(pairs):
        ops += [Op(ALLOC, 2 * i, 64), Op(ALLOC, 2 * i + 1, 448)]
    ops += [Op(FREE, 2 * i + 1) for i in range(pairs)]
    ops += [Op(ALLOC, 2 * pairs + i, 512) for i in range(pairs)]
    return ops


def growing_buffer(steps: int = 600) -> list[Op]:
    ops = [Op(ALLOC, 0, 512), Op(ALLOC, 1, 128)]
    for k in range(1, steps):
        ops += [Op(REALLOC, 0, 512 + 128 * k), Op(ALLOC, k + 1, 128), Op(FREE, k)]
    return ops


def test_page_exact_blocks_hold_coalescing_in_two_pages() -> None:
    assert is_large(4095) and is_large(8190) and not is_large(4100)
    assert run(coalescing(), "segfit") > 0.999  # 8,190 bytes in 8,192
    assert run(coalescing(), "firstfit") < 0.51  # an 8-byte tag makes each 4095 two pages


def test_exact_fit_slabs_give_freed_448_slots_back_as_pages_for_512() -> None:
    assert run(binary(), "segfit") > 0.9  # 0.97 at binary-bal's 2,000 pairs
    assert run(binary(), "firstfit") < 0.6


def test_realloc_grows_the_buffer_in_place() -> None:
    """realloc-bal's pattern: the buffer grows while a small object comes and goes beside it."""
    ka, h, _vm = build(BANKS, "segfit", "off")
    assert isinstance(h, SegFitHeap)
    buf, small = h.malloc(512), h.malloc(128)
    homes = []
    for n in range(640, 200_000, 128):
        buf = h.realloc(buf or 0, n)
        assert buf is not None
        homes.append(buf)
        h.free(small or 0)
        small = h.malloc(128)
    assert len(homes) > 1500 and len(set(homes)) <= 6  # it moves only when the pages after it are taken
    assert h.claims > 40  # it grew by claiming the pages after it
    h.check()
    ka.check()
    assert run(growing_buffer(), "segfit") > 0.94
    assert run(growing_buffer(), "firstfit") < 0.7


def test_free_pages_at_a_regions_end_go_back_before_the_region_is_empty() -> None:
    ka, h, _vm = build(BANKS, "segfit", "off")
    ptrs = [h.malloc(200) for _ in range(100)]  # a region of ~5 pages (one class, too few for slabs)
    assert all(ptrs)
    full = ka.buddy.used_pages
    for p in ptrs[10:]:
        h.free(p or 0)
    assert ka.buddy.used_pages <= full - 4  # the tail went back; ten objects still live
    h.check()
    ka.check()


def test_every_policy_is_selectable_by_name() -> None:
    ka = Kalloc.standalone()
    for name in ("segfit", "tlsf"):
        h = make_heap(name, ka)
        p = h.malloc(100)
        assert p is not None and h.malloc_usable_size(p) >= 100
        h.free(p)
        h.check()


# ---------------------------------------------------------------- tlsf


def test_tlsf_lists_follow_the_two_level_index() -> None:
    assert tlsf_class(0) == 0 and tlsf_class(255) == 31  # 32 lists of 8 bytes below 256
    assert tlsf_class(256) == 32 and tlsf_class(300) == 37  # fl 8, sl (300 >> 3) ^ 32 = 5
    sizes = range(1, 70_000, 7)
    assert all(tlsf_class(a) <= tlsf_class(b) for a, b in itertools.pairwise(sizes))  # monotonic
    assert all(search_class(n) >= tlsf_class(n) for n in sizes)
    assert search_class(300) == 38  # rounded up to the next list: every block there holds 300
