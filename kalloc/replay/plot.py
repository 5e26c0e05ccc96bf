"""Pictures of a replay: the physical memory map and fragmentation over time (PNG, matplotlib).

matplotlib is an optional extra (`pip install 'kalloc[plot]'`); without it
`require()` raises PlotUnavailable with that instruction, and nothing else of
kalloc needs it.

    memory_map(pmap, path, title)     one cell per page, coloured by owner
                                      (kalloc.replay.pagemap.OWNERS), one block per RAM bank
    fragmentation(result, path)       over the steps: payload and committed bytes,
                                      largest free block, free pages per order
                                      (stacked) and the unusable free space index

Invariants:
 1. Pictures only read their data (a page map, a ReplayResult): drawing changes no
    allocator state, and the same data draws the same picture.
 2. matplotlib is imported only inside these functions, with the Agg backend (no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalloc.replay.pagemap import COLOURS, OWNERS, count_owners
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


def memory_map(pmap: list[tuple[str, int, bytearray]], path: str | Path, title: str,
               highlight: tuple[int, int] | None = None) -> Path:  # fmt: skip
    """Write the page-ownership map as a PNG; returns its path. highlight: (pfn, pages) outlined in red."""
    plt = require()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    width = 128  # pages per row: one row is 512 KiB
    fig_rows = sum(math.ceil(len(c) / width) for _n, _b, c in pmap)
    fig, axes = plt.subplots(
        len(pmap), 1, figsize=(10, 1.2 + 0.06 * fig_rows + 0.5 * len(pmap)), squeeze=False
    )
    cmap = ListedColormap(COLOURS)
    for ax, (name, base, codes) in zip(axes[:, 0], pmap, strict=True):
        rows = math.ceil(len(codes) / width)
        grid = [[-1] * width for _ in range(rows)]
        for i, c in enumerate(codes):
            grid[i // width][i % width] = c
        import numpy as np

        arr = np.ma.masked_less(np.array(grid), 0)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=len(OWNERS) - 1, aspect="auto", interpolation="nearest")
        ax.set_title(f"bank {name}: {len(codes)} pages from {base << 12:#x}", fontsize=8, loc="left")
        if highlight is not None and base <= highlight[0] < base + len(codes):
            _outline(ax, highlight[0] - base, highlight[1], width)
        ax.set_xticks([])
        ax.set_yticks([])
    used = count_owners(pmap)
    handles = [Patch(color=COLOURS[OWNERS.index(k)], label=f"{k} ({v})") for k, v in used.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _outline(ax: Any, first: int, npages: int, width: int) -> None:
    """A red frame around pages [first, first + npages) of a grid `width` pages wide (an aligned block)."""
    from matplotlib.patches import Rectangle

    row, col = divmod(first, width)
    w, h = (width, npages // width) if npages >= width else (npages, 1)
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.5))


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
