"""Trace formats, heap policies and `kalloc replay` (issue 6, part A): no emulator needed."""

from __future__ import annotations

import json
import random
import struct

import pytest
from click.testing import CliRunner

from kalloc import Config, Kalloc
from kalloc.cli import main
from kalloc.heaps import HEAPS, make_heap
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


def _trace_file(tmp_path, name="t.rep"):
    p = tmp_path / name
    p.write_text(malloc_lab_text(GENERATORS["coalesce"](rounds=10)))
    return p


def test_cli_replay_json(tmp_path):
    t = _trace_file(tmp_path)
    r = CliRunner().invoke(main, ["replay", str(t), "--heap", "all", "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [x["heap"] for x in doc["replays"]] == list(HEAPS)
    one = doc["replays"][0]
    for key in ("peak_payload_bytes", "peak_committed_bytes", "utilization", "failed_requests", "at_peak",
                "steps", "end"):  # fmt: skip
        assert key in one
    assert one["at_peak"]["committed_bytes"] == one["peak_committed_bytes"]
    assert "unusable_index" in one["steps"][0] and "free_blocks_per_order" in one["end"]


def test_cli_replay_bad_trace_is_bad_input(tmp_path):
    p = tmp_path / "bad.rep"
    p.write_text("nonsense\n")
    assert CliRunner().invoke(main, ["replay", str(p)]).exit_code == 3


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plots_are_written_and_follow_the_data(tmp_path):
    pytest.importorskip("matplotlib")
    t = _trace_file(tmp_path)
    out = tmp_path / "plots"
    r = CliRunner().invoke(
        main, ["replay", str(t), "--heap", "firstfit", "--plot", str(out), "--map-at", "0", "-q"]
    )
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["t-firstfit-fragmentation.png", "t-firstfit-map-peak.png", "t-firstfit-map-step0.png"]
    for f in out.iterdir():
        w, h = _png_size(f)
        assert w > 300 and h > 200 and f.stat().st_size > 5000
    assert (out / "t-firstfit-map-peak.png").read_bytes() != (out / "t-firstfit-map-step0.png").read_bytes()
    r = CliRunner().invoke(main, ["replay", str(t), "--heap", "slab", "--plot", str(out), "-q"])
    assert (out / "t-slab-fragmentation.png").read_bytes() != (
        out / "t-firstfit-fragmentation.png"
    ).read_bytes()


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    r = CliRunner().invoke(main, ["replay", str(_trace_file(tmp_path)), "--plot", str(tmp_path / "p")])
    assert r.exit_code == 3
    assert "pip install 'kalloc[plot]'" in r.output


# ---------------------------------------------------------------- kalloc run --heap / --record


@pytest.mark.parametrize("heap", ["slab", "firstfit"])
def test_run_records_a_trace_that_replays(tmp_path, heap):
    out = tmp_path / "run.ktrace"
    r = CliRunner().invoke(main, ["run", "firmware/build/tests/mallocs.elf", "-q", "--heap", heap,
                                  "--record", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    tr = parse(out.read_text(), "run.ktrace")
    assert tr.format == "kalloc" and any(op.api == "malloc" for op in tr.ops)
    ka, h = fresh("firstfit")
    res = replay(tr, ka, h, check_every=10)
    assert not res.failed and res.skipped == 0
