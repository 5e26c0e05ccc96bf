"""The cheap checks the alloc and free paths make inline (SLUB debug), and the reports they file.

kalloc.debug draws the bytes (red zones 0xcc, poison 0x6b..0xa5, fresh 0x5a);
this module compares them where SLUB does, on the paths themselves:

    check_redzones(cache, slab, idx, off, rec)   at a slab free: left red zone, then the
                                                 tail and right red zone (check_object())
    report_poison(cache, slab, idx)              at a slab alloc: a free object's poison
                                                 changed (a write after free)
    check_padding(slab)                          at slab discard: the bytes after the last
                                                 slot (slab_pad_check())
    check_large_tail(addr, rec)                  at a large heap object's free: the red zone
                                                 after it, to the end of its last page
The full walk over every object (check_poison()) lives apart, in kalloc.check.

Invariants:
 1. Every check repairs the damage it reports, so the next check reports only new damage.
 2. A check only appends to `reports` (OutOfBoundsError, UseAfterFreeError); it never raises.
"""

from __future__ import annotations

from kalloc.config import TASK, Caller
from kalloc.debug import RED_ACTIVE, find_damage
from kalloc.errors import KallocError, OutOfBoundsError, UseAfterFreeError
from kalloc.kinds import cache_kind_name
from kalloc.live import LiveRecord, LiveTable
from kalloc.page import PAGE_SIZE, pages_for
from kalloc.physmem import PhysMem
from kalloc.slab import KmemCache, Slab


class Sanitizer:
    """The inline checks of one allocator (module docstring)."""

    def __init__(self, phys: PhysMem, live: LiveTable, reports: list[KallocError]) -> None:
        self.phys = phys
        self.live = live
        self.reports = reports

    def report_oob(self, addr: int, rec: LiveRecord, damage: dict | None, caller: Caller, where: str) -> None:
        assert damage is not None
        self.reports.append(
            OutOfBoundsError(
                f"{where} overwritten: {damage['count']} byte(s) changed at offset {damage['offset']}"
                f" of a {rec.size}-byte object",
                addr=addr + damage["offset"],
                site=caller.site,
                object=self.live.object_dict(addr, rec),
                alloc_site=rec.site,
                **damage,
            )
        )

    def check_redzones(
        self, cache: KmemCache, slab: Slab, idx: int, off: int, rec: LiveRecord, caller: Caller
    ) -> None:
        """check_object() at free: left red zone, then tail + right red zone (repaired after a report)."""
        if not cache.redzone:
            return
        mv = slab.mv
        left = cache.left
        slot = off - left
        got = mv[slot:off].tobytes()
        if got != cache.pat_rz[:left]:
            damage = find_damage(got, cache.pat_rz[:left].tobytes(), -left)
            self.report_oob(slab.base + off, rec, damage, caller, "red zone before the object")
            mv[slot:off] = cache.pat_rz[:left]
        guard = cache.size if slab.base + off in self.live.ksized else rec.size
        end = slot + cache.stride
        got = mv[off + guard : end].tobytes()
        if got != cache.pat_rz[: end - off - guard]:
            damage = find_damage(got, cache.pat_rz[: end - off - guard].tobytes(), guard)
            self.report_oob(slab.base + off, rec, damage, caller, "red zone after the object")
            mv[off + guard : end] = cache.pat_rz[: end - off - guard]

    def report_poison(self, cache: KmemCache, slab: Slab, idx: int, caller: Caller) -> None:
        """A free object's poison changed: something wrote to it after it was freed."""
        off = idx * cache.stride + cache.left
        got = slab.mv[off : off + cache.size].tobytes()
        damage = find_damage(got, cache.pat_free, 0)
        assert damage is not None
        addr = slab.base + off
        self.reports.append(
            UseAfterFreeError(
                f"write to a freed object: {damage['count']} byte(s) of poison changed at offset"
                f" {damage['offset']} of a freed {cache.size}-byte {cache.name} object",
                addr=addr + damage["offset"],
                site=caller.site,
                object={"addr": addr, "size": cache.size, "kind": cache_kind_name(cache)},
                alloc_site=slab.alloc_site[idx],
                free_site=slab.free_site[idx],
                **damage,
            )
        )

    def check_padding(self, slab: Slab) -> KallocError | None:
        """slab_pad_check(): the bytes after the last slot must still read 0x5a."""
        cache = slab.cache
        start = slab.nobjs * cache.stride
        got = slab.mv[start:].tobytes()
        if got == cache.pat_pad:
            return None
        damage = find_damage(got, cache.pat_pad, 0)
        assert damage is not None
        err = OutOfBoundsError(
            f"slab padding overwritten: {damage['count']} byte(s) after the last {cache.name} object",
            addr=slab.base + start + damage["offset"],
            object={"addr": slab.base + start, "size": len(got), "kind": f"slab-padding:{cache.name}"},
            **damage,
        )
        self.reports.append(err)
        slab.mv[start:] = cache.pat_pad
        return err

    def check_large_tail(self, addr: int, rec: LiveRecord, caller: Caller = TASK) -> None:
        """The red zone after a page-level heap object, to the end of its last page."""
        size = rec.size
        end = pages_for(size) * PAGE_SIZE
        got = self.phys.read(addr + size, end - size)
        want = bytes([RED_ACTIVE]) * len(got)
        damage = find_damage(got, want, size)
        if damage:
            self.report_oob(addr, rec, damage, caller, "red zone after the object")
            self.phys.write(addr + size, want)
