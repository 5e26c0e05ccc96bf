"""The C library face over boundary-tag regions (kalloc.heaps.fit): shared by "firstfit" and "arena".

Subclasses say where regions come from (`_grow`) and what happens after a free
(`_after_free`: release a whole empty region, or trim the arena's top). This
class keeps the live objects, applies kalloc.libc's policies (zero sizes,
realloc(p, 0), calloc overflow, alignment, heap_max), poisons fresh (0x5a) and
freed (0x6b) payloads when the sanitizer is on, and diagnoses bad frees.

Objects are of kind "malloc" but are *not* in the allocator's live records
(they live inside pages the heap holds): `live_allocations()` lists them for
leak scans, and `check()` proves their regions.

Invariants:
 1. Every live object is the payload of a used block of exactly one region.
 2. A freed payload is forgotten from `_live` before its block is released.
"""

from __future__ import annotations

import bisect

from kalloc import gfp as G
from kalloc.config import TASK, Caller
from kalloc.debug import POISON_FREE, POISON_INUSE
from kalloc.errors import BadArgumentError, DoubleFreeError, InvalidFreeError, InvariantError
from kalloc.heaps.base import Heap
from kalloc.heaps.fit import HDR, FitRegion, block_size_for, payload_align
from kalloc.stats import Allocation

_GFP = G.GFP_KERNEL
FREED_MEMORY = 4096  # freed payloads remembered for double-free diagnosis (oldest forgotten first)


