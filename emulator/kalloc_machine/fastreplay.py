"""The fast path's ring replayed record by record with the magazine layer's hit work inline
(issue 14, fifth session): the same state, record for record, as FastPath.replay's calls of
`Magazines.hit_alloc` / `hit_free`, without two Python calls and their lookups per record.

`replay_inline(fp, head, start)` applies records start.. in order and returns how many it
applied; it stops BEFORE a record it does not take (anything the mirror contradicts: a frame
count, a class, a free of an object not live for that api and class, a push on a full
magazine, an allocation that is not the top of its magazine, a gfp the blob never writes),
and the caller's per-record path replays from there, which files the exact report. It takes
no record at all (returns `start`) while slab listeners are registered (each record is one
of their events). So both paths end in the same state and a report is the same bytes
(tests/machine/test_fastreplay.py, tests/machine/test_fastpath_proof.py).

What the hit functions do that is inline here, per record (kalloc.percpu): an allocation
marks its slot live with its site and a new live record (and forgets a freed page-level
record at its address); a free deletes the live record (and its kmemleak / ksize marks),
writes the slot's free site, freed size and kind and marks it OBJ_PERCPU; the caches'
allocation and free totals are added up once per drain.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any

from kalloc.kinds import KIND_KMALLOC, KIND_MALLOC
from kalloc.live import LiveRecord, new_record
from kalloc.percpu import SERVED_MAX
from kalloc.slab import OBJ_LIVE, OBJ_PERCPU, Slab

_FRAMES = [struct.Struct(f"<{n}I").unpack_from for n in range(17)]  # by n, 1..16
assert (KIND_KMALLOC, KIND_MALLOC) == (0, 1)  # a record's api bit is the kind


def watched(live: Any) -> bool:
    """Whether the live table has listeners that want slab objects (each record is an event)."""
    return bool(live.listeners and live.slab_listeners())


def intern(sites: dict[bytes, int], key: bytes, stack: tuple[int, ...], handles: dict[tuple[int, ...], int],
           save: Any) -> int:  # fmt: skip
    """The replay's `handles.get(stack) or save(stack)`, remembered by the frames' raw bytes
    (a stack the depot refused, handle 0, is not: its every save counts in `dropped`)."""
    site: int = handles.get(stack) or save(stack)
    if site:
        sites[key] = site
    return site


def valid_w0(mags: Any) -> frozenset[int]:
    """Every first word the blob writes (fastpath.S), its frame count (the top byte) aside: an
    allocation of size 1..SERVED_MAX in its class, a free of a class the magazines serve, either
    api. Another (bits the blob leaves zero, a class past the table, a size out of its class) is
    the per-record path's to judge. (The frame count is not in the set: a set of every count,
    ~66k words that share their low bits, measured slower per lookup; `_loop` checks it.)"""
    sizes = range(1, SERVED_MAX + 1)
    allocs = {size << 8 | mags.class_of[size] << 4 | api << 1 for size in sizes for api in (0, 1)}
    return frozenset(allocs | {ci << 4 | api << 1 | 1 for ci in range(len(mags.mags)) for api in (0, 1)})


def replay_inline(fp: Any, head: int, start: int, ring: int, record: int,
                  gfp_malloc: int, bad_gfp: int) -> int:  # fmt: skip
    """Apply records start..head-1 in order; the index of the first one not applied."""
    mags = fp.mags
    if watched(mags.live):
        return start
    raw = bytes(fp.buf[ring + record * start : ring + record * head])  # record k - start at record * k
    done = start
    try:
        done = start + _loop(fp, raw, head - start, record, gfp_malloc, bad_gfp)
        return done
    finally:  # the caches' totals of the records applied (Counter: one C loop over their first bytes)
        caches = mags.caches
        for op, count in Counter(raw[0 : record * (done - start) : record]).items():
            if op & 1:
                caches[op >> 4].total_frees += count
            else:
                caches[op >> 4].total_allocs += count


def _loop(fp: Any, raw: bytes, count: int, record: int, gfp_malloc: int,
          bad_gfp: int) -> int:  # fmt: skip  # long: the hot loop, inline
    """The first `count` records of `raw` applied in order; how many were."""
    mags = fp.mags
    records, page_owner, live = mags.records, mags.page_owner, mags.live
    freed, not_leak, ksized = live.freed, live.not_leak, live.ksized
    marks = bool(not_leak or ksized)  # (neither changes during a drain)
    lists, limit, caches, valid = mags.mags, mags.limit, mags.caches, fp.valid_w0
    handles, save = fp.depot.handles, fp.depot.save
    frames, new, live_rec = _FRAMES, new_record, LiveRecord
    words = memoryview(raw).cast("I")  # the fields of every record: four strided slices
    step = record // 4
    end = step * count
    fields = zip(range(16, 16 + record * count, record), words[0:end:step].tolist(),
                 words[1:end:step].tolist(), words[2:end:step].tolist(), raw[3 : record * count : record],
                 strict=True)  # fmt: skip  # (the last: w0's top byte, its frames, without a shift)
    sites = fp.sites
    for at, w0, addr, gfp, n in fields:  # at: the record's frames in raw
        lo = w0 & 0xFFFFFF
        if lo not in valid:
            return (at - 16) // record
        # n, its frames, is checked only where the key is new: a known key is 4 * (1..16) bytes long,
        # and the 4 * n bytes from a record's frames are more than 64 for any other n but 0 (b"")
        ci = lo >> 4 & 15
        mag = lists[ci]
        slab = page_owner.get(addr >> 12)
        if w0 & 1:
            rec = records.get(addr)
            if (rec is None or rec[1] != (w0 >> 1 & 1) or not isinstance(slab, Slab)
                    or slab.cache is not caches[ci] or len(mag) >= limit):  # fmt: skip
                return (at - 16) // record
            key = raw[at : at + 4 * n]
            site = sites.get(key)
            if site is None:
                if not 0 < n <= 16:
                    return (at - 16) // record
                site = intern(sites, key, frames[n](key, 0), handles, save)
            j = (addr - slab.base) // slab.cache.stride
            del records[addr]
            if marks:
                not_leak.discard(addr)
                ksized.discard(addr)
            slab.free_site[j] = site
            slab.freed_size[j] = rec[0]
            slab.freed_kind[j] = rec[1]
            slab.obj[j] = OBJ_PERCPU
            mag.append(addr)
        else:
            if not (mag and mag[-1] == addr and (w0 & 2 or not gfp & bad_gfp)):  # (malloc: w2 stale)
                return (at - 16) // record
            key = raw[at : at + 4 * n]
            site = sites.get(key)
            if site is None:
                if not 0 < n <= 16:
                    return (at - 16) // record
                site = intern(sites, key, frames[n](key, 0), handles, save)
            mag.pop()
            j = (addr - slab.base) // slab.cache.stride  # type: ignore[union-attr]  # a magazine's object
            slab.obj[j] = OBJ_LIVE  # type: ignore[union-attr]
            slab.alloc_site[j] = site  # type: ignore[union-attr]
            if freed:
                freed.pop(addr, None)
            size = lo >> 8
            records[addr] = new(live_rec, (size, 1, site, gfp_malloc) if w0 & 2 else (size, 0, site, gfp))
    return count
