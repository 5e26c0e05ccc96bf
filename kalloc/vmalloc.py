"""Virtual memory without demand paging: vmalloc, vmap and the page tables behind them.

The machine has virtual memory but no demand paging (DESIGN.md): every virtual
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

Page tables: Sv32-shaped, two levels of 4 KiB pages in guest RAM — a root table
of 1024 entries, each naming a leaf table of 1024 PTEs (4 MiB of virtual space).
A PTE is `pfn << 10 | flags` (V R W A D, the Sv32 bits). The table pages come
from the buddy allocator and are counted as metadata (`page_table_bytes`).
`pte` mirrors them in a dict so translation costs one lookup; the two copies are
written together and check() compares them. (The CPU's own Sv32 MMU cannot walk
them: the firmware runs in machine mode, where satp is ignored; the emulator
translates through Unicorn's TLB-fill hook instead, emulator/mmu.py.)

Invariants (check() proves them):
 1. Every mapped page of a vmalloc or arena area is an allocated order-0 buddy
    block; pages of a vmap area are allocated blocks owned by their caller.
 2. Areas do not overlap, and the page after every area (its guard) is unmapped.
 3. The PTEs in guest RAM and the `pte` mirror agree.
 4. Page table pages are allocated blocks and counted once.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kalloc import gfp as G
from kalloc.config import TASK, Caller
from kalloc.debug import POISON_FREE, POISON_INUSE
from kalloc.errors import BadArgumentError, DoubleFreeError, InvalidFreeError, InvariantError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.physmem import BadAddress

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc

# The windows (emulator/memlayout.py draws the whole map; tests check they agree).
VMALLOC_START = 0xC000_0000
VMALLOC_END = 0xE000_0000
ARENA_START = 0xE000_0000
ARENA_END = 0xF000_0000

PTE_V, PTE_R, PTE_W, PTE_A, PTE_D = 0x1, 0x2, 0x4, 0x40, 0x80
PTE_LEAF = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
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

    @property
    def end(self) -> int:
        return self.addr + (self.npages << PAGE_SHIFT)

    def as_dict(self) -> dict[str, int | str]:
        return {"addr": self.addr, "size": self.size, "kind": self.kind, "pages": self.npages}


class Vmalloc:
    """The vmalloc and arena windows of one Kalloc, and their page tables.

    Public attributes: pte ({vpn: pfn}, every mapped page), areas ({addr:
    VmArea}), on_unmap (callables fn(vaddr, npages) run after every unmap),
    pages (mapped pages per kind: vmalloc, vmap, arena), high_water (the same,
    highest seen, plus page_tables).
    """

    def __init__(self, ka: Kalloc) -> None:
        self.ka = ka
        self.phys = ka.phys
        self.pte: dict[int, int] = {}
        self.areas: dict[int, VmArea] = {}
        self._starts: list[int] = []
        self.freed: dict[int, VmArea] = {}  # vfree'd areas by start (the latest at each address)
        self._freed_starts: list[int] = []
        self.on_unmap: list[Callable[[int, int], None]] = []
        self._root: int | None = None  # pfn of the root table page
        self._tables: dict[int, int] = {}  # root index -> pfn of its leaf table page
        self._table_use: dict[int, int] = {}  # root index -> mapped PTEs in that leaf table
        self.pages: dict[str, int] = {"vmalloc": 0, "vmap": 0, "arena": 0}
        self.high_water: dict[str, int] = {"vmalloc": 0, "vmap": 0, "arena": 0, "page_tables": 0}

    # ================================================================ windows

    @staticmethod
    def in_window(vaddr: int) -> bool:
        """True when vaddr lies in the vmalloc or arena window (translated, never identity)."""
        return VMALLOC_START <= vaddr < ARENA_END

    def translate(self, vaddr: int) -> int | None:
        """The physical address of a mapped virtual address, or None."""
        pfn = self.pte.get(vaddr >> PAGE_SHIFT)
        return None if pfn is None else (pfn << PAGE_SHIFT) | (vaddr & (PAGE_SIZE - 1))

    def table_pfns(self) -> list[int]:
        """The pfns of every page-table page (the leaf tables, then the root)."""
        return [*self._tables.values(), *(() if self._root is None else (self._root,))]

    @property
    def page_table_pages(self) -> int:
        return len(self._tables) + (self._root is not None)

    # ================================================================ page tables

    def _table_page(self, caller: Caller) -> int | None:
        pfn = self.ka.pages.alloc_block(G.GFP_KERNEL, 0, caller, PAGE_SIZE)
        if pfn is not None:
            self.phys.fill(pfn << PAGE_SHIFT, PAGE_SIZE, 0)
        return pfn

    def _ensure_table(self, vpn: int, caller: Caller) -> bool:
        """Make sure the leaf table covering vpn exists (allocating root and leaf pages)."""
        idx = vpn >> 10
        if idx in self._tables:
            return True
        if self._root is None:
            root = self._table_page(caller)
            if root is None:
                return False
            self._root = root
        leaf = self._table_page(caller)
        if leaf is None:
            return False
        self._tables[idx] = leaf
        self._table_use[idx] = 0
        self.phys.write_u32((self._root << PAGE_SHIFT) + 4 * idx, (leaf << 10) | PTE_V)
        self._bump("page_tables", self.page_table_pages)
        return True

    def _set_pte(self, vpn: int, pfn: int) -> None:
        idx = vpn >> 10
        self.phys.write_u32((self._tables[idx] << PAGE_SHIFT) + 4 * (vpn & 0x3FF), (pfn << 10) | PTE_LEAF)
        self.pte[vpn] = pfn
        self._table_use[idx] += 1

    def _clear_pte(self, vpn: int) -> int:
        idx = vpn >> 10
        self.phys.write_u32((self._tables[idx] << PAGE_SHIFT) + 4 * (vpn & 0x3FF), 0)
        self._table_use[idx] -= 1
        if self._table_use[idx] == 0:  # an empty leaf table goes back to the buddy allocator
            self.phys.write_u32((self._root << PAGE_SHIFT) + 4 * idx, 0)  # type: ignore[operator]
            self.ka.buddy.free(self._tables.pop(idx))
            del self._table_use[idx]
        return self.pte.pop(vpn)

    def _bump(self, kind: str, value: int) -> None:
        if value > self.high_water[kind]:
            self.high_water[kind] = value

    def map_pages(self, vaddr: int, pfns: list[int], kind: str, caller: Caller = TASK) -> bool:
        """Map `pfns` at vaddr, vaddr+4096, ...; False (nothing mapped) when a table page is missing."""
        vpn0 = vaddr >> PAGE_SHIFT
        for i in range(len(pfns)):
            if not self._ensure_table(vpn0 + i, caller):
                return False
        for i, pfn in enumerate(pfns):
            self._set_pte(vpn0 + i, pfn)
        self.pages[kind] += len(pfns)
        self._bump(kind, self.pages[kind])
        return True

    def unmap_pages(self, vaddr: int, npages: int, kind: str) -> list[int]:
        """Unmap npages at vaddr; tells `on_unmap` (TLB flush) and returns the pfns that were mapped."""
        vpn0 = vaddr >> PAGE_SHIFT
        pfns = [self._clear_pte(vpn0 + i) for i in range(npages)]
        self.pages[kind] -= npages
        for fn in self.on_unmap:
            fn(vaddr, npages)
        return pfns

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

    def vmap(self, pfns: list[int], caller: Caller = TASK) -> int | None:
        """Map pages the caller owns (allocated blocks) contiguously; returns the address or None.

        Pair with vunmap(); the pages stay the caller's. Raises BadArgumentError
        for an empty list or a page that is not allocated.
        """
        if not pfns:
            raise BadArgumentError("vmap() of no pages", site=caller.site)
        for pfn in pfns:
            if self.ka.live.block_head(pfn) is None:
                raise BadArgumentError(f"vmap() of page {pfn << PAGE_SHIFT:#x}, which is not allocated",
                                       addr=pfn << PAGE_SHIFT, site=caller.site)  # fmt: skip
        vaddr = self._find_range(len(pfns))
        if vaddr is None or not self.map_pages(vaddr, list(pfns), "vmap", caller):
            self.ka.pages.too_large(G.GFP_KERNEL, len(pfns) << PAGE_SHIFT, caller, "vmap() found no room")
            return None
        self._add_area(VmArea(vaddr, len(pfns), len(pfns) << PAGE_SHIFT, "vmap", caller.site, 0, list(pfns)))
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

    def _diagnose(self, vaddr: int, api: str, caller: Caller, area: VmArea | None) -> Exception:
        if area is not None:
            msg = f"{api}() of a {area.kind} area (wrong API pair)"
            return InvalidFreeError(
                msg, addr=vaddr, site=caller.site, object=area.as_dict(), alloc_site=area.site
            )
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
        near = self.area_containing(vaddr)
        if near is not None:
            return InvalidFreeError(f"{api}() of a pointer {vaddr - near.addr} bytes into an area",
                                    addr=vaddr, site=caller.site, object=near.as_dict(),
                                    alloc_site=near.site)  # fmt: skip
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

    # ================================================================ byte access through the tables

    def segments(self, vaddr: int, n: int) -> list[tuple[int, int]]:
        """[(paddr, length)] covering [vaddr, vaddr+n), page by page; BadAddress at the first hole."""
        out: list[tuple[int, int]] = []
        while n > 0:
            pa = self.translate(vaddr)
            if pa is None:
                raise BadAddress(f"virtual address {vaddr:#x} is not mapped")
            chunk = min(n, PAGE_SIZE - (vaddr & (PAGE_SIZE - 1)))
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + chunk)
            else:
                out.append((pa, chunk))
            vaddr += chunk
            n -= chunk
        return out

    def read(self, vaddr: int, n: int) -> bytes:
        return b"".join(self.phys.read(pa, k) for pa, k in self.segments(vaddr, n))

    def write(self, vaddr: int, data: bytes) -> None:
        off = 0
        for pa, k in self.segments(vaddr, len(data)):
            self.phys.write(pa, data[off : off + k])
            off += k

    def fill(self, vaddr: int, n: int, byte: int) -> None:
        for pa, k in self.segments(vaddr, n):
            self.phys.fill(pa, k, byte)

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
        blocks = self.ka.buddy.blocks
        for pfn in (*self._tables.values(), *(() if self._root is None else (self._root,))):
            if blocks.get(pfn) != 1:
                raise InvariantError(f"page table page {pfn << PAGE_SHIFT:#x} is not an allocated page")
        for vpn, pfn in self.pte.items():
            idx = vpn >> 10
            got = self.phys.read_u32((self._tables[idx] << PAGE_SHIFT) + 4 * (vpn & 0x3FF))
            if got != (pfn << 10) | PTE_LEAF:
                raise InvariantError(f"PTE of {vpn << PAGE_SHIFT:#x} in RAM differs from the mirror")
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
            prev_end = a.end + (GUARD_PAGES << PAGE_SHIFT)
