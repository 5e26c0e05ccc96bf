"""The live-object table: every object any API handed out, what it is, and what a free of it means.

Data structures (all keyed by ints; nothing depends on object ids):

    LiveTable.records   {addr: LiveRecord(size, kind, site, gfp)}   every live object, any API
    page_owner          {pfn: Slab | PoolPage}    every page of a slab or DMA pool page
                                                  (written by kalloc.slub and kalloc.dma)
    freed               {addr: FreedPages(kind, size, alloc_site, free_site)}
                                                  page-level objects freed and not reallocated
                                                  at that address (double-free diagnosis)
    not_leak, ksized    set[addr]                 kmemleak_not_leak marks; objects whose tail
                                                  ksize() unlocked
    listeners           [fn(event, addr, size, usable)]   told of every "alloc", "free", "resize"
                                                  (a listener marked @page_level_only is not told
                                                  of slab objects: kalloc.slub skips it)

A record's `kind` is a KIND_* code; KIND_NAMES gives its text (":<name>" is added for
caches and pools) and KIND_ALLOC_API the function that allocates it.

Every free path asks `take_for_free(addr, kind, api, caller)` first: it returns the
record, or raises the diagnosis (kalloc.misuse) — an invalid free (never allocated,
interior pointer, another API's memory) or a double free with both sites. (kfree and
free make the same test inline, being the hot paths, and kmem_cache_free and
dma_pool_free add their cache's or pool's check; all raise diagnose_free().)

Invariants:
 1. A key is the first byte of exactly one live object; its record's size is the
    size requested (the usable size is usable()).
 2. not_leak and ksized hold only live addresses: forget() drops an address from both.
 3. Listeners hear "alloc" after a record is added, "free" after it is removed, and
    "resize" when its size or usable tail changes (a @page_level_only listener may not
    hear a slab object's "alloc" and "free").
 4. take_for_free() changes nothing: a misuse raises before any state changes.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, ValuesView
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from kalloc.config import Caller
from kalloc.dmapool import PoolPage
from kalloc.errors import InvalidFreeError, KallocError
from kalloc.kinds import KIND_CACHE, KIND_DMA_POOL, KIND_NAMES
from kalloc.misuse import describe, diagnose_free
from kalloc.page import PAGE_SHIFT
from kalloc.slab import OBJ_LIVE, KmemCache, Slab

if TYPE_CHECKING:
    from kalloc.buddy import Buddy
    from kalloc.dmapool import DmaPool

Listener = Callable[[str, int, int, int], None]


def page_level_only(fn: Any) -> Any:
    """Mark a listener that ignores slab objects: kalloc.slub's hot paths do not call it for them.

    For a listener that returns at once for an object inside a slab (one that counts pages,
    say): its events are the same without the call (LiveTable.slab_listeners).
    """
    fn.page_level_only = True
    return fn


def wants_slab_objects(fn: Listener) -> bool:
    return not getattr(fn, "page_level_only", False)


class LiveRecord(NamedTuple):
    """What the table knows of one live object."""

    size: int  # bytes requested
    kind: int  # KIND_*
    site: int  # stack-depot handle of the allocation
    gfp: int  # the request's GFP flags

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveRecord:
        return self  # immutable ints: snapshots share it


# The hot paths build records with this: NamedTuple's generated __new__ costs three
# times as much as tuple.__new__ (measured: ~370 ns against ~190 ns).
new_record = tuple.__new__


class FreedPages(NamedTuple):
    """A page-level object freed and not reallocated at its address."""

    kind: int
    size: int
    alloc_site: int
    free_site: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """One live object.

    addr: first byte; size: bytes requested; kind: "kmalloc", "malloc",
    "pages", "pages_exact", "dma_coherent", "cache:<name>" or
    "dma_pool:<name>"; site: stack-depot handle of the allocation; not_leak:
    marked by kmemleak_not_leak; gfp: the request's GFP flags; usable: bytes
    the caller may use (ksize / malloc_usable_size).
    """

    addr: int
    size: int
    kind: str
    site: int
    not_leak: bool
    gfp: int
    usable: int

    @property
    def end(self) -> int:
        return self.addr + self.size


class LiveTable:
    """{addr: LiveRecord} of every live object (`records`), with the lookups every API shares.

    Reads as a mapping (get, [], in, len, iteration, items, values) for callers
    outside the hot paths; the alloc and free paths use `records` itself. (A dict
    subclass would do the same, but every attribute read on its instances costs a
    slow lookup, and the paths read freed, listeners, ksized on every call.)
    """

    def __init__(self, buddy: Buddy, max_order: int, ram_contains: Callable[[int], bool]) -> None:
        self.records: dict[int, LiveRecord] = {}
        self.buddy = buddy
        self.max_order = max_order
        self.ram_contains = ram_contains
        self.page_owner: dict[int, Slab | PoolPage] = {}
        self.freed: dict[int, FreedPages] = {}
        self.not_leak: set[int] = set()
        self.ksized: set[int] = set()
        self.listeners: list[Listener] = []
        # the listeners slab objects' events go to (not @page_level_only), kept by slab_listeners()
        self.slab_listeners_of: tuple[int, list[Listener]] = (0, [])
        # pfn -> starts of the vmap areas mapping it (kalloc.vmalloc keeps it): such a page may
        # not be freed while mapped, or it would be handed out twice (docs/allocator.md)
        self.vmapped: dict[int, list[int]] = {}

    # ---------------------------------------------------------------- the mapping

    def get(self, addr: int) -> LiveRecord | None:
        return self.records.get(addr)

    def __getitem__(self, addr: int) -> LiveRecord:
        return self.records[addr]

    def __setitem__(self, addr: int, rec: LiveRecord) -> None:
        self.records[addr] = rec

    def __delitem__(self, addr: int) -> None:
        del self.records[addr]

    def __contains__(self, addr: object) -> bool:
        return addr in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[int]:
        return iter(self.records)

    def items(self) -> ItemsView[int, LiveRecord]:
        return self.records.items()

    def values(self) -> ValuesView[LiveRecord]:
        return self.records.values()

    # ---------------------------------------------------------------- events

    def notify(self, event: str, addr: int, size: int, usable: int) -> None:
        for fn in self.listeners:
            fn(event, addr, size, usable)

    def slab_listeners(self) -> list[Listener]:
        """The listeners to tell of a slab object's event (listeners are only ever appended)."""
        n, out = self.slab_listeners_of
        if n != len(self.listeners):
            out = [fn for fn in self.listeners if wants_slab_objects(fn)]
            self.slab_listeners_of = (len(self.listeners), out)
        return out

    def forget(self, addr: int, rec: LiveRecord) -> None:
        """Remove a live object being freed (its slot or pages are released by the caller)."""
        del self.records[addr]
        if self.not_leak:
            self.not_leak.discard(addr)
        if self.ksized:
            self.ksized.discard(addr)
        if self.listeners:
            self.notify("free", addr, rec.size, self.usable(addr, rec))

    def take_for_free(self, addr: int, kind: int, api: str, caller: Caller) -> LiveRecord:
        """The record of the live object of `kind` at addr that `api` frees, or raise the misuse."""
        rec = self.records.get(addr)
        if rec is None or rec.kind != kind:
            raise self.diagnose_free(addr, api, caller)
        if self.vmapped:
            self.refuse_mapped(addr, rec, api, caller)
        return rec

    def refuse_mapped(self, addr: int, rec: LiveRecord, api: str, caller: Caller) -> None:
        """Raise invalid-free when a page of the page-level object at addr is still vmap'd."""
        pfn = addr >> PAGE_SHIFT
        if pfn in self.page_owner:  # a slab or pool object: its pages are never vmap'd (Vmalloc.vmap)
            return
        for p in range(pfn, pfn + self.buddy.blocks.get(pfn, 0)):
            areas = self.vmapped.get(p)
            if areas:
                raise InvalidFreeError(
                    f"{api}() of {addr:#x} while its page {p << PAGE_SHIFT:#x} is still mapped by the"
                    f" vmap area at {areas[0]:#x} (vunmap it first: the page would be handed out twice)",
                    addr=addr,
                    site=caller.site,
                    object=self.object_dict(addr, rec),
                    alloc_site=rec.site,
                    vmap_area=areas[0],
                )

    def diagnose_free(
        self, addr: int, api: str, caller: Caller, cache: KmemCache | None = None, pool: DmaPool | None = None
    ) -> KallocError:
        """The error for a free that does not match a live object of the right kind (slow path)."""
        return diagnose_free(self, addr, api, caller, cache, pool)

    def mismatch(self, msg: str, addr: int, rec: LiveRecord, caller: Caller) -> InvalidFreeError:
        """A free whose extra arguments (order, size, DMA address) do not match the object."""
        return InvalidFreeError(
            msg, addr=addr, site=caller.site, object=self.object_dict(addr, rec), alloc_site=rec.site
        )

    # ---------------------------------------------------------------- what an object is

    def usable(self, addr: int, rec: LiveRecord) -> int:
        """Bytes the owner of a live object may use: the slot's object size, or its pages."""
        owner = self.page_owner.get(addr >> PAGE_SHIFT)
        if isinstance(owner, Slab):
            return owner.cache.size
        if isinstance(owner, PoolPage):
            return owner.pool.size
        return self.buddy.blocks[addr >> PAGE_SHIFT] << PAGE_SHIFT

    def kind_name(self, addr: int, rec: LiveRecord) -> str:
        kind = rec.kind
        if kind == KIND_CACHE:
            owner = self.page_owner[addr >> PAGE_SHIFT]
            assert isinstance(owner, Slab)
            return f"cache:{owner.cache.name}"
        if kind == KIND_DMA_POOL:
            owner = self.page_owner[addr >> PAGE_SHIFT]
            assert isinstance(owner, PoolPage)
            return f"dma_pool:{owner.pool.name}"
        return KIND_NAMES[kind]

    def object_dict(self, addr: int, rec: LiveRecord) -> dict[str, int | str]:
        """{"addr", "size", "kind"}: the object as reports name it."""
        return {"addr": addr, "size": rec.size, "kind": self.kind_name(addr, rec)}

    def allocation(self, addr: int, rec: LiveRecord) -> Allocation:
        return Allocation(
            addr=addr,
            size=rec.size,
            kind=self.kind_name(addr, rec),
            site=rec.site,
            not_leak=addr in self.not_leak,
            gfp=rec.gfp,
            usable=self.usable(addr, rec),
        )

    def allocations(self) -> list[Allocation]:
        """Every live object, sorted by address."""
        records = self.records
        return [self.allocation(a, records[a]) for a in sorted(records)]

    def container(self, addr: int) -> tuple[int, LiveRecord] | None:
        """(start, record) of the live object whose slot or page block contains addr."""
        pfn = addr >> PAGE_SHIFT
        owner = self.page_owner.get(pfn)
        if isinstance(owner, Slab):
            idx = (addr - owner.base) // owner.cache.stride
            if idx < owner.nobjs and owner.obj[idx] == OBJ_LIVE:
                start = owner.object_addr(idx)
                return start, self.records[start]
            return None
        if isinstance(owner, PoolPage):
            block = owner.pool.block_index_containing(addr - owner.base)
            if block is not None and owner.obj[block] == OBJ_LIVE:
                start = owner.base + owner.pool.offsets[block]
                return start, self.records[start]
            return None
        head = self.block_head(pfn)
        if head is None:
            return None
        rec = self.records.get(head << PAGE_SHIFT)
        return (head << PAGE_SHIFT, rec) if rec is not None else None

    def block_head(self, pfn: int) -> int | None:
        """The head pfn of the allocated buddy block holding pfn, or None."""
        blocks = self.buddy.blocks
        for k in range(self.max_order + 1):
            head = pfn & ~((1 << k) - 1)
            n = blocks.get(head)
            if n is not None:
                return head if pfn < head + n else None
        return None

    def lookup(self, addr: int) -> Allocation | None:
        """The live object whose slot (object, red zones, padding) or page block contains addr."""
        hit = self.container(addr)
        return self.allocation(*hit) if hit else None

    def describe(self, addr: int) -> dict | None:
        """What lies at addr, for reports: a live or freed object (with sites), or None (kalloc.misuse)."""
        return describe(self, addr)
