"""Virtual memory without demand paging: vmalloc, vmap, vfree and the areas they map.

The machine has virtual memory but no demand paging (docs/allocator.md): every virtual
page that can be touched is backed by a physical page *when it is mapped*, and
a touch of any other page of the windows is a fatal page fault. This module
keeps the mapping, as kalloc's own data:

    vmalloc window  [VMALLOC_START, VMALLOC_END)  areas of vmalloc() and vmap()
    arena window    [ARENA_START, ARENA_END)      the console-style growable heap
                                                  (kalloc.heaps.arena)

  - vmalloc(size) takes ceil(size/4096) order-0 pages from the buddy allocator
    (physically scattered, like Linux's __vmalloc_area_node()), maps them at a
    free virtual range *before returning*, and leaves one unmapped guard page
    after the area (Linux's VM_NO_GUARD is not the default either).
  - vmap(pfns) maps pages the caller already owns; vunmap() unmaps them only.
  - vfree() unmaps, tells every `on_unmap` listener (the emulator flushes the
    CPU's TLB there), poisons and frees the pages, and remembers the area so a
    later touch is reported as a use after vfree with both sites.

The page tables, the windows' bounds and byte access through the mappings
are kalloc.pagetable's (Vmalloc is a PageTables); this module keeps the areas.

Data structure:
    areas: {addr: VmArea}     mapped areas, by start (and their sorted starts)
    freed: {addr: VmArea}     vfree'd areas, the latest at each start (use-after-vfree reports)

Invariants (check() proves them):
 1. Every mapped page of a vmalloc or arena area is an allocated order-0 buddy
    block; pages of a vmap area are allocated blocks owned by their caller.
 2. Areas do not overlap, and the page after every area (its guard) is unmapped.
 3. The page tables' invariants (kalloc.pagetable check_tables()).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kalloc import gfp as G
from kalloc.config import TASK, Caller
from kalloc.debug import POISON_FREE, POISON_INUSE
from kalloc.errors import BadArgumentError, DoubleFreeError, InvalidFreeError, InvariantError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.pagetable import ARENA_END, ARENA_START, VMALLOC_END, VMALLOC_START, PageTables

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc

# The windows are kalloc.pagetable's; importable from here too, where they were first defined.
__all__ = ["ARENA_END", "ARENA_START", "GUARD_PAGES", "VMALLOC_END", "VMALLOC_START", "VmArea", "Vmalloc"]

GUARD_PAGES = 1  # unmapped pages after every area: an overflow faults on its first byte past the end
VMALLOC_MAX = VMALLOC_END - VMALLOC_START - PAGE_SIZE


@dataclass(slots=True)
class VmArea:
    """One mapped range: `addr`, `npages` mapped (the guard follows), `size` requested."""

    addr: int
    npages: int
    size: int
    kind: str  # "vmalloc" | "vmap"
    site: int = 0
    free_site: int = 0
    pfns: list[int] = field(default_factory=list)
    not_leak: bool = False  # kmemleak_not_leak() of its address: left out of leak reports

    @property
    def end(self) -> int:
        return self.addr + (self.npages << PAGE_SHIFT)

    def as_dict(self) -> dict[str, int | str]:
        return {"addr": self.addr, "size": self.size, "kind": self.kind, "pages": self.npages}


class Vmalloc(PageTables):
    """The vmalloc and arena windows of one Kalloc, over their page tables (kalloc.pagetable).

    Public attributes: areas ({addr: VmArea}), freed ({addr: VmArea} vfree'd),
    and PageTables': pte, on_unmap, pages, high_water.
    """

    def __init__(self, ka: Kalloc) -> None:
        super().__init__(ka)
        ka.not_leak_hooks.append(self.not_leak)  # kmemleak_not_leak() of a vmalloc address
        self.areas: dict[int, VmArea] = {}
        self._starts: list[int] = []
        self.freed: dict[int, VmArea] = {}  # vfree'd areas by start (the latest at each address)
        self._freed_starts: list[int] = []

    # ================================================================ vmalloc / vfree

    def vmalloc(self, size: int, caller: Caller = TASK, gfp: int = G.GFP_KERNEL) -> int | None:
        """Map ceil(size/4096) fresh pages contiguously in the vmalloc window; returns the address or None.

        Every page is allocated and mapped before this returns (no demand
        paging); a failure frees what was taken and returns None with an oom
        report (unless __GFP_NOWARN). Pair with vfree(). Context: task
        (GFP_KERNEL); GFP_ATOMIC callers may pass gfp. Raises BadArgumentError
        for size 0 or a size beyond the window.
        """
        self.ka.gate.check_gfp(gfp, caller)
        self.ka.gate.check_size(size, caller)
        if size == 0 or size > VMALLOC_MAX:
            raise BadArgumentError(f"vmalloc() of {size} bytes (1..{VMALLOC_MAX})", site=caller.site)
        self.ka.gate.may_sleep(gfp, caller, "vmalloc")
        npages = pages_for(size)
        if npages > self.ka.buddy.managed_pages:  # no memory state could meet it: refused before any work
            self.ka.pages.too_large(gfp, size, caller, "more pages than the machine has")
            return None
        vaddr = self._find_range(npages)
        if vaddr is None:
            self.ka.pages.too_large(gfp, size, caller, "no free range in the vmalloc window")
            return None
        pfns: list[int] = []
        for _ in range(npages):
            pfn = self.ka.pages.alloc_block(gfp & ~G.ZERO, 0, caller, size)
            if pfn is None:
                for p in pfns:
                    self.ka.buddy.free(p)
                return None
            pfns.append(pfn)
        if not self.map_pages(vaddr, pfns, "vmalloc", caller):
            for p in pfns:
                self.ka.buddy.free(p)
            return None
        fill = 0 if gfp & G.ZERO else (POISON_INUSE if self.ka.debug else None)
        if fill is not None:
            for p in pfns:
                self.phys.fill(p << PAGE_SHIFT, PAGE_SIZE, fill)
        if self.ka.listeners:  # the shadow: the pages are the firmware's now, through the mapping
            for p in pfns:
                self.ka.live.notify("alloc", p << PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE)
        self._add_area(VmArea(vaddr, npages, size, "vmalloc", caller.site, 0, pfns))
        return vaddr

    def vfree(self, vaddr: int, caller: Caller = TASK) -> None:
        """Unmap and free what vmalloc() returned; 0 is a no-op. Context: any.

        Raises InvalidFreeError (not an area's start, a vmap area) or
        DoubleFreeError (an area already freed, with both sites).
        """
        if vaddr == 0:
            return
        area = self.areas.get(vaddr)
        if area is None or area.kind != "vmalloc":
            raise self._diagnose(vaddr, "vfree", caller, area)
        self._remove_area(area, caller)
        self.unmap_pages(vaddr, area.npages, "vmalloc")
        for pfn in area.pfns:
            if self.ka.listeners:
                self.ka.live.notify("free", pfn << PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE)
            if self.ka.debug:
                self.phys.fill(pfn << PAGE_SHIFT, PAGE_SIZE, POISON_FREE)
            self.ka.buddy.free(pfn)
        area.pfns = []  # the history keeps the area's shape, not its pages (bounded by the window)

    def not_leak(self, vaddr: int) -> bool:
        """kmemleak_not_leak() of a live vmalloc area's start: mark it; False when it is none."""
        area = self.areas.get(vaddr)
        if area is None or area.kind != "vmalloc":
            return False
        area.not_leak = True
        return True

    def vmap(self, pfns: list[int], caller: Caller = TASK) -> int | None:
        """Map pages the caller owns (allocated blocks) contiguously; returns the address or None.

        Pair with vunmap(); the pages stay the caller's. Raises BadArgumentError
        for an empty list or a page that is not allocated.
        """
        if not pfns:
            raise BadArgumentError("vmap() of no pages", site=caller.site)
        live = self.ka.live
        for pfn in pfns:
            head = live.block_head(pfn)
            if head is None:
                raise BadArgumentError(f"vmap() of page {pfn << PAGE_SHIFT:#x}, which is not allocated",
                                       addr=pfn << PAGE_SHIFT, site=caller.site)  # fmt: skip
            if (head << PAGE_SHIFT) not in live.records or pfn in live.page_owner:
                raise BadArgumentError(f"vmap() of page {pfn << PAGE_SHIFT:#x}, which is not a page-level"
                                       " allocation of the caller (alloc_pages, kmalloc > 8 KiB, ...)",
                                       addr=pfn << PAGE_SHIFT, site=caller.site)  # fmt: skip
        vaddr = self._find_range(len(pfns))
        if vaddr is None or not self.map_pages(vaddr, list(pfns), "vmap", caller):
            self.ka.pages.too_large(G.GFP_KERNEL, len(pfns) << PAGE_SHIFT, caller, "vmap() found no room")
            return None
        self._add_area(VmArea(vaddr, len(pfns), len(pfns) << PAGE_SHIFT, "vmap", caller.site, 0, list(pfns)))
        for pfn in pfns:  # pinned: freeing them is refused until vunmap (LiveTable.refuse_mapped)
            live.vmapped.setdefault(pfn, []).append(vaddr)
        return vaddr

    def vunmap(self, vaddr: int, caller: Caller = TASK) -> None:
        """Unmap what vmap() returned (the pages are not freed). 0 is a no-op."""
        if vaddr == 0:
            return
        area = self.areas.get(vaddr)
        if area is None or area.kind != "vmap":
            raise self._diagnose(vaddr, "vunmap", caller, area)
        self._remove_area(area, caller)
        self.unmap_pages(vaddr, area.npages, "vmap")
        vmapped = self.ka.live.vmapped
        for pfn in area.pfns:
            starts = vmapped[pfn]
            starts.remove(vaddr)
            if not starts:
                del vmapped[pfn]
        area.pfns = []  # as vfree: the history keeps the shape only

    def _diagnose(self, vaddr: int, api: str, caller: Caller, area: VmArea | None) -> Exception:
        if area is not None:
            msg = f"{api}() of a {area.kind} area (wrong API pair)"
            return InvalidFreeError(
                msg, addr=vaddr, site=caller.site, object=area.as_dict(), alloc_site=area.site
            )
        near = self.area_containing(vaddr)  # a live area first: stale history must not win over it
        if near is not None:
            return InvalidFreeError(f"{api}() of a pointer {vaddr - near.addr} bytes into an area",
                                    addr=vaddr, site=caller.site, object=near.as_dict(),
                                    alloc_site=near.site)  # fmt: skip
        old = self.freed.get(vaddr)
        if old is not None:
            msg = f"{api}() of an area that was already freed"
            return DoubleFreeError(
                msg,
                addr=vaddr,
                site=caller.site,
                object=old.as_dict(),
                alloc_site=old.site,
                free_site=old.free_site,
            )
        return InvalidFreeError(f"{api}() of {vaddr:#x}, which no vmalloc/vmap returned", addr=vaddr,
                                site=caller.site)  # fmt: skip

    # ================================================================ the address space

    def _find_range(self, npages: int) -> int | None:
        """First fit in the vmalloc window for npages plus the guard page."""
        want = (npages + GUARD_PAGES) << PAGE_SHIFT
        pos = VMALLOC_START
        for start in self._starts:
            if start - pos >= want:
                break
            a = self.areas[start]
            pos = max(pos, a.end + (GUARD_PAGES << PAGE_SHIFT))
        return pos if pos + want <= VMALLOC_END else None

    def _add_area(self, area: VmArea) -> None:
        bisect.insort(self._starts, area.addr)
        self.areas[area.addr] = area
        if area.addr in self.freed:
            del self.freed[area.addr]
            self._freed_starts.remove(area.addr)

    def _remove_area(self, area: VmArea, caller: Caller) -> None:
        del self.areas[area.addr]
        self._starts.remove(area.addr)
        area.free_site = caller.site
        if area.addr not in self.freed:
            bisect.insort(self._freed_starts, area.addr)
        self.freed[area.addr] = area

    def area_containing(self, vaddr: int) -> VmArea | None:
        i = bisect.bisect_right(self._starts, vaddr) - 1
        if i >= 0:
            a = self.areas[self._starts[i]]
            if vaddr < a.end:
                return a
        return None

    def describe(self, vaddr: int) -> dict:
        """What an unmapped (or mapped) virtual address is, for page-fault reports.

        Returns {"window", "state", "area", "offset", "alloc_site", "free_site"}:
        state is "mapped", "guard" (the page after an area: an overflow),
        "freed" (inside a vfree'd area: a use after vfree), "arena-top" (past
        the committed top of the arena) or "hole" (never mapped).
        """
        window = "arena" if vaddr >= ARENA_START else "vmalloc"
        out: dict = {"window": window, "state": "hole", "area": None, "offset": 0,
                     "alloc_site": 0, "free_site": 0}  # fmt: skip
        if window == "arena":
            out["state"] = "mapped" if (vaddr >> PAGE_SHIFT) in self.pte else "arena-top"
            return out
        a = self.area_containing(vaddr)
        if a is not None:
            out.update(state="mapped", area=a.as_dict(), offset=vaddr - a.addr, alloc_site=a.site)
            return out
        i = bisect.bisect_right(self._starts, vaddr) - 1
        if i >= 0:
            a = self.areas[self._starts[i]]
            if vaddr < a.end + (GUARD_PAGES << PAGE_SHIFT):
                out.update(state="guard", area=a.as_dict(), offset=vaddr - a.addr, alloc_site=a.site)
                return out
        j = bisect.bisect_right(self._freed_starts, vaddr) - 1
        if j >= 0:
            f = self.freed[self._freed_starts[j]]
            if vaddr < f.end:
                out.update(state="freed", area=f.as_dict(), offset=vaddr - f.addr, alloc_site=f.site,
                           free_site=f.free_site)  # fmt: skip
                return out
        near = self._nearest(vaddr)
        if near is not None:
            out.update(area=near.as_dict(), offset=vaddr - near.addr, alloc_site=near.site)
        return out

    def _nearest(self, vaddr: int) -> VmArea | None:
        best, dist = None, None
        for a in self.areas.values():
            d = min(abs(vaddr - a.addr), abs(vaddr - a.end))
            if dist is None or d < dist:
                best, dist = a, d
        return best

    # ================================================================ accounting and checks

    def stats(self) -> dict[str, int]:
        """Committed bytes by kind now and at their high-water marks."""
        return {
            "areas": len(self.areas),
            "vmalloc_bytes": self.pages["vmalloc"] * PAGE_SIZE,
            "vmap_bytes": self.pages["vmap"] * PAGE_SIZE,
            "arena_bytes": self.pages["arena"] * PAGE_SIZE,
            "page_table_bytes": self.page_table_pages * PAGE_SIZE,
            "high_water_vmalloc_bytes": self.high_water["vmalloc"] * PAGE_SIZE,
            "high_water_arena_bytes": self.high_water["arena"] * PAGE_SIZE,
            "high_water_page_table_bytes": self.high_water["page_tables"] * PAGE_SIZE,
        }

    def check(self) -> None:
        """Prove the module invariants; raises InvariantError naming the broken one."""
        self.check_tables()
        blocks = self.ka.buddy.blocks
        prev_end = 0
        for start in self._starts:
            a = self.areas[start]
            if a.addr < prev_end:
                raise InvariantError(f"vmalloc area {a.addr:#x} overlaps the previous area or its guard")
            for i, pfn in enumerate(a.pfns):
                if self.pte.get((a.addr >> PAGE_SHIFT) + i) != pfn:
                    raise InvariantError(f"page {i} of area {a.addr:#x} is not mapped to its page")
                if a.kind == "vmalloc" and blocks.get(pfn) != 1:
                    raise InvariantError(f"page {i} of area {a.addr:#x} is not an allocated order-0 block")
            if (a.end >> PAGE_SHIFT) in self.pte:
                raise InvariantError(f"the guard page after area {a.addr:#x} is mapped")
            if a.kind == "vmap" and any(a.addr not in self.ka.live.vmapped.get(p, ()) for p in a.pfns):
                raise InvariantError(f"a page of vmap area {a.addr:#x} is not pinned against free")
            prev_end = a.end + (GUARD_PAGES << PAGE_SHIFT)
        for pfn, starts in self.ka.live.vmapped.items():
            if any(self.areas.get(v) is None or pfn not in self.areas[v].pfns for v in starts):
                raise InvariantError(f"page {pfn << PAGE_SHIFT:#x} is pinned by a vmap area not mapping it")
