"""Pictures of a long-session forecast (PNG, matplotlib, optional like kalloc.replay.plot).

    timeline(result, path, title)   committed memory and each zone's largest free block over
                                    the steps, each probe's size as a dashed line, its cliff
                                    marked, phase starts as faint verticals
    cliff_map(grid, path, title)    the page grid at a probe's cliff (kalloc.replay.gridplot), by tag
                                    when the trace has tags

Invariants:
 1. Drawing only reads the forecast's JSON and page maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kalloc.replay.pagegrid import Grid
from kalloc.replay.plot import require


def timeline(fc: dict[str, Any], path: Path, title: str) -> Path:
    plt = require()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    samples = fc["samples"]
    xs = [s["step"] for s in samples]
    a1.plot(xs, [s["committed_bytes"] / 1024 for s in samples], label="committed", color="#1f77b4")
    a1.plot(xs, [s["payload_bytes"] / 1024 for s in samples], label="payload", color="#2ca02c")
    a1.set_ylabel("KiB")
    a1.legend(fontsize=7, loc="upper left")
    zones = list(samples[0]["zones"]) if samples else []
    for z in zones:
        a2.step(xs, [s["zones"][z]["largest_free_block"] / 1024 for s in samples], where="post",
                label=f"largest free block, {z}")  # fmt: skip
    for p in fc["probes"]:
        line = a2.axhline(p["size"] / 1024, linestyle="--", linewidth=0.8)
        if p["cliff_step"] is not None:
            a2.axvline(p["cliff_step"], color=line.get_color(), linewidth=1.2)
            a2.annotate(f"cliff: {p['probe']} at step {p['cliff_step']}", (p["cliff_step"], p["size"] / 1024),
                        fontsize=7, color=line.get_color())  # fmt: skip
    for ph in fc["phases"][:200]:
        a1.axvline(ph["step"], color="#cccccc", linewidth=0.4)
    a2.set_yscale("log", base=2)
    a2.set_ylabel("KiB (log2)")
    a2.set_xlabel("step")
    a2.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cliff_map(grid: Grid, path: Path, title: str, window: tuple[int, int] | None = None) -> Path:
    """The page grid at a cliff, the best window (start pfn, pages) outlined in red."""
    from kalloc.replay.gridplot import picture

    return picture(grid, path, title, by="tag" if grid.tags else "owner", highlight=window)


def tags_stacked(steps: list[int], series: dict[str, list[int]], path: Path, title: str) -> Path:
    """Live requested bytes by tag over the steps, stacked (kalloc.replay.budgets.tag_series)."""
    plt = require()
    fig, ax = plt.subplots(figsize=(10, 4))
    names = sorted(series, key=lambda t: (t == "untagged", t))
    ax.stackplot(steps, [[v / 1024 for v in series[t]] for t in names], labels=names)
    ax.set_ylabel("live KiB")
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
