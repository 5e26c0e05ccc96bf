"""Pictures of a replay: fragmentation over time (PNG, matplotlib); the page grid is kalloc.replay.gridplot.

matplotlib is an optional extra (`pip install 'kalloc[plot]'`); without it
`require()` raises PlotUnavailable with that instruction, and nothing else of
kalloc needs it.

    fragmentation(result, path)       over the steps: payload and committed bytes,
                                      largest free block, free pages per order
                                      (stacked) and the unusable free space index

Invariants:
 1. Pictures only read their data (a ReplayResult): drawing changes no
    allocator state, and the same data draws the same picture.
 2. matplotlib is imported only inside these functions, with the Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalloc.stats import unusable_index

if TYPE_CHECKING:
    from kalloc.replay.replayer import ReplayResult

INSTALL_HINT = "pip install 'kalloc[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend, or PlotUnavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib: {INSTALL_HINT}") from None
    return plt


def order_colours(orders: int) -> list[tuple[float, float, float, float]]:
    """`orders` distinct colours, low orders dark, high orders light (viridis, evenly spaced)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(o / max(orders - 1, 1)) for o in range(orders)]


def fragmentation(result: ReplayResult, path: str | Path) -> Path:
    """Write the fragmentation-over-time figure for a replay; returns its path."""
    plt = require()
    steps = [s.step for s in result.samples]
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    a1.plot(steps, [s.payload / 1024 for s in result.samples], label="live payload")
    a1.plot(steps, [s.committed / 1024 for s in result.samples], label="committed")
    a1.plot(steps, [s.largest_free / 1024 for s in result.samples], label="largest free block", alpha=0.7)
    a1.set_ylabel("KiB")
    a1.legend(fontsize=7)
    a1.set_title(f"{result.trace} on heap {result.heap}: utilization {result.utilization:.1%}"
                 f" (peak payload / peak committed), {len(result.failed)} failed", fontsize=9)  # fmt: skip
    sampled = [s for s in result.samples if s.free_blocks is not None]
    xs = [s.step for s in sampled]
    if sampled:
        orders = len(sampled[0].free_blocks or [])
        stacks = [[(s.free_blocks or [])[o] << o for s in sampled] for o in range(orders)]
        colours = order_colours(orders)  # one colour per order (the default cycle repeats after 10)
        a2.stackplot(xs, stacks, labels=[f"order {o}" for o in range(orders)], colors=colours)
        a2.legend(fontsize=6, ncol=6, loc="upper right")
        for o in (0, 3, 6, 9):
            if o < orders:
                a3.plot(xs, [unusable_index(s.free_blocks or [])[o] / 1000 for s in sampled],
                        label=f"order {o}", color=colours[o])  # fmt: skip
        a3.legend(fontsize=7)
    a2.set_ylabel("free pages by block order")
    a3.set_ylabel("unusable free space index")
    a3.set_xlabel("step")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
