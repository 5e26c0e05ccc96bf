"""docs/teaching.md: each exercise's instructor note still holds.

The REPL snippets themselves run in tests/test_docs.py; here each note's claim is
checked on the run or the state it is about.
"""

from __future__ import annotations

from kalloc_machine.session import RunOptions, Session

from kalloc import Config, Kalloc, gfp


def _normal(ka: Kalloc) -> list[int]:
    return [int(n) for n in ka.buddyinfo().splitlines()[1].split()[4:]]


def test_1_buddy_one_page_splits_down_and_merges_back():
    ka = Kalloc.standalone()
    before = _normal(ka)
    k = next(i for i, n in enumerate(before) if n)  # the smallest free order
    p = ka.alloc_pages(gfp.GFP_KERNEL, 0)
    after = _normal(ka)
    assert after[:k] == [b + 1 for b in before[:k]] and after[k] == before[k] - 1
    ka.free_pages(p, 0)
    assert _normal(ka) == before


def _slab_row(ka: Kalloc, name: str) -> list[str]:
    return next(line.split() for line in ka.slabinfo().splitlines() if line.startswith(name + " "))


def test_2_slab_class_and_red_zone_cost():
    ka = Kalloc.standalone()
    assert ka.ksize(ka.kmalloc(100, gfp.GFP_KERNEL)) == 128
    poisoned = _slab_row(ka, "kmalloc-128")
    lean = Kalloc.standalone(config=Config(sanitize="off"))
    lean.kmalloc(100, gfp.GFP_KERNEL)
    plain = _slab_row(lean, "kmalloc-128")
    assert int(poisoned[3]) > int(plain[3]) == 128  # objsize: red zones cost bytes
    assert int(poisoned[4]) < int(plain[4])  # objperslab


def test_3_atomic_allocations_dip_below_min_and_the_run_is_clean():
    out = Session(RunOptions()).run()
    assert out.exit_status == 0
    zones = out.report["allocator"]["zones"]
    below = [z["name"] for z in zones if z["min_free_seen"] < z["watermarks"]["min"]]
    assert below, [(z["name"], z["min_free_seen"], z["watermarks"]) for z in zones]
    assert "GFP_KERNEL took" in out.report["uart"] and "below the watermark: ok" in out.report["uart"]


def test_3_tiny_board_runs_the_same_story():
    out = Session(RunOptions(board="tiny")).run()
    assert out.exit_status == 0 and "GFP_KERNEL took" in out.report["uart"]


def test_4_dma_zone_placement():
    ka = Kalloc.standalone()
    dma_end = 0x8000_0000 + (4 << 20)
    assert ka.kmalloc(512, gfp.GFP_KERNEL) >= dma_end
    assert ka.kmalloc(512, gfp.GFP_DMA) < dma_end
    out = Session(RunOptions(board="big")).run()
    dma = out.report["dma"]
    assert out.exit_status == 0 and dma["completed"] == dma["transfers"] == 8 and dma["errors"] == 0


def test_5_half_free_yet_fragmented():
    ka = Kalloc.standalone(size=1 << 20, dma_size=256 << 10)
    pages = []
    for flags in (gfp.GFP_KERNEL, gfp.GFP_ATOMIC):
        while (p := ka.alloc_pages(flags | gfp.NOWARN, 0)) is not None:
            pages.append(p)
    for p in sorted(pages)[::2]:
        ka.free_pages(p, 0)
    assert ka.stats()["totals"]["free_bytes"] > 512 << 10
    assert ka.alloc_pages(gfp.GFP_KERNEL | gfp.NOWARN, 5) is None
    assert ka.stats()["fragmentation"]["Normal"]["unusable_index"][1] > 0.9
    assert ka.alloc_pages(gfp.GFP_KERNEL, 5) is None  # the report says why: fragmentation, not the watermark
    msg = str(ka.reports[-1])
    assert "fragmentation: zone Normal has" in msg and "no free block of order 5" in msg


def test_5_replay_firstfit_beats_size_classes_on_coalesce(tmp_path):
    import json

    from click.testing import CliRunner

    from kalloc.cli import main

    out = tmp_path / "r.json"
    trace = "kalloc/replay/traces/coalesce.rep"
    res = CliRunner().invoke(main, ["replay", trace, "--heap", "all", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    rows = data if isinstance(data, list) else data.get("replays", data)
    util = {r["heap"]: r["utilization"] for r in rows}
    assert util["firstfit"] > 0.9 > util["kmalloc"]
