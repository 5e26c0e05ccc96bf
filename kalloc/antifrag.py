"""Anti-fragmentation: pageblocks grouped by mobility or by tag, the way Linux groups migratetypes.

Off by default (`--antifrag off`: the buddy allocator takes the most recently freed
block of the smallest order, as it always did). Turned on, physical memory is cut
into pageblocks of 2^pageblock_order pages, each with a type, and every page-level
request has a type; `Grouping.choose` is what the buddy allocator asks instead of
popping a free list (kalloc.buddy.Buddy.alloc), following mm/page_alloc.c:

    __rmqueue_smallest   the smallest free block lying in a pageblock of the request's
                         type (most recently freed first)
    __rmqueue_fallback   none: a free block in a pageblock of the other type. The request
                         steals it (can_steal_fallback: the block is at least half a
                         pageblock, or the request is unmovable) and claims the
                         pageblock (its type becomes the request's) when free plus
                         alike pages are at least half of it (steal_suitable_fallback);
                         a block of a pageblock or more, or an unclaimed pageblock, is
                         claimed outright. A movable request takes the SMALLEST foreign
                         block (find_smallest), so it does not break up big blocks.
                         Where kalloc differs: Linux takes the LARGEST foreign block for
                         an unmovable request (it approximates the pageblock with the
                         most free pages) and claims every pageblock a big block spans.
                         On a board's tens of pageblocks that puts each new unmovable
                         pageblock at the head of the largest aligned free block, exactly
                         where a large request would go: measured on the shipped traces
                         (docs/performance.md) it moved the 256 KiB cliff EARLIER
                         (ffmpeg x5 on 1 MiB: step 2150 -> 876). kalloc takes the foreign
                         block nearest to the unmovable pageblocks already claimed (the
                         first: the highest whole free pageblock), so they stay together,
                         and claims only the pageblock the request lands in.

Modes:
    mobility     two types. kalloc moves no page (no compaction, no migration), so
                 "mobility" is what a block holds: a request of at least a page gets
                 pages of its own, freed with the object (MOVABLE, Linux's user
                 pages); a block for a smaller request is carved into many objects
                 (slab pages, heap regions) and lives until the last goes
                 (UNMOVABLE). Linux's RECLAIMABLE is not modelled: kalloc has no
                 reclaimable caches (its shrinker frees empty slabs only). Pageblocks
                 start MOVABLE, as Linux boots them.
    tag-arenas   one type per allocation tag (kalloc_tag_push; a trace's `@tag`,
                 "untagged" for none): each tag's pages come from its own pageblocks.
                 Every pageblock starts unclaimed; a tag with no free block of its own
                 takes the SMALLEST block of an unclaimed pageblock, else of another
                 tag's (an arena grows without breaking big blocks up), and claims
                 that pageblock by the same half-free rule.

The free path is untouched: buddies merge whatever their pageblocks' types (Linux
merges across migratetypes too); a free block is of the type of its first pageblock.

Invariants:
 1. Grouping only chooses WHICH free block serves a request; the free lists, the
    counts and every buddy invariant are the buddy allocator's (kalloc.buddy).
 2. With no Grouping installed (`off`) nothing here runs.
 3. Deterministic: the same requests in the same order choose the same blocks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kalloc.page import PAGE_SIZE, PG_BUDDY, PG_HEAD

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.buddy import Buddy
    from kalloc.zone import Zone

MODES = ("off", "mobility", "tag-arenas")
UNMOVABLE, MOVABLE = 0, 1
UNCLAIMED = -1  # tag-arenas: a pageblock no tag has claimed yet
PAGEBLOCK_ORDER = 4  # 64 KiB pageblocks: Linux has 2 MiB (order 9) in gigabytes; a board has megabytes


class Grouping:
    """Pageblock types and the choice of a free block for a typed request (module docstring)."""

    def __init__(self, buddy: Buddy, mode: str, pageblock_order: int = PAGEBLOCK_ORDER) -> None:
        if mode not in MODES[1:]:
            raise ValueError(f"unknown anti-fragmentation mode {mode!r} ({', '.join(MODES)})")
        self.buddy = buddy
        self.mode = mode
        self.max_order = buddy.max_order
        self.pb_order = min(pageblock_order, buddy.max_order)
        self.default = MOVABLE if mode == "mobility" else UNCLAIMED
        self.types: dict[int, int] = {}  # pageblock index (pfn >> pb_order) -> type; absent: default
        self.names: list[str] = ["unmovable", "movable"] if mode == "mobility" else []
        self.want = self.default  # the type of the request being served (set by classify)
        self.current_tag = ""  # the replay sets it before each step (kalloc.replay.replayer)
        self.tag: Callable[[], str] = lambda: self.current_tag  # tag-arenas: the request's tag
        self.block_type: dict[int, int] = {}  # allocated block head -> the type it was allocated as
        self.fallbacks = 0  # requests served from another type's pageblock
        self.claimed = 0  # pageblocks whose type a request changed

    # -- the request's type -------------------------------------------------------------------------
    def classify(self, size: int) -> None:
        """Set the type of the request being served (kalloc.pages.PagePipeline.alloc_block)."""
        if self.mode == "mobility":
            self.want = MOVABLE if size >= PAGE_SIZE else UNMOVABLE
            return
        name = self.tag() or "untagged"
        if name not in self.names:
            self.names.append(name)
        self.want = self.names.index(name)

    def type_of(self, pfn: int) -> int:
        return self.types.get(pfn >> self.pb_order, self.default)

    def type_name(self, t: int) -> str:
        return "unclaimed" if t == UNCLAIMED else self.names[t]

    # -- choosing a block ---------------------------------------------------------------------------
    def choose(self, zone: Zone, order: int) -> tuple[int, int] | None:
        """(order, head pfn) of the free block that serves a request of `order` (module docstring)."""
        fa, want, top = zone.free_area, self.want, self.max_order
        for o in range(order, top + 1):  # __rmqueue_smallest
            for pfn in reversed(fa[o]):
                if self.type_of(pfn) == want:
                    return o, pfn
        if self.mode == "tag-arenas":  # an arena grows by the smallest block: big ones stay whole
            got = self._smallest(fa, order, lambda t: t == UNCLAIMED) or self._smallest(fa, order,
                                                                                     lambda t: t != want)
            if got is not None:
                self.fallbacks += 1
                self._steal(got[1], got[0], want)
            return got
        return self._fallback(fa, order, want)

    def _fallback(self, fa: list[dict[int, None]], order: int, want: int) -> tuple[int, int] | None:
        """__rmqueue_fallback, choosing the block by place (module docstring): steal and maybe claim."""
        cands = [(o, p) for o in range(order, self.max_order + 1) for p in fa[o] if self.type_of(p) != want]
        if not cands:
            return None
        if want == UNMOVABLE:
            mine = sorted(pb for pb, t in self.types.items() if t == want)
            if mine:  # next to the unmovable pageblocks already there; then the smaller block
                o, pfn = min(cands, key=lambda c: (self._distance(c[1] >> self.pb_order, mine), c[0], -c[1]))
            else:  # the first: the highest whole free pageblock (claimed outright), else the highest block
                o, pfn = min(cands, key=lambda c: (c[0] < self.pb_order, -c[1]))
        else:  # find_smallest: a movable request keeps off the big blocks of the other type
            o, pfn = min(cands)
        self.fallbacks += 1
        if o >= self.pb_order // 2 or want != MOVABLE:  # can_steal_fallback
            self._steal(pfn, o, want)
        return o, pfn

    @staticmethod
    def _distance(pb: int, mine: list[int]) -> int:
        """Pageblocks between `pb` and the nearest of the sorted `mine`."""
        i = bisect.bisect_left(mine, pb)
        return min(abs(pb - mine[j]) for j in (i - 1, i) if 0 <= j < len(mine))

    def taken(self, pfn: int) -> None:
        """The block at `pfn` was allocated for the request being served."""
        self.block_type[pfn] = self.want

    def _smallest(self, fa: list[dict[int, None]], order: int,
                  fits: Callable[[int], bool]) -> tuple[int, int] | None:  # fmt: skip
        """The smallest free block of order >= `order` in a pageblock whose type fits (latest freed first)."""
        for o in range(order, self.max_order + 1):
            for pfn in reversed(fa[o]):
                if fits(self.type_of(pfn)):
                    return o, pfn
        return None

    def _steal(self, pfn: int, order: int, want: int) -> None:
        """steal_suitable_fallback(): claim the pageblock when free + alike pages are at least half."""
        pb = pfn >> self.pb_order
        old = self.types.get(pb, self.default)
        # The request lands in the block's first pageblock: a block of a pageblock or more, or an
        # unclaimed pageblock, is claimed outright (Linux claims every pageblock a block spans; with
        # a board's few pageblocks that would hand most of memory to the first request).
        if order >= self.pb_order or old == UNCLAIMED:
            self.types[pb] = want
            self.claimed += 1
            return
        free, alike = self.pages_in(pb, None), self.pages_in(pb, want)
        if free + alike >= 1 << (self.pb_order - 1):
            self.types[pb] = want
            self.claimed += 1

    def pages_in(self, index: int, want: int | None) -> int:
        """Free pages (want None), or pages of allocated blocks of type `want`, in pageblock `index`."""
        buddy = self.buddy
        lo = index << self.pb_order
        sec = buddy.section_of(lo)
        if sec is None:
            return 0
        start, end, base = max(lo, sec.start_pfn), min(lo + (1 << self.pb_order), sec.end_pfn), sec.start_pfn
        n, i = 0, start
        while i < end:
            st = sec.state[i - base]
            if st == PG_BUDDY:
                size = 1 << sec.order[i - base]
                counts = want is None
            elif st == PG_HEAD:
                size = buddy.blocks.get(i, 1)
                counts = want is not None and self.block_type.get(i) == want
            else:  # reserved, or the tail of a block that began before this pageblock
                size, counts = 1, False
            if counts:
                n += min(size, end - i)
            i += size
        return n

    def stats(self) -> dict[str, Any]:
        """The JSON of `antifrag` in a report (docs/abi.md): mode, pageblock size, types, fallbacks."""
        per: dict[str, int] = {}
        pb = self.pb_order
        for sec in self.buddy.sections:
            for index in range(sec.start_pfn >> pb, ((sec.end_pfn - 1) >> pb) + 1):
                name = self.type_name(self.types.get(index, self.default))
                per[name] = per.get(name, 0) + 1
        return {"mode": self.mode, "pageblock_bytes": PAGE_SIZE << self.pb_order,
                "pageblocks_by_type": dict(sorted(per.items())), "fallbacks": self.fallbacks,
                "pageblocks_claimed": self.claimed}  # fmt: skip


def install(ka: Kalloc, mode: str, *, tag: Callable[[], str] | None = None,
            pageblock_order: int = PAGEBLOCK_ORDER) -> Grouping | None:  # fmt: skip
    """Turn grouping on for `ka` (mode "off": nothing, None). tag: the tag of the request being served."""
    if mode == "off":
        return None
    g = Grouping(ka.buddy, mode, pageblock_order)
    if tag is not None:
        g.tag = tag
    ka.buddy.grouping = g
    return g
