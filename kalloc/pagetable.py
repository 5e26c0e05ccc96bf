"""Sv32-shaped page tables in guest RAM, the virtual windows they map, and byte access through them.

Two levels of 4 KiB pages — a root table of 1024 entries, each naming a leaf
table of 1024 PTEs (4 MiB of virtual space). A PTE is `pfn << 10 | flags` (V R W
A D, the Sv32 bits). The table pages come from the allocator's page pipeline and
are counted as metadata (`page_table_pages`). `pte` mirrors the leaf entries in a
dict so translation costs one lookup; the two copies are written together, and
check_tables() trusts only the mirror (guest RAM is the firmware's to scribble
on). (The CPU's own Sv32 MMU cannot walk them: the firmware runs in machine
mode, where satp is ignored; the emulator translates through Unicorn's TLB-fill
hook instead.)

    vmalloc window  [VMALLOC_START, VMALLOC_END)  areas of vmalloc() and vmap() (kalloc.vmalloc)
    arena window    [ARENA_START, ARENA_END)      the console-style growable heap
                                                  (kalloc.heaps.arena)

Data structure:
    pte: {vpn: pfn}                 every mapped page
    root pfn, {root index: leaf table pfn}, {root index: PTEs in use}
    pages / high_water: {kind: mapped pages}   per kind (vmalloc, vmap, arena; + page_tables)
    on_unmap: [fn(vaddr, npages)]   told after every unmap (the emulator flushes its TLB)

Invariants (check_tables() proves them):
 1. Every mapping in the `pte` mirror has its leaf table, and each leaf table counts exactly
    its mappings. (The PTE bytes in guest RAM are written alongside but not checked: the
    firmware can scribble on them, and translation reads only the mirror.)
 2. Page table pages are allocated order-0 blocks and counted once; an empty
    leaf table is freed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kalloc import gfp as G
from kalloc.config import TASK, Caller
from kalloc.errors import InvariantError
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
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


class PageTables:
    """The page tables of one Kalloc's virtual windows (module docstring)."""

    def __init__(self, ka: Kalloc) -> None:
        self.ka = ka
        self.phys = ka.phys
        self.pte: dict[int, int] = {}
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

    def check_tables(self) -> None:
        """Prove the module invariants; raises InvariantError naming the broken one."""
        blocks = self.ka.buddy.blocks
        for pfn in self.table_pfns():
            if blocks.get(pfn) != 1:
                raise InvariantError(f"page table page {pfn << PAGE_SHIFT:#x} is not an allocated page")
        # Host-side state only: the table pages are guest RAM the firmware can scribble on, and
        # translation never reads them (the `pte` mirror is the truth), so their bytes prove nothing.
        use: dict[int, int] = {}
        for vpn in self.pte:
            idx = vpn >> 10
            if idx not in self._tables:
                raise InvariantError(f"{vpn << PAGE_SHIFT:#x} is mapped without a leaf table")
            use[idx] = use.get(idx, 0) + 1
        if use != self._table_use:
            raise InvariantError("the PTEs counted per leaf table differ from the mappings")
        if set(self._tables) != set(self._table_use) or (self._tables and self._root is None):
            raise InvariantError("a leaf table is empty or has no root table")
