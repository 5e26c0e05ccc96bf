"""Long-session forecast: what a replay does to physical memory step by step, and where it breaks.

`Forecast` watches the checked pass of a replay (kalloc.replay.measure, `observe=`)
and after every step records committed memory, each zone's free pages and the
largest block it could still hand out, and answers the probes
(kalloc.replay.probe): the first step at which each probe would fail although a
zone of the probe had enough free pages — the fragmentation cliff — with what
pinned the best window there (pages, objects, their sites and tags, the phase) and
the page map at that step (drawn by `--plot`); and the first step at which it
fails for lack of memory. The fragmentation index per order (Linux's extfrag) is
sampled, about 500 samples a session, and kept at the cliff.

`result()` is the JSON of `"forecast"` in a replay's summary (docs/abi.md).

Invariants:
 1. Watching changes nothing: the forecast only reads allocator and replay state.
 2. Same replay, same forecast (no time, no randomness).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.replay.measure import tagged_objects, trace_tags
from kalloc.replay.pagegrid import Grid, snapshot
from kalloc.replay.probe import Probe, blockers, check, fragmentation_index
from kalloc.replay.session import Phase
from kalloc.replay.trace import FREE, Trace

if TYPE_CHECKING:
    from kalloc.allocator import Kalloc
    from kalloc.heaps.base import Heap
    from kalloc.replay.replayer import Replayer
    from kalloc.vmalloc import Vmalloc

def zone_figures(ka: Kalloc, *, orders: bool) -> dict[str, dict[str, Any]]:
    """Per populated zone: free bytes, largest free block, and (orders) the extfrag index per order."""
    out = {}
    for z in ka.buddy.populated_zones:
        top = z.largest_free_order()
        d: dict[str, Any] = {"free_bytes": z.nr_free * PAGE_SIZE,
                             "largest_free_block": PAGE_SIZE << top if top >= 0 else 0}  # fmt: skip
        if orders:
            blocks = z.nr_free_blocks()
            d["fragmentation_index"] = [round(fragmentation_index(blocks, o) / 1000, 3)
                                        for o in range(len(blocks))]  # fmt: skip
        out[z.name] = d
    return out


class _ProbeState:
    __slots__ = ("at_cliff", "cliff", "failed_steps", "oom", "probe", "recovered")

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.cliff: int | None = None  # first failure although a zone had the pages
        self.oom: int | None = None  # first failure for lack of free pages
        self.failed_steps = 0
        self.recovered: int | None = None  # first success after the cliff
        self.at_cliff: dict[str, Any] = {}


class Forecast:
    """Observes one replay (on_step after every step); `result()` is the forecast's JSON."""

    def __init__(self, ka: Kalloc, heap: Heap, vm: Vmalloc | None, trace: Trace, phases: list[Phase],
                 probes: list[Probe], *, loop: int | None = None,
                 session: str | None = None, frames: bool = False) -> None:  # fmt: skip
        self.ka, self.heap, self.vm, self.trace, self.phases = ka, heap, vm, trace, phases
        self.probes = [_ProbeState(p) for p in probes]
        self.loop, self.session = loop, session
        self.every = max(1, len(trace.ops) // 500)
        self.samples: list[dict[str, Any]] = []
        self.worst: dict[str, dict[str, int]] = {}
        self.born: dict[int, int] = {}  # object id -> step of its allocation
        self.maps: dict[str, tuple[int, Grid]] = {}  # probe text -> (cliff step, page grid)
        self.starts = [ph.step for ph in phases]
        # --plot: page grids at about 24 evenly spaced steps and at each cliff (the session's frames)
        self.frame_every = max(1, len(trace.ops) // 24) if frames else 0
        self.frames: list[tuple[int, str, Grid]] = []
        self.tags = trace_tags(trace) if frames else {}

    def phase_at(self, step: int) -> Phase | None:
        i = bisect.bisect_right(self.starts, step) - 1
        return self.phases[i] if i >= 0 else None

    def on_step(self, step: int, rp: Replayer) -> None:
        op = self.trace.ops[step]
        if op.kind != FREE and op.id in rp.live and op.id not in self.born:
            self.born[op.id] = step
        last = step == len(self.trace.ops) - 1
        sampled = step % self.every == 0 or last
        zones = zone_figures(self.ka, orders=sampled)
        for name, z in zones.items():
            w = self.worst.setdefault(name, {"largest_free_block": z["largest_free_block"], "step": step})
            if z["largest_free_block"] < w["largest_free_block"]:
                w["largest_free_block"], w["step"] = z["largest_free_block"], step
        if self.frame_every and (step % self.frame_every == 0 or last):
            self.frames.append((step, self._label(step), self._grid(rp)))
        if sampled:
            self.samples.append({"step": step, "committed_bytes": rp.committed, "payload_bytes": rp.payload,
                                 "zones": zones})  # fmt: skip
        for ps in self.probes:
            self._probe(ps, step, rp)

    def _probe(self, ps: _ProbeState, step: int, rp: Replayer) -> None:
        ok, covered = check(ps.probe, self.ka)
        if ok:
            if ps.cliff is not None and ps.recovered is None:
                ps.recovered = step
            return
        ps.failed_steps += 1
        if not covered:
            if ps.oom is None:
                ps.oom = step
            return
        if ps.cliff is None:
            ps.cliff = step
            ps.at_cliff = self._explain(ps.probe, step, rp)

    def _grid(self, rp: Replayer) -> Grid:
        return snapshot(self.ka, self.heap, self.vm, tagged_objects(self.tags, rp))

    def _label(self, step: int) -> str:
        ph = self.phase_at(step)
        return f"step {step}" + (f" ({ph.name}, round {ph.round})" if ph else "")

    def _explain(self, probe: Probe, step: int, rp: Replayer) -> dict[str, Any]:
        grid = self._grid(rp)
        pmap = grid.pmap
        self.maps[probe.text] = (step, grid)
        if self.frame_every:
            self.frames.append((step, f"{self._label(step)}: {probe.text} fails", grid))
        ph = self.phase_at(step)
        objects = []
        for ident, (addr, size) in rp.live.items():
            born = self.born.get(ident, -1)
            op = self.trace.ops[born] if born >= 0 else None
            bph = self.phase_at(born) if born >= 0 else None
            objects.append({"id": ident, "addr": addr, "size": size, "step": born,
                            "api": op.api if op else "", "tag": op.tag if op else "",
                            "phase": bph.name if bph else "", "round": bph.round if bph else 0})  # fmt: skip
        d = {"step": step, "phase": ph.as_dict() if ph else None, "committed_bytes": rp.committed,
             "zones": zone_figures(self.ka, orders=True)}  # fmt: skip
        d.update(blockers(probe, self.ka, pmap, objects))
        return d

    def result(self) -> dict[str, Any]:
        probes = []
        for ps in self.probes:
            p = ps.probe
            probes.append({
                "probe": p.text, "size": p.size, "order": p.order,
                "zone": None if p.zone is None else self._zone_name(p.zone),
                "cliff_step": ps.cliff, "out_of_memory_step": ps.oom, "failed_steps": ps.failed_steps,
                "recovered_step": ps.recovered, "at_cliff": ps.at_cliff or None,
            })  # fmt: skip
        return {
            "loop": self.loop,
            "session": self.session,
            "steps": len(self.trace.ops),
            "phases": [ph.as_dict() for ph in self.phases[:1000]],
            "samples": self.samples,
            "worst": self.worst,
            "probes": probes,
        }

    def _zone_name(self, idx: int) -> str:
        return self.ka.buddy.zones[idx].name

    def draw(self, plot_dir: Path, stem: str) -> list[Path]:
        """The forecast's pictures: the timeline, the page grid at each cliff, the session's frames."""
        from kalloc.replay import forecastplot, gridplot

        title = f"{self.trace.name}: forecast over {len(self.trace.ops)} steps"
        written = [forecastplot.timeline(self.result(), plot_dir / f"{stem}-forecast.png", title)]
        for i, ps in enumerate(self.probes):
            got = self.maps.get(ps.probe.text)
            if got is None:
                continue
            step, grid = got
            win = ps.at_cliff.get("window") or {}
            where = f", best window {win['addr']:#x} has {win['pages_in_use']} pages in use" if win else ""
            box = (win["addr"] >> PAGE_SHIFT, win["bytes"] >> PAGE_SHIFT) if win else None
            written.append(forecastplot.cliff_map(grid, plot_dir / f"{stem}-cliff{i + 1}.png",
                                                  f"{self.trace.name}: {ps.probe.text} fails at step {step} "
                                                  f"although memory is free{where} (red)", box))  # fmt: skip
        if self.frames:
            frames = [(label, g) for _s, label, g in sorted(self.frames, key=lambda f: f[0])]
            by = "tag" if any(g.tags for _l, g in frames) else "owner"
            title = f"{self.trace.name}: memory over the session"
            written += gridplot.session(frames, plot_dir / stem, title, by)
        return written


def forecast_lines(results: list[dict[str, Any]]) -> list[str]:
    """The text report of the forecasts among `kalloc replay` results: worst moments and probe answers."""
    lines = []
    for r in results:
        fc = r.get("forecast")
        if not fc:
            continue
        head = f"forecast {r['trace']} on {r['heap']}: {fc['steps']} steps"
        worst = ", ".join(f"{z} {w['largest_free_block']:,} B at step {w['step']}"
                          for z, w in fc["worst"].items())  # fmt: skip
        lines.append(f"{head}; smallest largest-free-block: {worst}")
        for p in fc["probes"]:
            lines.append("  " + _probe_line(p))
    return lines


def _probe_line(p: dict[str, Any]) -> str:
    where = f"probe {p['probe']} ({p['size']:,} B, order {p['order']}"
    where += f", zone {p['zone']})" if p["zone"] else ")"
    if p["cliff_step"] is None:
        oom = p["out_of_memory_step"]
        tail = f"; out of memory from step {oom}" if oom is not None else ""
        return f"{where}: never fails while memory is free{tail}"
    at = p["at_cliff"]
    phase = at.get("phase")
    ph = f" (phase {phase['name']!r}, round {phase['round']})" if phase else ""
    text = f"{where}: fragmentation cliff at step {p['cliff_step']}{ph}"
    win = at.get("window")
    if win:
        sites = ", ".join(f"{k} x{v}" for k, v in at["objects_by_site"].items())
        tags = ", ".join(f"{k} x{v}" for k, v in at["objects_by_tag"].items())
        pages = win["bytes"] // PAGE_SIZE
        text += f"; best window {win['addr']:#x} has {win['pages_in_use']} of {pages} pages in use,"
        text += f" pinned by {at['objects_total']} objects (sites: {sites or '-'}; tags: {tags or '-'})"
    return text


def tag_lines(results: list[dict[str, Any]]) -> list[str]:
    """The text of the per-tag tables among `kalloc replay` results (kalloc.replay.budgets.tag_table)."""
    lines = []
    for r in results:
        for t in r.get("tags") or ():
            line = f"tag {t['tag']} ({r['trace']} on {r['heap']}): high water {t['high_water_bytes']:,} B"
            line += f" at step {t['high_water_step']}, live at the end {t['live_bytes']:,} B"
            if t["budget_bytes"] is not None:
                line += f"; budget {t['budget_bytes']:,} B, headroom {t['headroom_bytes']:,} B"
                if t["over_budget"]:
                    line += f"; over budget first at step {t['over_budget'][0]['step']}"
            lines.append(line)
    return lines
