"""The cheap checks the alloc and free paths make inline (SLUB debug), and the reports they file.

kalloc.debug draws the bytes (red zones 0xcc, poison 0x6b..0xa5, fresh 0x5a);
this module compares them where SLUB does, on the paths themselves:

    check_redzones(cache, slab, idx, off, rec)   at a slab free: left red zone, then the
                                                 tail and right red zone (check_object())
    report_poison(cache, slab, idx)              at a slab alloc: a free object's poison
                                                 changed (a write after free)
    check_padding(slab)                          the bytes after the last slot (slab_pad_check())
    check_slab(slab)                             at slab discard (a shrink, kmem_cache_destroy)
                                                 and in the end-of-run walk: every slot's red
                                                 zones and free poison, then the padding
    check_large_tail(addr, rec)                  at a large heap object's free: the red zone
                                                 after it, to the end of its last page
The full walk over every object (check_poison()) lives apart, in kalloc.check; it runs
check_slab() on every slab.

Invariants:
 1. Every check repairs the damage it reports, so the next check reports only new damage.
 2. A check only appends to `reports` (OutOfBoundsError, UseAfterFreeError); it never raises.
 3. A byte whose bad write KASAN reported at the access (mark_reported) is reported by no
    check: the bug is reported once, where it happened. Bytes no access report covered
    still are (damage KASAN could not see: uninstrumented code, a device).
"""

from __future__ import annotations

from kalloc.config import TASK, Caller
from kalloc.debug import RED_ACTIVE, find_damage
from kalloc.errors import KallocError, OutOfBoundsError, UseAfterFreeError
from kalloc.kinds import cache_kind_name
from kalloc.live import LiveRecord, LiveTable
from kalloc.misuse import freed_slot_object, object_phrase
from kalloc.page import PAGE_SIZE, pages_for
from kalloc.physmem import PhysMem
from kalloc.slab import OBJ_LIVE, OBJ_UNUSED, KmemCache, Slab

SEEN_MAX_GRANULES = 1 << 16  # 512 KiB of bad writes remembered; past it a later check reports them again


class ReportedWrites:
    """Bytes whose bad write was already reported at the access (KASAN): the checks skip them.

    {granule (addr >> 3): bit mask of its bytes}. KASAN reports a write into a red zone or a
    freed object as it happens; the red-zone and poison checks at free, at a slab's discard
    and at exit would find the same bytes changed and report the bug a second time. They
    call restore() first: the marked bytes in their range get the expected pattern back
    and their marks are dropped, so only damage KASAN did not see is reported.
    """

    def __init__(self, phys: PhysMem) -> None:
        self.phys = phys
        self.seen: dict[int, int] = {}

    def mark(self, addr: int, size: int) -> None:
        """The write of [addr, addr + size) was reported at the access."""
        seen, end = self.seen, addr + size
        while addr < end:
            g = addr >> 3
            lo, hi = addr & 7, min(8, end - (g << 3))
            if g not in seen and len(seen) >= SEEN_MAX_GRANULES:
                return
            seen[g] = seen.get(g, 0) | (((1 << hi) - 1) & ~((1 << lo) - 1))
            addr = (g + 1) << 3

    def forget(self, addr: int, n: int) -> None:
        """Drop the marks of [addr, addr + n): the memory was laid out anew (a new slab)."""
        seen = self.seen
        for g in range(addr >> 3, (addr + n + 7) >> 3):
            seen.pop(g, None)

    def restore(self, addr: int, want: bytes | memoryview) -> None:
        """Write want's bytes back where [addr, addr + len(want)) holds marked bytes; unmark them."""
        seen, end = self.seen, addr + len(want)
        view = None
        for g in range(addr >> 3, ((end - 1) >> 3) + 1):
            m = seen.get(g)
            if not m:
                continue
            for b in range(8):
                a = (g << 3) + b
                if m >> b & 1 and addr <= a < end:
                    if view is None:
                        view = self.phys.view(addr, len(want))
                    view[a - addr] = want[a - addr]
                    m &= ~(1 << b)
            if m:
                seen[g] = m
            else:
                del seen[g]


