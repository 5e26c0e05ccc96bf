"""Statistics: /proc formats, the JSON stats, fragmentation, accounting, records and lookup."""

from __future__ import annotations

import json
import re

from kalloc import Caller, Config, Kalloc, gfp
from kalloc.page import PAGE_SIZE
from kalloc.stats import unusable_index

KERNEL = gfp.GFP_KERNEL


def workload(ka: Kalloc) -> None:
    c = ka.kmem_cache_create("inode", 200)
    objs = [ka.kmem_cache_alloc(c, KERNEL) for _ in range(50)]
    ks = [ka.kmalloc(s, KERNEL) for s in range(1, 3000, 37)]
    pool = ka.dma_pool_create("desc", 64, 16, 4096)
    blocks = [ka.dma_pool_alloc(pool, gfp.GFP_ATOMIC) for _ in range(10)]
    ka.alloc_pages(KERNEL, 3)
    for o in objs[::3]:
        ka.kmem_cache_free(c, o)
    for k in ks[::2]:
        ka.kfree(k)
    ka.dma_pool_free(pool, *blocks[0])


def test_buddyinfo_is_proc_format() -> None:
    ka = Kalloc.standalone()
    lines = ka.buddyinfo().splitlines()
    assert len(lines) == 2
    for line, zone in zip(lines, ka.buddy.populated_zones, strict=True):
        counts = "".join(f"{n:6d} " for n in zone.nr_free_blocks())
        assert line == f"Node 0, zone {zone.name:>8s} {counts}"
        assert re.fullmatch(r"Node 0, zone +(DMA|Normal) ( +\d+ ){11}", line)
    assert lines[0].startswith("Node 0, zone      DMA      ")


def test_slabinfo_is_version_2_1() -> None:
    ka = Kalloc.standalone()
    workload(ka)
    text = ka.slabinfo().splitlines()
    assert text[0] == "slabinfo - version: 2.1"
    assert text[1].startswith(
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    )
    row = re.compile(
        r"(\S+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) : tunables +0 +0 +0 : slabdata +(\d+) +(\d+) +0"
    )
    rows = {m.group(1): m.groups() for m in map(row.fullmatch, text[2:]) if m}
    assert len(rows) == len(text) - 2
    assert text[2].startswith("inode ")  # newest cache first, as Linux lists them
    _name, active, num, objsize, perslab, _pages, aslabs, nslabs = rows["inode"]
    assert (int(active), int(objsize), int(perslab)) == (33, 232, 17)
    assert int(num) == int(nslabs) * 17 and aslabs == nslabs


def test_zoneinfo_shows_watermarks_and_protection() -> None:
    ka = Kalloc.standalone()
    text = ka.zoneinfo()
    dma, normal = ka.buddy.zones
    assert (
        f"Node 0, zone      DMA\n  pages free     {dma.nr_free}\n        min      {dma.wmark_min}\n" in text
    )
    assert f"        protection: (0, {dma.lowmem_reserve[1]})\n" in text
    assert f"        managed  {normal.managed}\n" in text


def test_stats_are_json_and_deterministic() -> None:
    def run() -> str:
        ka = Kalloc.standalone(config=Config(sanitize="kasan"))
        workload(ka)
        return json.dumps(ka.stats(), sort_keys=False) + ka.buddyinfo() + ka.slabinfo()

    assert run() == run()


def test_totals_add_up_and_track_high_water() -> None:
    ka = Kalloc.standalone()
    reserved = [(0x8000_0000, 0x8001_0000, "firmware")]
    ka = Kalloc(ka.phys, reserved=reserved)
    base = ka.stats()["totals"]
    a = ka.alloc_pages(KERNEL, 5)
    t = ka.stats()["totals"]
    assert t["used_bytes"] == base["used_bytes"] + (PAGE_SIZE << 5)
    ka.free_pages(a, 5)
    t = ka.stats()["totals"]
    assert t["high_water_used_bytes"] >= base["used_bytes"] + (PAGE_SIZE << 5)
    assert t["free_bytes"] + t["used_bytes"] + sum(t["reserved_bytes"].values()) == t["ram_bytes"]
    assert t["reserved_bytes"]["firmware"] == 0x10000
    zones = {z["name"]: z for z in ka.stats()["zones"]}
    assert zones["DMA"]["pages"]["reserved"] == {"firmware": 16}
    assert zones["Normal"]["min_free_seen"] <= zones["Normal"]["pages"]["free"]


def test_unusable_free_space_index() -> None:
    assert unusable_index([4, 0, 1]) == [0, 500, 500]
    assert unusable_index([0, 0, 0]) == [0, 0, 0]
    assert unusable_index([2, 1, 0]) == [0, 500, 1000]
    ka = Kalloc.standalone()
    frag = ka.stats()["fragmentation"]["Normal"]
    assert frag["largest_free_block"] == 4 << 20
    assert frag["unusable_index"][0] == 0.0 and all(0 <= v <= 1 for v in frag["unusable_index"])
    # Fragment: take every order-0 page, free every other one.
    pages = []
    while (p := ka.alloc_pages(KERNEL | gfp.NOWARN, 0)) is not None:
        pages.append(p)
    for p in pages[::2]:
        ka.free_pages(p, 0)
    frag = ka.stats()["fragmentation"]["Normal"]
    assert frag["unusable_index"][1] > 0.9


def test_live_allocations_name_every_kind() -> None:
    ka = Kalloc.standalone()
    c = ka.kmem_cache_create("foo", 24)
    pool = ka.dma_pool_create("bar", 16, 0, 0)
    made = {
        "kmalloc": ka.kmalloc(10, KERNEL),
        "cache:foo": ka.kmem_cache_alloc(c, KERNEL),
        "pages": ka.alloc_pages(KERNEL, 0),
        "pages_exact": ka.alloc_pages_exact(5000, KERNEL),
        "malloc": ka.malloc(10),
        "dma_coherent": ka.dma_alloc_coherent(10, KERNEL)[0],
        "dma_pool:bar": ka.dma_pool_alloc(pool, KERNEL)[0],
    }
    allocs = ka.live_allocations()
    assert [a.addr for a in allocs] == sorted(made.values())
    assert {a.kind: a.addr for a in allocs} == made
    for kind, addr in made.items():
        assert ka.lookup(addr + 1).kind == kind
    assert ka.lookup(0x8080_0000) is None


def test_describe_names_freed_objects() -> None:
    ka = Kalloc.standalone()
    s1, s2 = ka.depot.save((1,)), ka.depot.save((2,))
    p = ka.kmalloc(50, KERNEL, Caller(site=s1))
    assert ka.describe(p + 4)["state"] == "live"
    ka.kfree(p, Caller(site=s2))
    d = ka.describe(p + 4)
    assert d == {
        "state": "free",
        "object": {"addr": p, "size": 50, "kind": "kmalloc", "usable": 64, "cache": "kmalloc-64"},
        "offset": 4,
        "alloc_site": s1,
        "free_site": s2,
    }


def test_listeners_see_every_alloc_free_and_resize() -> None:
    ka = Kalloc.standalone()
    events: list[tuple] = []
    ka.listeners.append(lambda *e: events.append(e))
    p = ka.kmalloc(20, KERNEL)
    ka.ksize(p)
    p = ka.krealloc(p, 100, KERNEL)
    ka.kfree(p)
    kinds = [e[0] for e in events]
    assert kinds == ["alloc", "resize", "alloc", "free", "free"]
    assert events[0][1:] == (events[0][1], 20, 32)
