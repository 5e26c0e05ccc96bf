"""Trace formats, heap policies, the replayer and its measurement (issue 6, part A): no emulator needed.

The `kalloc replay` command is tested in tests/cli/test_replay_cmd.py."""

from __future__ import annotations

import random

import pytest

from kalloc import Config, Kalloc
from kalloc.heaps import HEAPS, make_heap
from kalloc.replay import TRACES_DIR, shipped_traces
from kalloc.replay.measure import build, measure
from kalloc.replay.replayer import ReplayError, replay
from kalloc.replay.trace import FREE, Op, Trace, TraceError, dumps, parse
from kalloc.replay.tracegen import GENERATORS, malloc_lab_text

SMALL = 8 << 20


def fresh(heap: str, sanitize: str = "off"):
    ka = Kalloc.standalone(size=SMALL, dma_size=2 << 20, config=Config(sanitize=sanitize))
    return ka, make_heap(heap, ka)


# ---------------------------------------------------------------- formats


def test_malloc_lab_2002_header_and_crlf():
    text = (
        "20000\r\n3\r\n8\r\n1\r\na 0 512\r\na 1 128\r\nr 0 640\r\na 2 128\r\nf 1\r\nr 0 768\r\nf 0\r\nf 2\r\n"
    )
    tr = parse(text, "short.rep")
    assert tr.format == "malloc-lab-2002"
    assert tr.header["num_ids"] == 3 and len(tr.ops) == 8
    assert tr.ops[2] == Op("r", 0, 640)
    assert tr.ops[-1] == Op(FREE, 2)


def test_malloc_lab_2016_header():
    tr = parse("1\n2\n3\n640\na 0 512\na 1 128\nf 0\n", "x.rep")
    assert tr.format == "malloc-lab-2016" and tr.header["peak_bytes"] == 640


@pytest.mark.parametrize(
    "text",
    ["20000\n3\n9\n1\na 0 1\n", "20000\n1\n1\n1\nx 0 1\n", "20000\n1\n1\n1\na 5 1\n", "hello\n"],
)
def test_malformed_traces_are_rejected(text):
    with pytest.raises(TraceError):
        parse(text, "bad")


def test_wee_alloc_ids_count_alloc_lines():
    tr = parse("Alloc(552),\nAlloc(120),\nFree(1),\nAlloc(5),\nFree(2),\nFree(0),\n", "w.trace")
    assert tr.format == "wee_alloc"
    assert [(o.kind, o.id, o.size) for o in tr.ops] == [
        ("a", 0, 552), ("a", 1, 120), ("f", 1, 0), ("a", 2, 5), ("f", 2, 0), ("f", 0, 0)]  # fmt: skip
    with pytest.raises(TraceError):
        parse("Alloc(1),\nFree(3),\n", "w")


def test_kalloc_format_round_trip():
    ops = [Op("a", 0, 10, api="kmalloc"), Op("c", 1, 8, 4), Op("m", 2, 100, 64), Op("r", 0, 99), Op(FREE, 1)]
    tr = parse(dumps(ops, ("a comment",)), "k")
    assert tr.format == "kalloc" and tr.ops == ops


# ---------------------------------------------------------------- replay correctness

HAND = [Op("a", 0, 8), Op("a", 1, 100), Op("c", 2, 24, 3), Op("m", 3, 40, 256), Op("r", 1, 5000),
        Op("r", 0, 4), Op("a", 4, 0), Op(FREE, 2), Op("r", 1, 60), Op("r", 9, 32), Op(FREE, 0), Op(FREE, 0),
        Op(FREE, 1), Op(FREE, 3), Op(FREE, 4), Op(FREE, 9)]  # fmt: skip


@pytest.mark.parametrize("heap", list(HEAPS))
@pytest.mark.parametrize("sanitize", ["off", "poison"])
def test_hand_written_trace_every_op(heap, sanitize):
    ka, h = fresh(heap, sanitize)
    before = ka.buddy.free_pages
    res = replay(Trace("hand", "kalloc", HAND, {}), ka, h, check_every=1)
    assert res.counts == {"a": 3, "c": 1, "m": 1, "r": 4, "f": 7}
    assert res.skipped == 1 and not res.failed  # the second free of id 0
    assert res.end["payload_bytes"] == 0 and res.end["live_objects"] == 0
    assert res.peak_payload == 8 + 100 + 72 + 40 + 5000 - 100
    if heap in ("firstfit", "arena"):  # everything freed: regions released / arena trimmed
        assert ka.buddy.free_pages >= before - 2  # the arena keeps its page-table pages
    ka.check()


