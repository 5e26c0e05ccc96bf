"""Misuse diagnosis: what a bad free is, and what lies at an address, from the live-object table.

Two questions every free path and every fault report asks, answered from the
state alone (kalloc.live's table, its page -> slab/pool map, and the freed
page-level objects):

    diagnose_free(table, addr, api, caller)   the error for a free that matched no live
                                              object of the right kind, in this order:
        1. a live object of another kind (or cache, or pool)  -> invalid-free, "wrong API pair"
        2. a pointer inside a live object                      -> invalid-free, with its offset
        3. a freed object starting at addr                     -> double-free, with both sites
        4. not RAM / never allocated                           -> invalid-free
    describe(table, addr)   {"state": "live" | "free" | "quarantined", "object", "offset",
                             "alloc_site", "free_site"} or None
    object_phrase(obj)      "177-byte malloc object in a 192-byte slot of kmalloc-192"

Invariants:
 1. Both are pure: they read the table and change nothing (the slow path of a free).
 2. A never-used slab slot or pool block is "free" with free_site 0.
 3. A freed object is named by the size it was requested with (the last one, after a
    realloc in place), as a live one is; the slot's size and cache are added beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc.config import Caller
from kalloc.dmapool import PoolPage
from kalloc.errors import DoubleFreeError, InvalidFreeError, KallocError
from kalloc.kinds import KIND_ALLOC_API, KIND_CACHE, KIND_DMA_POOL, KIND_NAMES, cache_kind_name
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, pages_for
from kalloc.slab import OBJ_FREE, OBJ_PERCPU, OBJ_QUARANTINED, KmemCache, Slab

if TYPE_CHECKING:
    from kalloc.dmapool import DmaPool
    from kalloc.live import LiveTable


def diagnose_free(
    table: LiveTable,
    addr: int,
    api: str,
    caller: Caller,
    cache: KmemCache | None = None,
    pool: DmaPool | None = None,
) -> KallocError:
    """The error for a free that does not match a live object of the right kind."""
    site = caller.site
    rec = table.records.get(addr)
    if rec is not None:
        obj = table.object_dict(addr, rec)
        if cache is not None and rec.kind == KIND_CACHE:
            msg = f"{api}() of an object of cache {str(obj['kind'])[6:]!r} passed with cache {cache.name!r}"
        elif pool is not None and rec.kind == KIND_DMA_POOL:
            msg = f"{api}() of a block of pool {str(obj['kind'])[9:]!r} passed with pool {pool.name!r}"
        else:
            msg = f"{api}() of memory allocated by {KIND_ALLOC_API[rec.kind]}() (wrong API pair)"
        return InvalidFreeError(msg, addr=addr, site=site, object=obj, alloc_site=rec.site)
    hit = table.container(addr)
    if hit is not None:
        start, rec = hit
        return InvalidFreeError(
            f"{api}() of a pointer {addr - start} bytes into a live object (not its start)",
            addr=addr,
            site=site,
            offset=addr - start,
            object=table.object_dict(start, rec),
            alloc_site=rec.site,
        )
    freed = freed_object_at(table, addr)
    if freed is not None:
        obj, alloc_site, free_site = freed
        return DoubleFreeError(
            f"{api}() of an object that was already freed: a {object_phrase(obj)}",
            addr=addr,
            site=site,
            object=obj,
            alloc_site=alloc_site,
            free_site=free_site,
        )
    if addr < 0 or not table.ram_contains(addr):
        return InvalidFreeError(f"{api}() of {addr:#x}, which is not a RAM address", addr=addr, site=site)
    return InvalidFreeError(f"{api}() of a pointer that was never allocated", addr=addr, site=site)


def freed_object_at(table: LiveTable, addr: int) -> tuple[dict, int, int] | None:
    """(object, alloc_site, free_site) of a freed object starting at addr, if one is known."""
    owner = table.page_owner.get(addr >> PAGE_SHIFT)
    if isinstance(owner, Slab):
        cache = owner.cache
        idx, delta = cache.object_index(owner, addr)
        if delta == 0 and idx < owner.nobjs and owner.obj[idx] in (OBJ_FREE, OBJ_QUARANTINED, OBJ_PERCPU):
            return freed_slot_object(owner, idx, addr), owner.alloc_site[idx], owner.free_site[idx]
        return None
    if isinstance(owner, PoolPage):
        block = owner.pool.block_index_at(addr - owner.base)
        if block is not None and owner.obj[block] == OBJ_FREE:
            obj = {"addr": addr, "size": owner.pool.size, "kind": f"dma_pool:{owner.pool.name}"}
            return obj, owner.alloc_site[block], owner.free_site[block]
        return None
    rec = table.freed.get(addr)
    if rec is not None:
        return {"addr": addr, "size": rec.size, "kind": KIND_NAMES[rec.kind]}, rec.alloc_site, rec.free_site
    return None


def freed_slot_object(slab: Slab, idx: int, start: int) -> dict:
    """The object freed from slot idx as reports name it: the size it was requested with.

    {"addr", "size", "kind"} as for a live object; a kmalloc or malloc object adds
    "usable" (the slot's object size) and "cache" (the size class it came from).
    """
    cache = slab.cache
    kind = slab.freed_kind[idx]
    if kind == KIND_CACHE or not cache.internal:
        return {"addr": start, "size": cache.size, "kind": cache_kind_name(cache)}
    size = slab.freed_size[idx]
    return {"addr": start, "size": size, "kind": KIND_NAMES[kind], "usable": cache.size, "cache": cache.name}


def object_phrase(obj: dict) -> str:
    """"177-byte malloc object in a 192-byte slot of kmalloc-192": an object dict in words."""
    text = f"{obj['size']}-byte {obj['kind']} object"
    usable = obj.get("usable")
    if usable is not None and usable != obj["size"]:
        text += f" in a {usable}-byte slot of {obj['cache']}"
    return text


def describe(table: LiveTable, addr: int) -> dict | None:
    """What lies at addr, for reports: a live or freed object (with sites), or None.

    Returns {"state": "live" | "free" | "quarantined", "object": {addr, size,
    kind}, "offset": addr - object start, "alloc_site", "free_site"}. Free
    slab objects and DMA pool blocks, and page-level objects freed and not
    reused since, are "free" (a never-used slot has free_site 0).
    """
    hit = table.container(addr)
    if hit:
        start, rec = hit
        return {
            "state": "live",
            "object": table.object_dict(start, rec),
            "offset": addr - start,
            "alloc_site": rec.site,
            "free_site": 0,
        }
    owner = table.page_owner.get(addr >> PAGE_SHIFT)
    if isinstance(owner, Slab):
        return _describe_slab_slot(owner, addr)
    if isinstance(owner, PoolPage):
        pool = owner.pool
        idx = pool.block_index_containing(addr - owner.base)
        if idx is not None and owner.obj[idx] == OBJ_FREE:
            start = owner.base + pool.offsets[idx]
            return {
                "state": "free",
                "object": {"addr": start, "size": pool.size, "kind": f"dma_pool:{pool.name}"},
                "offset": addr - start,
                "alloc_site": owner.alloc_site[idx],
                "free_site": owner.free_site[idx],
            }
        return None
    return _describe_freed_pages(table, addr)


def _describe_slab_slot(slab: Slab, addr: int) -> dict | None:
    cache = slab.cache
    idx = (addr - slab.base) // cache.stride
    if idx < slab.nobjs and slab.obj[idx] in (OBJ_FREE, OBJ_QUARANTINED, OBJ_PERCPU):
        start = slab.object_addr(idx)
        return {
            "state": "quarantined" if slab.obj[idx] == OBJ_QUARANTINED else "free",
            "object": freed_slot_object(slab, idx, start),
            "offset": addr - start,
            "alloc_site": slab.alloc_site[idx],
            "free_site": slab.free_site[idx],
        }
    return None


def _describe_freed_pages(table: LiveTable, addr: int) -> dict | None:
    """A page-level object freed (and its head not reallocated) whose pages hold addr."""
    if freed := table.freed:
        for k in range(table.max_order + 1):
            head = addr & ~((PAGE_SIZE << k) - 1)
            rec = freed.get(head)
            if rec is not None and addr < head + pages_for(max(rec.size, 1)) * PAGE_SIZE:
                return {
                    "state": "free",
                    "object": {"addr": head, "size": rec.size, "kind": KIND_NAMES[rec.kind]},
                    "offset": addr - head,
                    "alloc_site": rec.alloc_site,
                    "free_site": rec.free_site,
                }
    return None
