"""vmalloc without demand paging (issue 6, part B): the allocator side — page tables, commit, guards."""

from __future__ import annotations

import pytest
from kalloc_machine import memlayout

from kalloc import Config, Kalloc
from kalloc.errors import BadArgumentError, DoubleFreeError, InvalidFreeError
from kalloc.physmem import BadAddress
from kalloc.vmalloc import ARENA_END, ARENA_START, VMALLOC_START, Vmalloc


def fresh(sanitize="poison"):
    ka = Kalloc.standalone(size=8 << 20, dma_size=2 << 20, config=Config(sanitize=sanitize))
    return ka, Vmalloc(ka)


def test_windows_match_the_memory_map():
    assert VMALLOC_START == memlayout.VMALLOC_START
    assert ARENA_END == memlayout.VMALLOC_END
    assert VMALLOC_START < ARENA_START < ARENA_END


def test_vmalloc_commits_every_page_at_allocation():
    ka, vm = fresh()
    before = ka.buddy.free_pages
    p = vm.vmalloc(1 << 20)  # 256 pages, nothing touched yet
    assert p is not None and p >= VMALLOC_START
    taken = before - ka.buddy.free_pages
    assert taken == 256 + vm.page_table_pages  # every page, plus the root and one leaf table
    assert all(vm.translate(p + i * 4096) is not None for i in range(256))
    assert vm.read(p, 4) == b"\x5a" * 4  # fresh poison, already there: the pages are real
    vm.check()
    ka.check()
    vm.vfree(p)
    assert ka.buddy.free_pages == before - 1  # the root table stays
    vm.check()


def test_guard_page_and_freed_area_are_unmapped_and_described():
    _ka, vm = fresh()
    p = vm.vmalloc(5000)  # 2 pages, guard at +8192
    assert vm.translate(p + 8191) is not None
    assert vm.translate(p + 8192) is None
    d = vm.describe(p + 8192)
    assert d["state"] == "guard" and d["area"]["addr"] == p and d["offset"] == 8192
    q = vm.vmalloc(100)
    assert q >= p + 3 * 4096  # the next area starts after the guard
    vm.vfree(p)
    d = vm.describe(p + 10)
    assert d["state"] == "freed" and d["area"]["size"] == 5000
    with pytest.raises(BadAddress):
        vm.read(p, 1)
    with pytest.raises(DoubleFreeError):
        vm.vfree(p)
    with pytest.raises(InvalidFreeError):
        vm.vfree(q + 16)
    assert vm.describe(0xD000_0000)["state"] == "hole"


def test_unmap_listeners_see_every_unmap():
    _ka, vm = fresh()
    seen = []
    vm.on_unmap.append(lambda addr, n: seen.append((addr, n)))
    p = vm.vmalloc(3 * 4096)
    vm.vfree(p)
    assert seen == [(p, 3)]


def test_vmap_maps_caller_pages_without_taking_them():
    ka, vm = fresh()
    pages = [ka.alloc_pages(0xCC0, 0) for _ in range(3)]
    v = vm.vmap([a >> 12 for a in pages])
    vm.write(v + 4096 - 2, b"abcd")  # crosses from the first page into the second
    assert ka.phys.read(pages[0] + 4094, 2) == b"ab" and ka.phys.read(pages[1], 2) == b"cd"
    with pytest.raises(InvalidFreeError):
        vm.vfree(v)
    vm.vunmap(v)
    for a in pages:
        ka.free_pages(a, 0)
    ka.check()
    with pytest.raises(BadArgumentError):
        vm.vmap([0x123])


def test_vmalloc_failure_takes_nothing():
    ka, vm = fresh()
    before = ka.buddy.free_pages
    assert vm.vmalloc(64 << 20) is None  # more than the board has
    assert ka.buddy.free_pages == before
    assert any(r.kind == "oom" for r in ka.reports)
