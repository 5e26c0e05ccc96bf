"""Struct page: the per-page state of one RAM bank, kept in compact arrays.

Linux keeps a `struct page` for every page frame (the memmap). kalloc keeps the
two fields the buddy allocator needs in two `bytearray`s per bank (a
"section", as in Linux's SPARSEMEM), indexed by `pfn - start_pfn`:

    state[i]  what page i is, when it heads a block (see the PG_* codes)
    order[i]  for a block head: the block's order

Only block heads are marked; the other pages of a block read PG_NONE. The
memmap still costs real memory: `Config.struct_page_size` bytes per page are
reserved at boot under the label "memmap" (see kalloc.buddy).

    state code    meaning                                   listed in
    PG_NONE       not a head: inside a block, or unmarked   -
    PG_BUDDY      head of a free block of order[i]         zone.free_area[order]
    PG_HEAD       head of an allocated block               Buddy.blocks (pfn -> pages)
    PG_RESERVED   reserved page (firmware, memmap, ...)    Buddy.reserved_label

Invariants:
 1. A section never spans two banks, and no block spans two sections.
 2. state[i] == PG_BUDDY exactly when pfn is a key of its zone's
    free_area[order[i]]; PG_HEAD exactly when pfn is a key of Buddy.blocks.
 3. Every page of a reserved range is PG_RESERVED (each page, not only heads).
"""

from __future__ import annotations

from kalloc.physmem import RamBank

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # 4096, as emulator/memlayout.py and the ABI assume
PAGE_MASK = PAGE_SIZE - 1

PG_NONE = 0
PG_BUDDY = 1
PG_HEAD = 2
PG_RESERVED = 3


def get_order(size: int) -> int:
    """Smallest order whose block holds `size` bytes (Linux's get_order(); 0 for size <= 4096)."""
    if size <= PAGE_SIZE:
        return 0
    return ((size - 1) >> PAGE_SHIFT).bit_length()


def pages_for(size: int) -> int:
    """Pages needed to hold `size` bytes (PAGE_ALIGN(size) >> PAGE_SHIFT)."""
    return (size + PAGE_MASK) >> PAGE_SHIFT


class Section:
    """The memmap of one RAM bank: page frames [start_pfn, end_pfn)."""

    __slots__ = ("bank", "end_pfn", "order", "start_pfn", "state", "zone_idx")

    def __init__(self, bank: RamBank, zone_idx: int) -> None:
        self.bank = bank
        self.start_pfn = (bank.base + PAGE_MASK) >> PAGE_SHIFT
        self.end_pfn = max(self.start_pfn, bank.end >> PAGE_SHIFT)
        self.zone_idx = zone_idx
        n = self.end_pfn - self.start_pfn
        self.state = bytearray(n)
        self.order = bytearray(n)

    @property
    def npages(self) -> int:
        return self.end_pfn - self.start_pfn

    def contains(self, pfn: int, npages: int = 1) -> bool:
        """True when pages [pfn, pfn+npages) all lie in this section."""
        return self.start_pfn <= pfn and pfn + npages <= self.end_pfn

    def __repr__(self) -> str:
        return f"Section({self.bank.name}, pfn {self.start_pfn:#x}..{self.end_pfn:#x})"