class FitHeap(Heap):
    """Boundary-tag regions behind malloc (module docstring)."""

    def __init__(self, ka) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ka)
        self.regions: list[FitRegion] = []  # sorted by start
        self._starts: list[int] = []
        self._live: dict[int, tuple[int, int]] = {}  # payload -> (requested size, site)
        self._freed: dict[int, tuple[int, int, int]] = {}  # payload -> (size, alloc site, free site)
        self.failed_grows = 0

    # -- subclass hooks ---------------------------------------------------------------------------
    def _grow(self, size: int, align: int, gfp: int, caller: Caller) -> bool:
        raise NotImplementedError

    def _after_free(self, region: FitRegion) -> None:
        pass

    def _fill(self, addr: int, n: int, byte: int) -> None:
        self.ka.phys.fill(addr, n, byte)

    def _copy(self, dst: int, src: int, n: int) -> None:
        self.write(dst, self.read(src, n))

    # -- regions ----------------------------------------------------------------------------------
    def add_region(self, region: FitRegion) -> None:
        i = bisect.bisect_left(self._starts, region.start)
        self._starts.insert(i, region.start)
        self.regions.insert(i, region)

    def drop_region(self, region: FitRegion) -> None:
        i = bisect.bisect_left(self._starts, region.start)
        del self._starts[i]
        del self.regions[i]

    def region_of(self, addr: int) -> FitRegion | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.regions[i].end:
            return self.regions[i]
        return None

    def requested(self, addr: int) -> int | None:
        """The requested size of the live object at `addr`, or None when none starts there."""
        rec = self._live.get(addr)
        return rec[0] if rec is not None else None

    def live_addrs(self) -> list[int]:
        return list(self._live)

    def owns(self, addr: int) -> bool:
        return self.region_of(addr) is not None or addr in self._freed

    # -- allocation -------------------------------------------------------------------------------
    def _fit(self, size: int, align: int) -> int | None:
        for r in self.regions:
            p = r.fit(size, align)
            if p is not None:
                return p
        return None

    def _place(self, size: int, align: int, gfp: int, caller: Caller) -> int | None:
        """Where a request goes: a fitting free block, or one in a grown region (None: no memory)."""
        p = self._fit(size, align)
        if p is None:
            if not self._grow(size, align, gfp, caller):
                return None
            p = self._fit(size, align)
            assert p is not None, "a grown heap cannot serve the request it grew for"
        return p

    def _alloc(self, size: int, align: int, gfp: int, caller: Caller) -> int | None:
        ka = self.ka
        if not ka.libc_api.within_heap_max(size, caller, gfp):
            return None
        p = self._place(size, align, gfp, caller)
        if p is None:
            self.failed_grows += 1
            return None
        if gfp & G.ZERO:
            self._fill(p, size, 0)
        elif ka.debug and size:
            self._fill(p, size, POISON_INUSE)
        self._live[p] = (size, caller.site)
        self._freed.pop(p, None)
        if ka.listeners:
            ka.live.notify("alloc", p, size, self.usable(p))
        return p

    def usable(self, p: int) -> int:
        r = self.region_of(p)
        assert r is not None
        return r.usable(p)

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        self.ka.gate.check_size(size, caller)
        if not self.ka.libc_api.request_ok(size, caller, "malloc", _GFP):
            return None
        return self._alloc(size, payload_align(size), _GFP, caller)

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        total = self.ka.libc_api.calloc_total(n, size, caller, _GFP)
        if total is None:
            return None
        return self._alloc(total, payload_align(total), _GFP | G.ZERO, caller)

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        if not self.ka.libc_api.aligned_alloc_ok(align, size, caller, _GFP):
            return None
        return self._alloc(size, max(align, payload_align(size)), _GFP, caller)

    # -- free and realloc -------------------------------------------------------------------------
    def _diagnose(self, addr: int, api: str, caller: Caller) -> Exception:
        if addr in self.ka.live:  # memory of another API (kmalloc, pages ...)
            return self.ka.live.diagnose_free(addr, api, caller)
        old = self._freed.get(addr)
        if old is not None:
            return DoubleFreeError(
                f"{api}() of an object that was already freed",
                addr=addr,
                site=caller.site,
                object={"addr": addr, "size": old[0], "kind": "malloc"},
                alloc_site=old[1],
                free_site=old[2],
            )
        r = self.region_of(addr)
        if r is not None:
            for b, bsize in r.used.items():
                if b + HDR < addr < b + bsize:
                    start = b + HDR
                    size, site = self._live[start]
                    return InvalidFreeError(
                        f"{api}() of a pointer {addr - start} bytes into a live object (not its start)",
                        addr=addr, site=caller.site, offset=addr - start,
                        object={"addr": start, "size": size, "kind": "malloc"}, alloc_site=site)  # fmt: skip
        return self.ka.live.diagnose_free(addr, api, caller)

    def free(self, addr: int, caller: Caller = TASK) -> None:
        if addr == 0:
            return
        rec = self._live.get(addr)
        if rec is None:
            raise self._diagnose(addr, "free", caller)
        self._release(addr, rec, caller)

    def _unplace(self, addr: int) -> FitRegion | None:
        """Give the block of `addr` back; returns what `_after_free` settles afterwards (its region)."""
        region = self.region_of(addr)
        assert region is not None, "a live object lies in no region"
        region.release(addr)
        return region

    def _release(self, addr: int, rec: tuple[int, int], caller: Caller) -> None:
        usable = self.usable(addr)
        del self._live[addr]
        if self.ka.debug and usable:
            self._fill(addr, usable, POISON_FREE)
        region = self._unplace(addr)
        self._freed[addr] = (rec[0], rec[1], caller.site)
        if len(self._freed) > FREED_MEMORY:
            del self._freed[next(iter(self._freed))]
        if self.ka.listeners:
            self.ka.live.notify("free", addr, rec[0], usable)
        if region is not None:
            self._after_free(region)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        ka = self.ka
        ka.gate.check_size(size, caller)
        if addr == 0:
            return self.malloc(size, caller)
        rec = self._live.get(addr)
        if rec is None:
            raise self._diagnose(addr, "realloc", caller)
        libc = ka.libc_api
        if not libc.request_ok(size, caller, "realloc", _GFP) or not libc.within_heap_max(size, caller, _GFP):
            return None
        aligned = payload_align(size) <= payload_align(rec[0]) or addr % payload_align(size) == 0
        if not ka.kasan and aligned and self._resize(addr, size, caller):
            if size > rec[0] and ka.debug:
                self._fill(addr + rec[0], size - rec[0], POISON_INUSE)
            self._live[addr] = (size, rec[1])
            if ka.listeners:
                ka.live.notify("resize", addr, size, self.usable(addr))
            return addr
        new = self._alloc(size, payload_align(size), _GFP, caller)
        if new is None:
            return None
        self._copy(new, addr, min(size, rec[0]))
        self._release(addr, rec, caller)
        return new

    def _resize(self, addr: int, size: int, caller: Caller) -> bool:
        """Resize the live block of `addr` without moving it, when it can (True)."""
        region = self.region_of(addr)
        assert region is not None
        if block_size_for(size) <= region.used[addr - HDR] or region.resize_in_place(addr, size):
            if block_size_for(size) < region.used[addr - HDR]:
                region.resize_in_place(addr, size)  # give the tail back
            self._after_free(region)
            return True
        return False

    def malloc_usable_size(self, addr: int) -> int:
        if addr == 0:
            return 0
        if addr not in self._live:
            raise BadArgumentError(f"malloc_usable_size() of {addr:#x}, which is not a live heap object",
                                   addr=addr)  # fmt: skip
        return self.usable(addr)

    # -- reporting --------------------------------------------------------------------------------
    def live_allocations(self) -> list[Allocation]:
        return [
            Allocation(
                addr=a, size=s, kind="malloc", site=site, not_leak=False, gfp=_GFP, usable=self.usable(a)
            )
            for a, (s, site) in sorted(self._live.items())
        ]

    def _objects_outside_regions(self) -> int:
        """Live objects the heap keeps outside its regions (none here; segfit's slabs and pages)."""
        return 0

    def check(self) -> None:
        n = self._objects_outside_regions()
        prev_end = 0
        for r in self.regions:
            if r.start < prev_end:
                raise InvariantError(f"{self.name} heap regions overlap at {r.start:#x}")
            prev_end = r.end
            why = r.check()
            if why:
                raise InvariantError(f"{self.name} heap region {r.start:#x}: {why}")
            for b in r.used:
                if b + HDR not in self._live:
                    raise InvariantError(f"{self.name} heap: used block {b:#x} has no live object")
            n += len(r.used)
        if n != len(self._live):
            raise InvariantError(f"{self.name} heap: {len(self._live)} live objects, {n} used blocks")

    def stats(self) -> dict[str, int]:
        return {
            "regions": len(self.regions),
            "region_bytes": sum(r.end - r.start for r in self.regions),
            "free_bytes": sum(r.free_bytes() for r in self.regions),
            "largest_free": max((r.largest_free() for r in self.regions), default=0),
            "live_objects": len(self._live),
        }
