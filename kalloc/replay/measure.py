"""One (trace, heap) pair measured as `kalloc replay` does it: figures, page maps, pictures.

    build(banks, heap, sanitize)      a fresh allocator over anonymous memory shaped
                                      like the RAM banks, its Vmalloc and the heap policy
    measure(trace, heap, fresh, ...)  two replays on two fresh builds: a fast pass finds
                                      the step where committed memory peaks, the checked
                                      pass (kalloc.replay.replayer) snapshots
                                      fragmentation and the page map there

`fresh` is any callable that builds the parts: `build` over a board's banks for the
plain replay, or the machine's firmware replay (kalloc_machine.tools.fwreplay) for
`kalloc replay --firmware`; this module never imports the machine.

A bank is (name, base, size, dma), as a board describes its RAM
(kalloc_machine.tools.fwreplay.board_banks).

Invariants:
 1. Both passes replay the same trace on identically built parts, so the peak
    the fast pass found is the peak of the checked pass (replay is deterministic).
 2. The page map at the peak is always taken; `map_at` adds steps, never replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kalloc import Config, Kalloc
from kalloc.heaps import make_heap
from kalloc.physmem import PhysMem, RamBank, anonymous_buffer
from kalloc.replay.pagegrid import Grid, snapshot
from kalloc.replay.pagemap import count_owners
from kalloc.replay.replayer import ReplayResult, find_peak, replay
from kalloc.replay.trace import Trace
from kalloc.vmalloc import Vmalloc

if TYPE_CHECKING:
    from kalloc.heaps.base import Heap

Bank = tuple[str, int, int, bool]  # (name, base, size, dma)
Parts = tuple[Kalloc, "Heap", Vmalloc]  # the allocator, the heap policy over it, its Vmalloc


def trace_tags(trace: Trace) -> dict[int, str]:
    """{object id: its tag} for the tagged objects of a trace (the page grid colours by it)."""
    return {op.id: op.tag for op in trace.ops if op.tag and op.kind != "f"}


def tagged_objects(tags: dict[int, str], replayer: Any) -> list[tuple[int, int, str]]:
    """The replay's live objects as (address, size, tag) for the page grid ([] when the trace has no tags)."""
    return [(a, n, tags.get(i, "untagged")) for i, (a, n) in replayer.live.items()] if tags else []


class Observer(Protocol):
    """What watches the checked pass (kalloc.replay.forecast.Forecast)."""

    def on_step(self, step: int, replayer: Any) -> None: ...
    def result(self) -> dict[str, Any]: ...
    def draw(self, plot_dir: Path, stem: str) -> list[Path]: ...


def build(banks: list[Bank], heap: str, sanitize: str) -> Parts:
    """A fresh allocator over anonymous memory shaped like the banks, the heap policy and its Vmalloc."""
    phys = PhysMem([RamBank(n, base, size, memoryview(anonymous_buffer(size)), dma=dma)
                    for n, base, size, dma in banks])  # fmt: skip
    ka = Kalloc(phys, Config(sanitize=sanitize))
    vm = Vmalloc(ka)
    return ka, make_heap(heap, ka, vm), vm


def measure(trace: Trace, heap: str, fresh: Callable[[], Parts], *, check_every: int = 0,
            map_at: tuple[int, ...] = (), plot_dir: Path | None = None,
            observe: Callable[[Parts], Observer] | None = None
            ) -> tuple[dict[str, Any], list[Path]]:  # fmt: skip
    """Replay `trace` on parts from `fresh()`; returns (its JSON summary with sampled steps, PNGs written).

    heap: the policy's name (for the summary's pictures). check_every: full invariant
    checks every N steps (always at the end). map_at: steps whose page map is drawn
    besides the peak's. plot_dir: where the PNGs go (None: no pictures).
    Raises ReplayError when the heap breaks a rule.
    """
    ka, h, vm = fresh()
    peak = find_peak(trace, ka, h)
    ka, h, vm = fresh()
    want = set(map_at) | {peak}
    maps: dict[int, Grid] = {}
    tags = trace_tags(trace)
    obs = observe((ka, h, vm)) if observe is not None else None

    def hook(step: int, replayer: Any) -> None:
        if step in want:
            maps[step] = snapshot(ka, h, vm, tagged_objects(tags, replayer))
        if obs is not None:
            obs.on_step(step, replayer)

    res = replay(trace, ka, h, check_every=check_every, snapshot_steps={peak}, on_step=hook)
    out = res.summary()
    out["pages_by_owner_at_peak"] = count_owners(maps[peak].pmap) if peak in maps else {}
    out["vmalloc"] = vm.stats()
    out["steps"] = [s.as_dict() for s in res.samples if s.free_blocks is not None]
    if ka.buddy.grouping is not None:  # --antifrag (kalloc.antifrag): additive, only when on
        out["antifrag"] = ka.buddy.grouping.stats()
    written = [] if plot_dir is None else draw(trace, heap, res, maps, peak, plot_dir)
    if obs is not None:
        out["forecast"] = obs.result()
        if plot_dir is not None:
            written += obs.draw(plot_dir, f"{Path(trace.name).stem}-{heap}")
    return out, written


def draw(trace: Trace, heap: str, res: ReplayResult, maps: dict[int, Grid], peak: int,
         plot_dir: Path) -> list[Path]:  # fmt: skip
    """The PNGs of one replay: a page grid per mapped step (by tag when the trace has tags), fragmentation."""
    from kalloc.replay import gridplot, plot

    stem = f"{Path(trace.name).stem}-{heap}"
    written: list[Path] = []
    for step, grid in sorted(maps.items()):
        tag = "peak" if step == peak else f"step{step}"
        written.append(gridplot.picture(grid, plot_dir / f"{stem}-map-{tag}.png",
                                        f"{trace.name}, heap {heap}, after step {step}"
                                        f"{' (peak committed)' if step == peak else ''}",
                                        by="tag" if grid.tags else "owner"))  # fmt: skip
    written.append(plot.fragmentation(res, plot_dir / f"{stem}-fragmentation.png"))
    return written
