"""The page grid and its pictures (issue 18): content, not just files (kalloc.replay.pagegrid, gridplot).

A 1 MiB bank with the slab heap: 10 small objects (one slab), a 3-page vmalloc area, a page-level
object; the grid must say who owns those pages, how full the slab is, which pages the area maps
in which order, and which tag holds each page; the drawn cells must have those colours."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalloc.page import PAGE_SHIFT
from kalloc.replay.measure import build
from kalloc.replay.pagegrid import page_tags, snapshot, window
from kalloc.replay.pagemap import COLOURS, OWNERS
from kalloc.slab import Slab

pytest.importorskip("matplotlib")

from kalloc.replay import gridplot

BANK = [("sram", 0x8000_0000, 1 << 20, False)]


def _memory():  # type: ignore[no-untyped-def]
    ka, heap, vm = build(BANK, "slab", "off")
    small = [heap.malloc(100) for _ in range(10)]
    area = vm.vmalloc(3 * 4096 - 100)
    big = heap.malloc(20000)
    assert all(a is not None for a in small) and area is not None and big is not None
    return ka, heap, vm, small, area, big


def test_the_grid_knows_owners_fullness_areas_and_tags():
    ka, heap, vm, small, area, big = _memory()
    objects = [(a, 100, "ui") for a in small] + [(area, 3 * 4096 - 100, "tex"), (big, 20000, "tex")]
    grid = snapshot(ka, heap, vm, objects)
    slab_pfn = small[0] >> PAGE_SHIFT
    slab = ka.page_owner[slab_pfn]
    assert isinstance(slab, Slab)
    assert grid.owner(slab_pfn) == "slab cache" and grid.fullness[slab_pfn] == 10 / slab.nobjs
    (pfns,) = grid.areas
    assert pfns == vm.areas[area].pfns and len(pfns) == 3  # the area's pages, in virtual order
    assert all(grid.owner(p) == "vmalloc" for p in pfns)
    assert grid.tags[slab_pfn] == "ui" and all(grid.tags[p] == "tex" for p in pfns)  # virtual -> frames
    assert grid.tags[big >> PAGE_SHIFT] == "tex" and grid.owner(big >> PAGE_SHIFT) == "heap"
    # the zoom: whole rows around what is allocated, not the bank
    ((name, first, shown),) = window(grid, 32)
    used = [slab_pfn, big >> PAGE_SHIFT, *pfns]
    assert name == "sram" and first <= min(used) and max(used) < first + shown and first % 32 == 0


def test_a_page_belongs_to_the_tag_with_most_bytes_on_it():
    base = 0x8000_0000
    got = page_tags([(base, 1000, "b"), (base + 1000, 3000, "a"), (base + 4000, 200, "b")])
    assert got == {base >> PAGE_SHIFT: "a", (base >> PAGE_SHIFT) + 1: "b"}  # 3000 a vs 1096 b; then 104 b


def _cell(img, starts, win, width, pfn):  # type: ignore[no-untyped-def]
    for (_n, first, row), (_b, _f, n) in zip(starts, win, strict=True):
        if first <= pfn < first + n:
            r, c = divmod(pfn - first, width)
            return tuple(float(v) for v in img[row + r, c])
    raise AssertionError(f"page {pfn:#x} not shown")


def test_cells_have_the_colours_of_their_pages():
    ka, heap, vm, small, area, big = _memory()
    grid = snapshot(ka, heap, vm)
    win = window(grid, 32)
    img, starts = gridplot.image(grid, win, 32)
    free_pfn = next(p for p in range(win[0][1], win[0][1] + win[0][2]) if grid.owner(p) == "free")
    assert _cell(img, starts, win, 32, free_pfn) == pytest.approx(gridplot.rgb(COLOURS[OWNERS.index("free")]))
    vm_colour = gridplot.rgb(COLOURS[OWNERS.index("vmalloc")])
    for p in vm.areas[area].pfns:
        assert _cell(img, starts, win, 32, p) == pytest.approx(vm_colour)
    cells = img.reshape(-1, 3)
    assert sum(1 for c in cells if tuple(c) == pytest.approx(vm_colour)) == 3  # no other cell is vmalloc
    slab_pfn = small[0] >> PAGE_SHIFT
    f = grid.fullness[slab_pfn]
    blue = gridplot.rgb(COLOURS[OWNERS.index("slab cache")])
    assert _cell(img, starts, win, 32, slab_pfn) == pytest.approx(tuple(1 - (1 - v) * (0.3 + 0.7 * f)
                                                                         for v in blue))  # fmt: skip
    # by tag: the tag's colour where a tagged object is
    tagged = snapshot(ka, heap, vm, [(big, 20000, "tex")])
    colours = gridplot.tag_colours(["tex"])
    img2, starts2 = gridplot.image(tagged, win, 32, "tag", colours)
    assert _cell(img2, starts2, win, 32, big >> PAGE_SHIFT) == pytest.approx(gridplot.rgb(colours["tex"]))


def test_a_session_is_a_gif_with_one_frame_per_grid_and_small_multiples(tmp_path: Path):
    from PIL import Image

    ka, heap, vm = build(BANK, "slab", "off")
    frames = []
    for i in range(5):
        heap.malloc(30000)
        frames.append((f"step {i}", snapshot(ka, heap, vm)))
    gif, png = gridplot.session(frames, tmp_path / "s", "five steps")
    assert gif.name == "s-session.gif" and png.name == "s-session.png"
    with Image.open(gif) as im:
        assert im.n_frames == 5
        im.seek(0)
        first = im.convert("RGB").tobytes()
        im.seek(4)
        assert im.convert("RGB").tobytes() != first  # memory filled between the first and last frame
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] / 2  # 4 columns of small multiples, 2 rows
