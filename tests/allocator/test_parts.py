"""The allocator's parts: the front binds the API to them and they share one state.

(That a snapshot's deep copy keeps the bound API on the copied parts is
tests/machine/test_pytest_plugin.py's to prove: it restores whole sessions.)
"""

from __future__ import annotations

import pytest

from kalloc import TASK, Kalloc, gfp
from kalloc.errors import DoubleFreeError, InvalidFreeError
from kalloc.kinds import KIND_KMALLOC, KIND_PAGES
from kalloc.live import LiveRecord

KERNEL = gfp.GFP_KERNEL


def test_the_kernel_api_is_the_serving_parts_methods() -> None:
    ka = Kalloc.standalone()
    assert ka.kmalloc.__self__ is ka.kmalloc_api
    assert ka.malloc.__self__ is ka.libc_api
    assert ka.alloc_pages.__self__ is ka.page_api
    assert ka.kmem_cache_alloc.__self__ is ka.slub
    assert ka.dma_pool_alloc.__self__ is ka.pools
    assert ka.dma_alloc_coherent.__self__ is ka.dma_api
    for part in (ka.gate, ka.sanitizer, ka.pages, ka.pools, ka.statistics, ka.checker):
        assert part.reports is ka.reports
    assert ka.listeners is ka.live.listeners and ka.page_owner is ka.live.page_owner


def test_live_records_are_named() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(100, KERNEL)
    rec = ka.live[p]
    assert isinstance(rec, LiveRecord)
    assert (rec.size, rec.kind, rec.gfp) == (100, KIND_KMALLOC, KERNEL)
    assert ka.live.usable(p, rec) == 128
    ka.kfree(p)
    assert p not in ka.live


def test_take_for_free_diagnoses_without_changing_state() -> None:
    ka = Kalloc.standalone()
    p = ka.kmalloc(64, KERNEL)
    before = sorted(ka.live.items())
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.live.take_for_free(p, KIND_PAGES, "free_pages", TASK)
    assert sorted(ka.live.items()) == before
    ka.kfree(p)
    with pytest.raises(DoubleFreeError):
        ka.kfree(p)


def test_reclaim_runs_the_slab_shrinker_the_page_pipeline_was_given() -> None:
    ka = Kalloc.standalone(size=1 << 20, dma_size=0)
    assert ka.slub.shrink in ka.pages.shrinkers
    objs = [ka.kmalloc(2048, KERNEL) for _ in range(64)]
    for p in objs:
        ka.kfree(p)
    used = ka.buddy.used_pages
    freed = ka.pages.reclaim()
    assert freed > 0 and ka.buddy.used_pages == used - freed
    ka.check()
