"""Allocation tags and budgets (issue 18): who holds memory, per subsystem, against its budget.

Firmware tags what it allocates with `kalloc_tag_push("audio")` / `kalloc_tag_pop()`
(hypercalls TAG_PUSH / TAG_POP, bridge/services/tags.py). Tags nest, and each context
has its own stack: task context, and each interrupt nesting depth, so a handler's
allocations carry the handler's tag (or none), never the task's it interrupted. A slab
cache or DMA pool created while a tag is pushed keeps that tag: its objects carry it
when their context pushed none. A vmalloc area is one object of its requested size under
the tag of the context that created it (the services wrap VMALLOC / VFREE: its pages'
allocator events are not counted again), and vfree() takes it from that tag, whichever
context frees it.

A `TagTracker` listens to the allocator (`ka.listeners`: every allocation, free and
resize of a live object, whatever the API) from the first TAG_PUSH, or from boot when
budgets are set; what is live when it starts counts as "untagged" (whose high water
starts there), as does any allocation made with no tag pushed in its context.
Per tag it keeps live bytes and objects, the high water and when (the allocator event,
the machine time at the start of its slice, the last `kalloc_mark` id), and checks the
budgets (`--budgets FILE`) on every allocation: the allocation that takes a tag from
within its budget to over it is an `over-budget` report (a warning; an error with
`--budgets-strict`) naming the tag, the allocation's size and site, the tag's live and
high-water bytes and the budget.

    load_budgets(path, ram_bytes)   a budgets file (TOML; kalloc.replay.budgets): `audio =
                                    "2MiB"`, `textures = 6291456`, `net = 0.125` (of RAM)
    section()                       the report's `tags` key ({} when no tag was pushed
                                    and no budget set: old reports keep their bytes)

Invariants:
 1. Every live byte is counted under exactly one tag ("untagged" included): the tags'
    live bytes add up to the live objects' requested bytes.
 2. Watching changes nothing the firmware or the allocator sees; only over-budget
    reports are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kalloc.errors import KallocError, OverBudgetError
from kalloc.page import PAGE_SHIFT
from kalloc.replay.budgets import BudgetError, load_budgets

__all__ = ["BudgetError", "TagTracker", "load_budgets", "render_tags"]  # the budget file parser is kalloc's

if TYPE_CHECKING:
    from rich.console import Console

    from kalloc import Kalloc

UNTAGGED = "untagged"
MAX_DEPTH_TAGS = 64  # tags one context may have pushed: more is a push without pops (a bug)


@dataclass(slots=True)
class TagStats:
    live_bytes: int = 0
    live_objects: int = 0
    high_water_bytes: int = 0
    high_water: dict[str, Any] = field(default_factory=dict)
    allocations: int = 0


class TagTracker:
    """Tag stacks per context, live bytes per tag, budgets (module docstring)."""

    def __init__(self, ka: Kalloc, *, depth: Callable[[], int], clock: Callable[[], int],
                 report: Callable[[KallocError], None]) -> None:  # fmt: skip
        self.ka, self.depth, self.clock, self.report = ka, depth, clock, report
        self.stacks: dict[int, list[str]] = {}
        self.objects: dict[int, tuple[str, int]] = {}  # live address -> (tag, size)
        self.stats: dict[str, TagStats] = {}
        self.budgets: dict[str, int] = {}
        self.strict = False
        self.budgets_file: str | None = None
        self.used = False  # a tag was pushed or budgets were set: the report shows the table
        self.events = 0
        self.mark: int | None = None  # the last kalloc_mark id (phase)
        self.creation_tags: dict[tuple[str, int], str] = {}  # ("cache"|"pool", handle) -> tag at creation
        self.listening = False  # listens from the first push (or --budgets): no cost for runs without tags
        self.areas: dict[int, int] = {}  # live vmalloc areas (from boot): virtual address -> requested size
        self.quiet = False  # inside VMALLOC/VFREE: the area is one object, not its pages' events
        self.on_change: Callable[[], None] | None = None  # after every counted change (report/runplot.py)

    # -- the firmware's side ------------------------------------------------------------------------
    def current(self) -> str:
        """The tag an allocation made now carries."""
        d = self.depth()
        for stale in [k for k in self.stacks if k > d]:  # handlers deeper than now have returned
            del self.stacks[stale]
        st = self.stacks.get(d)
        return st[-1] if st else UNTAGGED

    def tag_for(self, addr: int) -> str:
        """The tag of an object allocated now at addr: the context's, else its cache's or pool's."""
        tag = self.current()
        if tag != UNTAGGED or not self.creation_tags:
            return tag
        owner = self.ka.page_owner.get(addr >> PAGE_SHIFT)
        cache, pool = getattr(owner, "cache", None), getattr(owner, "pool", None)
        if cache is not None:
            return self.creation_tags.get(("cache", cache.handle), UNTAGGED)
        return self.creation_tags.get(("pool", pool.handle), UNTAGGED) if pool is not None else UNTAGGED

    def created(self, kind: str, handle: int) -> None:
        """A slab cache or DMA pool was created: its objects carry the context's tag when theirs has none."""
        tag = self.current()
        if handle and tag != UNTAGGED:
            self.creation_tags[(kind, handle)] = tag

    def push(self, depth: int, name: str) -> int:
        self.start(used=True)
        self.current()  # drops the stacks of handlers that returned
        st = self.stacks.setdefault(depth, [])
        if len(st) >= MAX_DEPTH_TAGS:
            raise ValueError(f"more than {MAX_DEPTH_TAGS} tags pushed in one context (pushes without pops?)")
        st.append(name)
        return len(st)

    def pop(self, depth: int) -> int:
        st = self.stacks.get(depth)
        if not st:
            raise ValueError("no tag pushed in this context")
        st.pop()
        return len(st)

    def set_budgets(self, budgets: dict[str, int], strict: bool, name: str | None) -> None:
        self.budgets, self.strict, self.budgets_file = dict(budgets), strict, name
        self.start(used=True)

    # -- listening ------------------------------------------------------------------------------------
    def start(self, *, used: bool) -> None:
        """Listen from now on (measured: the listener costs ~40% of a bare kmalloc+kfree in Python, so
        a run that never tags does not pay it); what is live already counts as untagged. used: the
        report shows the table (a push, budgets; not `kalloc run --plot` alone)."""
        if used and not self.used and self.listening:  # listening for --plot only until now:
            self._rebase()  # the table starts here, as if listening had (the JSON is the same)
        self.used = self.used or used
        if self.listening:
            return
        self.listening = True
        for addr, rec in self.ka.live.items():
            self._add(addr, UNTAGGED, rec.size, check=False)
        for addr, size in self.areas.items():
            self._add(addr, UNTAGGED, size, check=False)
        self.ka.listeners.append(self._listen)

    def _rebase(self) -> None:
        """Count from now: what is live is untagged (no tag was pushed before), events from 0."""
        live = [(addr, size) for addr, (_tag, size) in self.objects.items()]
        self.objects.clear()
        self.stats.clear()
        self.events = 0
        for addr, size in live:
            self._add(addr, UNTAGGED, size, check=False)

    def area_mapped(self, addr: int, size: int, site: int) -> None:
        """vmalloc() mapped an area: one object of its requested size, under its context's tag."""
        self.areas[addr] = size
        if self.listening:
            self.events += 1
            self._add(addr, self.current(), size, check=True, site=site)

    def area_unmapped(self, addr: int) -> None:
        """vfree() of an area: it leaves the tag it was created under, whatever the context now."""
        if self.areas.pop(addr, None) is not None and self.listening:
            self.events += 1
            self._drop(addr)

    def _drop(self, addr: int) -> None:
        got = self.objects.pop(addr, None)
        if got is not None:
            s = self.stats[got[0]]
            s.live_bytes -= got[1]
            s.live_objects -= 1
            if self.on_change is not None:
                self.on_change()

    def _listen(self, event: str, addr: int, size: int, usable: int) -> None:
        if self.quiet:  # the pages of a vmalloc area (area_mapped / area_unmapped count the area)
            return
        self.events += 1
        if event == "alloc":
            self._add(addr, self.tag_for(addr), size, check=True)
        elif event == "free":
            self._drop(addr)
        elif event == "resize":
            got = self.objects.pop(addr, None)
            tag = got[0] if got else self.current()
            prior = self.stats[tag].live_bytes if tag in self.stats else 0
            if got is not None:
                self.stats[tag].live_bytes -= got[1]
                self.stats[tag].live_objects -= 1
            self._add(addr, tag, size, check=True, before=prior)

    def _add(self, addr: int, tag: str, size: int, *, check: bool, before: int | None = None,
             site: int | None = None) -> None:  # fmt: skip
        s = self.stats.get(tag)
        if s is None:
            s = self.stats[tag] = TagStats()
        if before is None:
            before = s.live_bytes  # the tag's live bytes before the request (a resize: with its old size)
        self.objects[addr] = (tag, size)
        s.live_bytes += size
        s.live_objects += 1
        s.allocations += 1
        if s.live_bytes > s.high_water_bytes:
            s.high_water_bytes = s.live_bytes
            s.high_water = {"event": self.events, "slice_start_instructions": self.clock(), "mark": self.mark}
        budget = self.budgets.get(tag)
        if check and budget is not None and before <= budget < s.live_bytes:
            self._over(addr, tag, size, s, budget, site)
        if self.on_change is not None:
            self.on_change()

    def _over(self, addr: int, tag: str, size: int, s: TagStats, budget: int, site: int | None) -> None:
        rec = self.ka.live.get(addr)
        self.report(OverBudgetError(
            f"tag {tag!r} is over its budget: {s.live_bytes} bytes live after this allocation of {size}"
            f" bytes, budget {budget}", addr=addr, site=rec.site if rec else site,
            severity="error" if self.strict else "warning", tag=tag, size=size, live_bytes=s.live_bytes,
            high_water_bytes=s.high_water_bytes, budget_bytes=budget))  # fmt: skip

    # -- the report -----------------------------------------------------------------------------------
    def section(self) -> dict[str, Any]:
        """The report's {"tags": ...} (docs/abi.md), or {} when tags were never used."""
        if not self.used:
            return {}
        names = sorted(set(self.stats) | set(self.budgets), key=lambda t: (t == UNTAGGED, t))
        rows = []
        for tag in names:
            s = self.stats.get(tag, TagStats())
            budget = self.budgets.get(tag)
            rows.append({"tag": tag, "live_bytes": s.live_bytes, "live_objects": s.live_objects,
                         "allocations": s.allocations, "high_water_bytes": s.high_water_bytes,
                         "high_water": s.high_water or None, "budget_bytes": budget,
                         "headroom_bytes": None if budget is None else budget - s.high_water_bytes,
                         })  # fmt: skip
        return {"tags": {"budgets_file": self.budgets_file, "strict": self.strict, "table": rows}}


def render_tags(report: dict[str, Any], out: Console) -> None:
    """The text report's per-tag table (only when the run used tags or budgets)."""
    from rich.table import Table
    from rich.text import Text

    sec = report.get("tags")
    if not sec:
        return
    t = Table(title="memory by tag (live at the end, high water, budget)", title_justify="left")
    for col in ("tag", "live", "objects", "high water", "at event", "mark", "budget", "headroom"):
        t.add_column(col, justify="left" if col == "tag" else "right")
    for r in sec["table"]:
        hw = r["high_water"] or {}
        budget, headroom = r["budget_bytes"], r["headroom_bytes"]
        t.add_row(r["tag"], f"{r['live_bytes']:,}", str(r["live_objects"]), f"{r['high_water_bytes']:,}",
                  str(hw.get("event", "-")), "-" if hw.get("mark") is None else str(hw["mark"]),
                  "-" if budget is None else f"{budget:,}",
                  "-" if headroom is None else Text(f"{headroom:,}", style="red" if headroom < 0 else ""),
                  )  # fmt: skip
    out.print(t)
