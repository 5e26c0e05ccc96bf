"""A Hypothesis state machine over vmalloc, vfree, vmap and vunmap (kalloc.vmalloc).

The program under test allocates and frees areas, maps pages it owns and unmaps
them, and never misbehaves (misuse rules expect the exact error and no change).
The model: the vmalloc areas {vaddr: pattern written through the mapping}, the vmap
areas {vaddr: the caller's pages} and the pages the caller holds. After every step:

 1. every page of every area translates, to the caller's own page for a vmap, and
    the page after every area (its guard) does not; areas do not overlap;
 2. every vmalloc area holds its pattern, and a vmap area shows its pages' bytes;
 3. commit accounting is exact: vmalloc_bytes and vmap_bytes are the model's pages,
    and the buddy allocator's free pages are what boot left minus the vmalloc pages,
    the caller's pages and the page-table pages — so a vfree gives back every page
    and a vmap/vunmap takes none;
 4. a freed area's pages no longer translate, and describe() calls it "freed";
 5. vm.check() and ka.check() pass and no error report appears;
 6. vmalloc with __GFP_ZERO gives zeroed pages; every vfree/vunmap tells the unmap
    listeners (the emulator's TLB flush) exactly once, with its address and pages;
    misuse is refused with the exact error and nothing changes: vfree of a freed area
    is a DoubleFreeError, vfree of a vmap area or of a pointer inside a live area and
    vunmap of a vmalloc area are InvalidFreeErrors.

Areas and pages live in Bundles and the freeing rules `consumes()` them, so a shrunk
failure reads as a short program.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from kalloc import Config, Kalloc, gfp
from kalloc.errors import DoubleFreeError, InvalidFreeError
from kalloc.page import PAGE_SIZE, pages_for
from kalloc.vmalloc import GUARD_PAGES, Vmalloc

SIZES = st.one_of(st.integers(1, 3 * PAGE_SIZE), st.sampled_from([PAGE_SIZE, 2 * PAGE_SIZE + 1, 40_000]))


class VmallocMachine(RuleBasedStateMachine):
    """vmalloc/vmap over one Kalloc (module docstring)."""

    areas = Bundle("areas")  # vmalloc'd addresses
    maps = Bundle("maps")  # vmap'd addresses
    pages = Bundle("pages")  # physical addresses of order-0 pages the caller holds

    def __init__(self) -> None:
        super().__init__()
        self.vmalloced: dict[int, bytes] = {}
        self.vmapped: dict[int, list[int]] = {}
        self.held: set[int] = set()
        self.freed: dict[int, int] = {}  # vaddr -> pages of an area vfree'd and not reused
        self.tag = 0

    @initialize(sanitize=st.sampled_from(["poison", "off", "kasan"]), mib=st.sampled_from([1, 2]))
    def boot(self, sanitize: str, mib: int) -> None:
        config = Config(sanitize=sanitize)
        self.ka = Kalloc.standalone(size=mib << 20, dma_size=(mib << 20) // 4, config=config)
        self.vm = Vmalloc(self.ka)
        self.boot_free = self.ka.buddy.free_pages
        self.unmaps: list[tuple[int, int]] = []
        self.vm.on_unmap.append(lambda vaddr, npages: self.unmaps.append((vaddr, npages)))

    def unmapped(self, vaddr: int, npages: int) -> None:
        """The unmap listeners (the emulator's TLB flush) saw exactly this one unmap."""
        assert self.unmaps == [(vaddr, npages)], self.unmaps
        self.unmaps.clear()

    def pattern(self, n: int) -> bytes:
        self.tag = self.tag % 251 + 1
        return bytes((self.tag * 7 + i) & 0xFF for i in range(n))

    def reused(self, vaddr: int, npages: int) -> None:
        """Forget freed areas that a new area (or its guard) at vaddr now covers."""
        end = vaddr + (npages + GUARD_PAGES) * PAGE_SIZE
        for a in [a for a, n in self.freed.items() if a < end and vaddr < a + n * PAGE_SIZE]:
            del self.freed[a]

    # ---------------------------------------------------------------- vmalloc / vfree

    @rule(target=areas, size=SIZES, zero=st.booleans())
    def vmalloc(self, size: int, zero: bool) -> object:
        v = self.vm.vmalloc(size, gfp=gfp.GFP_KERNEL | gfp.NOWARN | (gfp.ZERO if zero else 0))
        if v is None:
            return multiple()
        assert v % PAGE_SIZE == 0 and v not in self.vmalloced and v not in self.vmapped
        if zero:
            assert self.vm.read(v, pages_for(size) * PAGE_SIZE) == bytes(pages_for(size) * PAGE_SIZE)
        data = self.pattern(size)
        self.vm.write(v, data)
        self.vmalloced[v] = data
        self.reused(v, pages_for(size))
        return v

    @rule(v=consumes(areas))
    def vfree(self, v: int) -> None:
        data = self.vmalloced.pop(v)
        assert self.vm.read(v, len(data)) == data
        self.vm.vfree(v)
        self.unmapped(v, pages_for(len(data)))
        self.freed[v] = pages_for(len(data))

    @precondition(lambda self: bool(self.freed))
    @rule(i=st.integers(0, 1 << 16))
    def vfree_again_is_a_double_free(self, i: int) -> None:
        v = sorted(self.freed)[i % len(self.freed)]
        before = self.ka.buddy.free_pages
        with pytest.raises(DoubleFreeError):
            self.vm.vfree(v)
        assert self.ka.buddy.free_pages == before

    # ---------------------------------------------------------------- vmap / vunmap over the caller's pages

    @rule(target=pages)
    def alloc_page(self) -> object:
        p = self.ka.alloc_pages(gfp.GFP_KERNEL | gfp.NOWARN, 0)
        if p is None:
            return multiple()
        self.ka.phys.write(p, self.pattern(PAGE_SIZE))
        self.held.add(p)
        return p

    @rule(p=consumes(pages))
    def free_page(self, p: int) -> None:
        self.held.remove(p)
        self.ka.free_pages(p, 0)

    @rule(target=maps, mine=st.lists(consumes(pages), min_size=1, max_size=4))
    def vmap(self, mine: list[int]) -> object:
        before = self.ka.buddy.free_pages
        v = self.vm.vmap([p // PAGE_SIZE for p in mine])
        if v is None:
            return multiple()
        assert self.ka.buddy.free_pages >= before - 2, "vmap took pages beyond its page tables"
        self.vmapped[v] = mine
        self.reused(v, len(mine))
        return v

    @precondition(lambda self: bool(self.vmalloced))
    @rule(i=st.integers(0, 1 << 16))
    def vunmap_of_a_vmalloc_area_is_an_invalid_free(self, i: int) -> None:
        v = sorted(self.vmalloced)[i % len(self.vmalloced)]
        with pytest.raises(InvalidFreeError):
            self.vm.vunmap(v)

    @precondition(lambda self: bool(self.vmalloced or self.vmapped))
    @rule(i=st.integers(0, 1 << 16), offset=st.sampled_from([0, 16, PAGE_SIZE]))
    def vfree_of_a_vmap_area_or_an_interior_pointer_is_an_invalid_free(self, i: int, offset: int) -> None:
        inside = (v + offset for v, d in self.vmalloced.items() if 0 < offset < pages_for(len(d)) * PAGE_SIZE)
        starts = sorted([*self.vmapped, *inside])
        if not starts:
            return
        before = self.ka.buddy.free_pages
        with pytest.raises(InvalidFreeError):
            self.vm.vfree(starts[i % len(starts)])
        assert self.ka.buddy.free_pages == before and self.unmaps == []

    @rule(target=pages, v=consumes(maps))
    def vunmap(self, v: int) -> object:
        mine = self.vmapped.pop(v)
        self.vm.vunmap(v)
        self.unmapped(v, len(mine))
        return multiple(*mine)  # the pages stay the caller's

    # ---------------------------------------------------------------- after every step

    @invariant()
    def mappings_and_guards(self) -> None:
        spans = []
        for v, data in self.vmalloced.items():
            n = pages_for(len(data))
            spans.append((v, n))
            assert self.vm.read(v, len(data)) == data, f"area {v:#x} lost its bytes"
            assert all(self.vm.translate(v + i * PAGE_SIZE) is not None for i in range(n))
        for v, mine in self.vmapped.items():
            spans.append((v, len(mine)))
            for i, p in enumerate(mine):
                assert self.vm.translate(v + i * PAGE_SIZE) == p, f"vmap page {i} of {v:#x}"
                assert self.vm.read(v + i * PAGE_SIZE, 64) == self.ka.phys.read(p, 64)
        end = 0
        for v, n in sorted(spans):
            assert v >= end, f"area {v:#x} overlaps the previous area or its guard"
            assert self.vm.translate(v + n * PAGE_SIZE) is None, f"the guard after {v:#x} is mapped"
            end = v + (n + GUARD_PAGES) * PAGE_SIZE
        for v, n in self.freed.items():
            assert all(self.vm.translate(v + i * PAGE_SIZE) is None for i in range(n))
            assert self.vm.describe(v)["state"] == "freed"

    @invariant()
    def commit_accounting_is_exact(self) -> None:
        if not hasattr(self, "vm"):
            return
        vmalloc_pages = sum(pages_for(len(d)) for d in self.vmalloced.values())
        vmap_pages = sum(len(m) for m in self.vmapped.values())
        stats = self.vm.stats()
        assert stats["vmalloc_bytes"] == vmalloc_pages * PAGE_SIZE
        assert stats["vmap_bytes"] == vmap_pages * PAGE_SIZE
        assert stats["areas"] == len(self.vmalloced) + len(self.vmapped)
        taken = vmalloc_pages + len(self.held) + self.vm.page_table_pages
        assert self.ka.buddy.free_pages == self.boot_free - taken
        self.vm.check()
        self.ka.check()
        bad = [r for r in self.ka.reports if r.severity == "error"]  # oom is a warning
        assert not bad, bad


@pytest.mark.parametrize("runs", ["short", pytest.param("long", marks=pytest.mark.slow)])
def test_vmalloc_vmap_and_commit_accounting(run_machine, runs: str) -> None:
    run_machine(VmallocMachine)


def test_vfree_inside_a_live_area_is_an_invalid_free_even_where_an_old_area_started() -> None:
    """Found by the machine above (shrunk): the area containing the pointer wins over history.

    An old area started at `b`; a new area now covers `b`. vfree(b) is a pointer into a
    live area (InvalidFreeError, as free_pages() and kfree() say for a freed page that is
    now inside a live block), not a double free of the old area with its stale sites.
    """
    ka = Kalloc.standalone(size=1 << 20, dma_size=1 << 18)
    vm = Vmalloc(ka)
    a, b = vm.vmalloc(1), vm.vmalloc(1)
    vm.vfree(b)
    vm.vfree(a)
    c = vm.vmalloc(5 * PAGE_SIZE)
    assert c is not None and b is not None and c < b < c + 5 * PAGE_SIZE
    with pytest.raises(InvalidFreeError, match="into an area"):
        vm.vfree(b)
