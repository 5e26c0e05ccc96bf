"""Memory as a page grid, and a session as frames of it (PNG and GIF; matplotlib, optional).

One cell per physical page, a row per 64 pages (128 above 4096 pages shown, 32 up to 1024),
zoomed to the rows that hold allocated pages (kalloc.replay.pagegrid.window), banks one
under the other. A cell is coloured by its owner (kalloc.replay.pagemap.OWNERS) or, with
`by="tag"`, by the tag holding most of its bytes (pages no tagged object touches keep a
pale owner colour). A slab page is as dark as its slab is full (an empty slab is pale).
Each vmalloc area is a line through its pages in virtual order, a dot on its first page:
the area is contiguous in the vmalloc window, its pages are wherever the buddy had them.

    image(grid, win, by)              the RGB array of one frame and where each bank starts
    picture(grid, path, title, ...)   one grid as a PNG (with a legend)
    session(frames, stem, title, by)  a session: `<stem>-session.gif` (an animation, one frame
                                      per sampled step, matplotlib's PillowWriter) and
                                      `<stem>-session.png` (the same frames as small multiples)

Why a GIF and small multiples rather than an HTML slider: matplotlib needs Pillow (a
dependency of matplotlib itself), so the PillowWriter works wherever `kalloc[plot]` is
installed, a GIF plays in any browser, chat or pull request and in the docs, and the
small multiples show the cliff forming on paper; an HTML page (to_jshtml) would embed the
same PNG frames in a 10x larger file that needs a browser with scripts.

Invariants:
 1. Drawing reads grids only; the same grids draw the same pictures.
 2. Every frame of a session uses the same window (the union of the frames'), so cells do
    not move between frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kalloc.page import PAGE_SHIFT
from kalloc.replay.pagegrid import Grid, window
from kalloc.replay.pagemap import COLOURS, OWNERS
from kalloc.replay.plot import require

TAG_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
               "#17becf", "#7f7f7f")  # fmt: skip
_SLAB = OWNERS.index("slab cache")
_FREE = OWNERS.index("free")
Window = list[tuple[str, int, int]]
KEY = "slab pages: darker = fuller; lines: each vmalloc area's pages in order"


def width_for(win: Window) -> int:
    """Pages per row: 32 up to 1024 pages shown (a 1 MiB board is 8 rows, not 4), 64 up to 4096, else 128."""
    shown = sum(n for _b, _f, n in win)
    return 32 if shown <= 1024 else 64 if shown <= 4096 else 128


def rows_of(win: Window, width: int) -> int:
    return sum(-(-n // width) for _b, _f, n in win) + len(win) - 1


def union(wins: list[Window]) -> Window:
    """The smallest window holding every window of `wins` (same banks, in the same order)."""
    out = []
    for per_bank in zip(*wins, strict=True):
        first = min(f for _n, f, _k in per_bank)
        end = max(f + k for _n, f, k in per_bank)
        out.append((per_bank[0][0], first, end - first))
    return out


def rgb(colour: str) -> tuple[float, float, float]:
    h = colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return r, g, b


def _pale(colour: str, keep: float) -> tuple[float, float, float]:
    r, g, b = rgb(colour)
    return 1 - (1 - r) * keep, 1 - (1 - g) * keep, 1 - (1 - b) * keep


def tag_colours(tags: list[str]) -> dict[str, str]:
    """A colour per tag, in name order ("untagged" grey)."""
    names = sorted(set(tags) - {"untagged"})
    out = {t: TAG_COLOURS[i % len(TAG_COLOURS)] for i, t in enumerate(names)}
    out["untagged"] = "#9a9a9a"
    return out


def image(grid: Grid, win: Window, width: int, by: str = "owner",
          tags: dict[str, str] | None = None) -> tuple[Any, list[tuple[str, int, int]]]:  # fmt: skip
    """(rows x width x 3 array, [(bank, first pfn, first row)]): a blank row between banks."""
    import numpy as np

    img = np.ones((rows_of(win, width), width, 3))
    owners = np.array([rgb(c) for c in COLOURS])
    starts, row = [], 0
    for (name, first, n), (_nm, base, codes) in zip(win, grid.pmap, strict=True):
        starts.append((name, first, row))
        seg = np.frombuffer(bytes(codes[first - base : first - base + n]), dtype=np.uint8)
        cells = owners[seg]
        if by == "tag":
            cells = 1 - (1 - cells) * 0.35  # pale: owner only where no tagged object is
        for i in range(n):
            pfn = first + i
            t = grid.tags.get(pfn) if by == "tag" else None
            if t is not None and tags is not None:
                cells[i] = rgb(tags[t])
            f = grid.fullness.get(pfn)
            if f is not None:  # a slab page: as dark as its slab is full
                cells[i] = 1 - (1 - cells[i]) * (0.3 + 0.7 * f)
        pad = -(-n // width) * width - n
        block = np.concatenate([cells, np.ones((pad, 3))]) if pad else cells
        img[row : row + len(block) // width] = block.reshape(-1, width, 3)
        row += len(block) // width + 1
    return img, starts


def _cell(pfn: int, starts: list[tuple[str, int, int]], win: Window, width: int) -> tuple[int, int] | None:
    for (_name, first, row), (_n, _f, n) in zip(starts, win, strict=True):
        if first <= pfn < first + n:
            r, c = divmod(pfn - first, width)
            return row + r, c
    return None


def draw(ax: Any, grid: Grid, win: Window, width: int, by: str = "owner", tags: dict[str, str] | None = None,
         highlight: tuple[int, int] | None = None, labels: bool = True) -> None:  # fmt: skip
    """One frame on `ax`: the cells, the vmalloc links, a red frame around `highlight` (pfn, pages)."""
    from matplotlib.patches import Rectangle

    img, starts = image(grid, win, width, by, tags)
    ax.imshow(img, aspect="equal", interpolation="nearest")
    for pfns in grid.areas:
        pts = [p for p in (_cell(pfn, starts, win, width) for pfn in pfns) if p is not None]
        if len(pts) > 1:
            ax.plot([c for _r, c in pts], [r for r, _c in pts], color="#3b2a5c", linewidth=0.6, alpha=0.8)
        if pts:
            ax.plot([pts[0][1]], [pts[0][0]], "o", color="#3b2a5c", markersize=2.5)
    if highlight is not None:
        got = _cell(highlight[0], starts, win, width)
        if got is not None:
            r, c = got
            w, h = (width, max(1, highlight[1] // width)) if highlight[1] >= width else (highlight[1], 1)
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    if labels:
        for name, first, row in starts:
            ax.text(-1, row, f"{name} {first << PAGE_SHIFT:#x}", fontsize=6, ha="right", va="top")


def legend(by: str, grid: Grid, tags: dict[str, str] | None) -> list[Any]:
    from matplotlib.patches import Patch

    used = {OWNERS[c] for _n, _b, codes in grid.pmap for c in set(codes)}
    pale = 0.35 if by == "tag" else 1.0  # as image() draws them
    handles = [Patch(color=_pale(COLOURS[i], pale), label=o) for i, o in enumerate(OWNERS) if o in used]
    if by == "tag" and tags:
        handles += [Patch(color=c, label=f"tag {t}") for t, c in tags.items() if t != "untagged"]
    return handles


def picture(grid: Grid, path: str | Path, title: str, by: str = "owner",
            highlight: tuple[int, int] | None = None) -> Path:  # fmt: skip
    """One grid as a PNG; returns its path."""
    plt = require()
    width = width_for(window(grid, 128))
    win = window(grid, width)
    tags = tag_colours(list(grid.tags.values())) if by == "tag" else None
    fig, ax = plt.subplots(figsize=(10, min(14, 1.8 + rows_of(win, width) * 8 / width)))
    draw(ax, grid, win, width, by, tags, highlight)
    handles = legend(by, grid, tags)
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    ax.set_title(f"{title}\n{KEY}", fontsize=8)
    fig.tight_layout(rect=(0.06, 0.06, 1, 1))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def session(frames: list[tuple[str, Grid]], stem: Path, title: str, by: str = "owner") -> list[Path]:
    """`<stem>-session.gif` and `<stem>-session.png` (at most 12 small multiples) of the frames."""
    plt = require()
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not frames:
        return []
    width = width_for(union([window(g, 128) for _l, g in frames]))
    win = union([window(g, width) for _l, g in frames])
    tags = tag_colours([t for _l, g in frames for t in g.tags.values()]) if by == "tag" else None
    aspect = rows_of(win, width) / width
    fig, ax = plt.subplots(figsize=(7, min(10, 1.2 + 7 * aspect)))

    def show(i: int) -> None:
        ax.clear()
        draw(ax, frames[i][1], win, width, by, tags, labels=False)
        ax.set_title(f"{title}\n{frames[i][0]}", fontsize=8)

    anim = FuncAnimation(fig, show, frames=len(frames), interval=400, repeat=True)
    gif = Path(f"{stem}-session.gif")
    anim.save(gif, writer=PillowWriter(fps=3), dpi=80)
    plt.close(fig)
    pick = frames if len(frames) <= 12 else [frames[round(i * (len(frames) - 1) / 11)] for i in range(12)]
    cols = min(4, len(pick))
    nrows = -(-len(pick) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, (0.5 + 3 * aspect) * nrows + 0.8), squeeze=False)
    for ax2, (label, g) in zip(axes.flat, pick, strict=False):
        draw(ax2, g, win, width, by, tags, labels=False)
        ax2.set_title(label, fontsize=7)
    for ax2 in list(axes.flat)[len(pick) :]:
        ax2.axis("off")
    handles = legend(by, frames[-1][1], tags)
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    png = Path(f"{stem}-session.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return [gif, png]