class Sanitizer:
    """The inline checks of one allocator (module docstring).

    Public attributes: reported (ReportedWrites): bytes KASAN reported at the access,
    which the checks leave out.
    """

    def __init__(self, phys: PhysMem, live: LiveTable, reports: list[KallocError]) -> None:
        self.phys = phys
        self.live = live
        self.reports = reports
        self.reported = ReportedWrites(phys)
        self.seen = self.reported.seen  # non-empty only after a KASAN write report (one test per check)
        self.ksized = live.ksized

    def mark_reported(self, addr: int, size: int) -> None:
        """A bad write of [addr, addr + size) was reported at the access: the checks skip it."""
        self.reported.mark(addr, size)

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
        guard = cache.size if slab.base + off in self.ksized else rec[0]  # rec.size
        end = slot + cache.stride
        if self.seen:
            self.reported.restore(slab.base + slot, cache.pat_rz[:left])
            self.reported.restore(slab.base + off + guard, cache.pat_rz[: end - off - guard])
        # bytes.startswith(view): one memcmp against the pattern, no copy (a memoryview compared
        # with == goes byte by byte); the pattern is all red zone and at least as long as the view
        rz = cache.pat_rz_bytes
        if not rz.startswith(mv[slot:off]):
            damage = find_damage(mv[slot:off].tobytes(), rz[:left], -left)
            self.report_oob(slab.base + off, rec, damage, caller, "red zone before the object")
            mv[slot:off] = cache.pat_rz[:left]
        if not rz.startswith(mv[off + guard : end]):
            damage = find_damage(mv[off + guard : end].tobytes(), rz[: end - off - guard], guard)
            self.report_oob(slab.base + off, rec, damage, caller, "red zone after the object")
            mv[off + guard : end] = cache.pat_rz[: end - off - guard]

    def report_poison(self, cache: KmemCache, slab: Slab, idx: int, caller: Caller) -> None:
        """A free object's poison changed: something wrote to it after it was freed."""
        off = idx * cache.stride + cache.left
        addr = slab.base + off
        if self.seen:
            self.reported.restore(addr, cache.pat_free)
        got = slab.mv[off : off + cache.size].tobytes()
        damage = find_damage(got, cache.pat_free, 0)
        if damage is None:  # every changed byte was a write KASAN reported at the access
            return
        obj = freed_slot_object(slab, idx, addr)
        self.reports.append(
            UseAfterFreeError(
                f"write to a freed object: {damage['count']} byte(s) of poison changed at offset"
                f" {damage['offset']} of a freed {object_phrase(obj)}",
                addr=addr + damage["offset"],
                site=caller.site,
                object=obj,
                alloc_site=slab.alloc_site[idx],
                free_site=slab.free_site[idx],
                **damage,
            )
        )

    def check_slab(self, slab: Slab, caller: Caller = TASK) -> None:
        """Every slot of a slab: live objects' red zones, free objects' poison and red zones,
        then the padding; the end-of-run walk (kalloc.check) and a slab's discard use it.

        Run before a slab's pages go back (a shrink, kmem_cache_destroy()), it keeps a write
        into a freed object from vanishing with the slab, as SLUB's free_slab() checks every
        object of a debug cache.
        """
        cache = slab.cache
        if not slab.inuse and cache.poison and slab.mv.tobytes() == cache.template:
            return  # an empty slab as it was laid out: every slot poisoned, every red zone intact
        for idx in range(slab.nobjs):
            state = slab.obj[idx]
            off = idx * cache.stride + cache.left
            if state == OBJ_LIVE:
                self.check_redzones(cache, slab, idx, off, self.live[slab.base + off], caller)
                continue
            if cache.poison and slab.mv[off : off + cache.size].tobytes() != cache.pat_free:
                self.report_poison(cache, slab, idx, caller)
                slab.mv[off : off + cache.size] = cache.pat_free
            if cache.redzone:
                self._check_free_slot_redzones(slab, idx, off, caller)
        self.check_padding(slab)

    def _check_free_slot_redzones(self, slab: Slab, idx: int, off: int, caller: Caller) -> None:
        cache = slab.cache
        mv, left = slab.mv, cache.left
        slot = off - left
        addr = slab.base + off
        if slab.obj[idx] == OBJ_UNUSED:
            obj, state = {"addr": addr, "size": cache.size, "kind": cache_kind_name(cache)}, "never-used"
        else:
            obj, state = freed_slot_object(slab, idx, addr), "freed"
        for lo, hi, base, where in (
            (slot, off, -left, "red zone before a free object"),
            (off + cache.size, slot + cache.stride, cache.size, "red zone after a free object"),
        ):
            want = cache.pat_rz[: hi - lo].tobytes()
            if self.seen:
                self.reported.restore(slab.base + lo, want)
            got = mv[lo:hi].tobytes()
            damage = find_damage(got, want, base)
            if damage:
                fields: dict = {"object": obj, "alloc_site": slab.alloc_site[idx]}
                if state == "freed":
                    fields["free_site"] = slab.free_site[idx]
                self.reports.append(
                    OutOfBoundsError(
                        f"{where} overwritten: {damage['count']} byte(s) changed at offset {damage['offset']}"
                        f" of a {state} {object_phrase(obj)}",
                        addr=addr + damage["offset"],
                        site=caller.site,
                        **fields,
                        **damage,
                    )
                )
                mv[lo:hi] = want

    def check_padding(self, slab: Slab) -> KallocError | None:
        """slab_pad_check(): the bytes after the last slot must still read 0x5a."""
        cache = slab.cache
        start = slab.nobjs * cache.stride
        if self.seen and cache.pat_pad:
            self.reported.restore(slab.base + start, cache.pat_pad)
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
        want = bytes([RED_ACTIVE]) * (end - size)
        if self.seen:
            self.reported.restore(addr + size, want)
        got = self.phys.read(addr + size, end - size)
        damage = find_damage(got, want, size)
        if damage:
            self.report_oob(addr, rec, damage, caller, "red zone after the object")
            self.phys.write(addr + size, want)
