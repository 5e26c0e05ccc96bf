"""Probe questions about physical memory: would a contiguous request of this size succeed now?

A probe (`--probe 4MiB,64KiB@dma`) is a size and optionally a zone (`dma`, `normal`;
none: any zone, as an allocation that may fall back). It asks the buddy free lists
for one free block of order ceil(log2(pages)) in one of its zones — the question a
page-level allocation of that size asks, without watermarks (it reads the free lists;
it allocates nothing).

    parse_probes(text, max_order)       "4MiB,64KiB@dma" -> [Probe]
    fragmentation_index(blocks, order)  Linux's extfrag index (mm/vmstat.c
                                        __fragmentation_index), in thousandths:
                                        -1000 a request of that order would succeed;
                                        0 no free blocks at all; otherwise towards 0 the
                                        request fails for lack of memory, towards 1000
                                        for external fragmentation
    check(probe, ka)                    (ok, covered): a suitable block exists; some zone
                                        of the probe has that many free pages
    blockers(probe, ka, pmap, live)     at a failure although memory was free: the aligned
                                        window of the probe's size with the fewest pages in
                                        use, and what holds those pages

Invariants:
 1. Probes only read allocator state.
 2. `fragmentation_index` is the kernel's integer arithmetic, bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.replay.pagemap import OWNERS
from kalloc.zone import ZONE_NAMES

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.zone import Zone

_SIZE = re.compile(r"^([0-9]{1,12})\s*([KMG]i?B?|B)?$", re.ASCII | re.IGNORECASE)
_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_ZONES = {name.lower(): i for i, name in enumerate(ZONE_NAMES)}


class ProbeError(ValueError):
    """A --probe list that does not parse."""


@dataclass(frozen=True, slots=True)
class Probe:
    text: str  # as the user wrote it ("64KiB@dma")
    size: int
    zone: int | None  # a zone index, None: any zone
    order: int

    @property
    def pages(self) -> int:
        return 1 << self.order


def parse_size(text: str) -> int:
    """Bytes of "4MiB", "64KiB", "4096", "1M" (binary units)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ProbeError(f"{text!r} is not a size such as 4MiB, 64KiB or 4096")
    return int(m.group(1)) * (_UNITS[m.group(2)[0].upper()] if m.group(2) else 1)


def parse_probes(text: str, max_order: int) -> list[Probe]:
    """A comma-separated probe list; ProbeError names the first bad item."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        size_text, _, zone_text = item.partition("@")
        size = parse_size(size_text)
        zone = None
        if zone_text:
            zone = _ZONES.get(zone_text.strip().lower())
            if zone is None:
                raise ProbeError(f"{item!r}: unknown zone {zone_text!r} ({', '.join(_ZONES)})")
        if size <= 0:
            raise ProbeError(f"{item!r}: a probe needs a size above 0")
        pages = -(-size // PAGE_SIZE)
        order = (pages - 1).bit_length()
        if order > max_order:
            top = PAGE_SIZE << max_order
            raise ProbeError(f"{item!r}: larger than the buddy's largest block ({top} bytes)")
        out.append(Probe(item, size, zone, order))
    if not out:
        raise ProbeError("--probe needs at least one size")
    return out


def fragmentation_index(blocks: list[int], order: int) -> int:
    """Linux's __fragmentation_index(order) over one zone's free block counts, in thousandths."""
    requested = 1 << order
    total = sum(blocks)
    free_pages = sum(n << o for o, n in enumerate(blocks))
    suitable = sum(n << (o - order) for o, n in enumerate(blocks) if o >= order)
    if not total:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // requested) // total


def zones_of(probe: Probe, ka: Kalloc) -> list[Zone]:
    return [z for z in ka.buddy.populated_zones if probe.zone is None or z.idx == probe.zone]


def check(probe: Probe, ka: Kalloc) -> tuple[bool, bool]:
    """(a suitable free block exists, some zone of the probe has at least that many free pages)."""
    zones = zones_of(probe, ka)
    ok = any(z.largest_free_order() >= probe.order for z in zones)
    covered = any(z.nr_free >= probe.pages for z in zones)
    return ok, covered


def _best_window(probe: Probe, ka: Kalloc, pmap: list[tuple[str, int, bytearray]]) -> tuple[int, int] | None:
    """(start pfn, pages in use) of the aligned probe-sized window with the fewest pages in use."""
    free, reserved = OWNERS.index("free"), OWNERS.index("reserved")
    want = {z.idx for z in zones_of(probe, ka)}
    best: tuple[int, int] | None = None
    n = probe.pages
    for sec in ka.buddy.sections:
        if sec.zone_idx not in want:
            continue
        codes = next((c for _nm, base, c in pmap if base == sec.start_pfn), None)
        if codes is None:
            continue
        first = -(-sec.start_pfn // n) * n
        for start in range(first, sec.end_pfn - n + 1, n):
            win = codes[start - sec.start_pfn : start - sec.start_pfn + n]
            if reserved in win:
                continue  # boot reservations never move: no freeing would open this window
            used = n - win.count(free)
            if best is None or used < best[1]:
                best = (start, used)
    return best


def _owner(pmap: list[tuple[str, int, bytearray]], pfn: int) -> str:
    for _name, base, codes in pmap:
        if base <= pfn < base + len(codes):
            return OWNERS[codes[pfn - base]]
    return "pages"


def blockers(probe: Probe, ka: Kalloc, pmap: list[tuple[str, int, bytearray]],
             objects: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """What pins the best window: its page owners and the live objects inside it.

    objects: the live objects of the replay, each a dict with at least "addr" and "size"
    (the replay adds id, step, api, tag, phase); those overlapping the window are listed.
    """
    win = _best_window(probe, ka, pmap)
    if win is None:
        return {"window": None, "blocks": [], "objects": [], "reason": "every window holds reserved pages"}
    start, used = win
    end = start + probe.pages
    blocks = []
    for pfn in sorted(p for p in ka.buddy.blocks if start <= p < end or p < start < p + ka.buddy.blocks[p]):
        npages = ka.buddy.blocks[pfn]
        blocks.append({"addr": pfn << PAGE_SHIFT, "pages": npages, "owner": _owner(pmap, pfn)})
    lo, hi = start << PAGE_SHIFT, end << PAGE_SHIFT
    inside = [o for o in objects if o["addr"] < hi and o["addr"] + max(1, o["size"]) > lo]
    inside.sort(key=lambda o: (o["addr"], o.get("id", 0)))
    by_site: dict[str, int] = {}
    by_tag: dict[str, int] = {}
    for o in inside:
        site = o.get("api") or "malloc"
        by_site[site] = by_site.get(site, 0) + 1
        tag = o.get("tag") or "untagged"
        by_tag[tag] = by_tag.get(tag, 0) + 1
    return {
        "window": {"addr": lo, "bytes": hi - lo, "pages_in_use": used},
        "blocks": blocks,
        "objects": inside[:50],
        "objects_total": len(inside),
        "objects_by_site": dict(sorted(by_site.items())),
        "objects_by_tag": dict(sorted(by_tag.items())),
    }
