"""`kalloc run --plot FILE`: memory by tag over the run, and the page grid near the peak and at the end.

A `RunPlot` makes the tag tracker (report/tags.py) listen from boot — without showing the
per-tag table in the report unless the firmware pushes a tag or budgets are set — and is
told of every change it counts (`TagTracker.on_change`: an allocation, a free, a resize, a
vmalloc area). It keeps:

    points   (change, committed bytes, {tag: live requested bytes}) after the changes (numbered
             from boot: allocations, frees, resizes, vmalloc areas); at most
             2,000: when full, every other point goes and the stride doubles (so a long run
             costs a bounded memory, and the first and the latest events are kept)
    peak     the page grid (kalloc.replay.pagegrid) when committed memory last grew past its
             previous snapshot by 1/256 of the managed memory (at most ~256 snapshots for each
             climb to a new peak, whatever the run's length): the grid "near the peak", with
             its change number and bytes
    end      the page grid when the run ended

`draw(path, title)` writes one PNG: the live bytes by tag stacked over the events with the
committed bytes as a line, and the two page grids, coloured by tag when the firmware
tagged anything (else by owner).

Invariants:
 1. Watching changes nothing the firmware or the allocator sees; the JSON report is the
    same with and without --plot.
 2. Same run, same picture (events are ordered by the run, not by time).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalloc.page import PAGE_SHIFT
from kalloc.replay.pagegrid import Grid, snapshot

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc.heaps.base import Heap
    from kalloc.vmalloc import Vmalloc
    from kalloc_machine.report.tags import TagTracker

MAX_POINTS = 2000


class RunPlot:
    """Samples of memory by tag and page grids of one run (module docstring)."""

    def __init__(self, ka: Kalloc, heap: Heap, vm: Vmalloc, tracker: TagTracker) -> None:
        self.ka, self.heap, self.vm, self.tracker = ka, heap, vm, tracker
        self.points: list[tuple[int, int, dict[str, int]]] = []
        self.stride = 1
        self.step = max(1, ka.buddy.managed_pages // 256) << PAGE_SHIFT
        self.n = 0  # changes counted from boot (the tracker's own count restarts at the first push)
        self.next_snap = 0
        self.peak: tuple[int, int, Grid] | None = None
        tracker.start(used=False)
        tracker.on_change = self.sample

    def _grid(self) -> Grid:
        objects = [(a, n, tag) for a, (tag, n) in self.tracker.objects.items()]
        return snapshot(self.ka, self.heap, self.vm, objects)

    def sample(self) -> None:
        self.n += 1
        committed = self.ka.buddy.used_pages << PAGE_SHIFT
        if committed >= self.next_snap:
            self.peak = (self.n, committed, self._grid())
            self.next_snap = committed + self.step
        if self.n % self.stride:
            return
        self.points.append((self.n, committed, {t: s.live_bytes for t, s in self.tracker.stats.items()}))
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
            self.stride *= 2

    def draw(self, path: str | Path, title: str) -> Path:
        """The PNG (module docstring); matplotlib must be there (kalloc.replay.plot.require)."""
        from kalloc.replay import gridplot
        from kalloc.replay.plot import require

        plt = require()
        end = self._grid()
        tagged = any(t != "untagged" for t in self.tracker.stats)
        by = "tag" if tagged else "owner"
        tags = gridplot.tag_colours(list(self.tracker.stats)) if tagged else None
        fig = plt.figure(figsize=(10, 9))
        top = fig.add_subplot(2, 1, 1)
        self._stack(top, tags)
        grids = [("end of the run", end)]
        if self.peak is not None:
            ev, committed, g = self.peak
            grids.insert(0, (f"near the peak: after change {ev}, {committed:,} bytes committed", g))
        width = gridplot.width_for(gridplot.union([gridplot.window(g, 128) for _l, g in grids]))
        win = gridplot.union([gridplot.window(g, width) for _l, g in grids])
        for i, (label, g) in enumerate(grids):
            ax = fig.add_subplot(2, len(grids), len(grids) + 1 + i)
            gridplot.draw(ax, g, win, width, by, tags, labels=False)
            ax.set_title(label, fontsize=8)
        handles = gridplot.legend(by, end, tags)
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
        fig.suptitle(f"{title}\n{gridplot.KEY}", fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 0.95))
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def _stack(self, ax: Any, tags: dict[str, str] | None) -> None:
        xs = [p[0] for p in self.points]
        names = sorted({t for p in self.points for t in p[2]}, key=lambda t: (t == "untagged", t))
        colours = [(tags or {}).get(t, "#9a9a9a") for t in names]
        if xs and names:
            ax.stackplot(xs, [[p[2].get(t, 0) / 1024 for p in self.points] for t in names], labels=names,
                         colors=colours)  # fmt: skip
        ax.plot(xs, [p[1] / 1024 for p in self.points], color="black", linewidth=1, label="committed pages")
        ax.set_xlabel("allocation, free or resize (counted from boot)")
        ax.set_ylabel("KiB")
        ax.set_title("live requested bytes by tag (stacked) and committed memory", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