@pytest.mark.parametrize("heap", list(HEAPS))
def test_random_traces_replay_correctly(heap):
    rng = random.Random(heap)
    ops, live, nid = [], {}, 0
    for _ in range(1500):
        r = rng.random()
        if live and r < 0.35:
            i = rng.choice(sorted(live))
            del live[i]
            ops.append(Op(FREE, i))
        elif live and r < 0.5:
            i = rng.choice(sorted(live))
            live[i] = rng.choice((1, 15, 16, 200, 3000, 9000, 20000))
            ops.append(Op("r", i, live[i]))
        else:
            live[nid] = int(2 ** rng.uniform(3, 15))
            ops.append(Op(rng.choice("aac"), nid, live[nid], 1))
            nid += 1
    ka, h = fresh(heap)
    res = replay(Trace("random", "kalloc", ops, {}), ka, h, check_every=97)
    assert not res.failed and res.skipped == 0
    assert res.end["live_objects"] == len(live)
    assert res.end["payload_bytes"] == sum(live.values())
    assert 0 < res.utilization <= 1
    if heap in ("firstfit", "arena"):
        assert len(h.live_allocations()) == len(live)


@pytest.mark.parametrize("heap", ["slab", "firstfit", "arena"])
def test_realloc_preserves_contents(heap):
    ka, h = fresh(heap)
    p = h.malloc(100)
    data = bytes(range(100))
    h.write(p, data)
    for size in (300, 5000, 70000, 120, 100):
        p = h.realloc(p, size)
        assert h.read(p, 100) == data
    h.free(p)
    h.check()
    ka.check()


def test_replay_catches_a_heap_that_overlaps_objects():
    ka, h = fresh("firstfit")
    real = h.malloc
    first = []

    def broken(size, caller=None):
        p = real(size)
        first.append(p)
        return first[0]  # every object at the same address

    h.malloc = broken
    with pytest.raises(ReplayError):
        replay(Trace("t", "kalloc", [Op("a", 0, 64), Op("a", 1, 64), Op(FREE, 0)], {}), ka, h)


def test_generated_traces_parse_and_replay():
    for name, gen in GENERATORS.items():
        tr = parse(malloc_lab_text(gen()), name)
        ka, h = fresh("firstfit")
        res = replay(tr, ka, h)
        assert not res.failed and res.end["live_objects"] == 0, name


# ---------------------------------------------------------------- arena: commit and trim


def test_arena_grows_and_shrinks_through_the_buddy_allocator():
    ka, h = fresh("arena")
    free0 = ka.buddy.free_pages
    ps = [h.malloc(60000) for _ in range(4)]  # ~59 pages committed at the top
    grown = free0 - ka.buddy.free_pages
    assert grown >= 4 * 60000 // 4096 and h.top - 0xE000_0000 == h.vm.pages["arena"] * 4096
    for p in reversed(ps):
        h.free(p)
    assert h.trims >= 1 and h.vm.pages["arena"] <= 2
    assert free0 - ka.buddy.free_pages <= 3  # the page-table root (and at most a leaf and a page) remain
    h.check()
    ka.check()


def test_arena_keeps_pages_under_a_live_block():
    _ka, h = fresh("arena")
    a = h.malloc(40000)
    b = h.malloc(16)
    h.free(a)  # a hole below a live block: nothing can be given back without demand paging
    assert h.vm.pages["arena"] >= 40000 // 4096
    h.free(b)
    assert h.vm.pages["arena"] <= 1


# ---------------------------------------------------------------- command line and plots


def test_measure_finds_the_peak_and_maps_its_pages():
    trace = Trace("t.rep", "malloc-lab", GENERATORS["coalesce"](rounds=10), {})
    banks = [("dma", 0x8000_0000, 2 << 20, True), ("ram", 0x8020_0000, 6 << 20, False)]
    out, written = measure(trace, "firstfit", lambda: build(banks, "firstfit", "off"), map_at=(0,))
    assert written == []
    assert out["at_peak"]["committed_bytes"] == out["peak_committed_bytes"] > 0
    assert out["pages_by_owner_at_peak"]["heap"] > 0 and "free" in out["pages_by_owner_at_peak"]
    assert shipped_traces() and all(p.parent == TRACES_DIR for p in shipped_traces())
