"""Long-session forecasts (issue 18): sessions, probes, the extfrag index and the fragmentation cliff."""

from __future__ import annotations

import pytest

from kalloc.replay.forecast import Forecast
from kalloc.replay.measure import build, measure
from kalloc.replay.probe import ProbeError, fragmentation_index, parse_probes
from kalloc.replay.replayer import replay
from kalloc.replay.session import load_session, loop
from kalloc.replay.trace import FREE, Op, Trace, TraceError

BANK = [("ram", 0x8000_0000, 1 << 20, False)]  # one 1 MiB bank, zone Normal: 256 pages


def test_fragmentation_index_is_the_kernels_arithmetic():
    # mm/vmstat.c __fragmentation_index: no free blocks -> 0; a suitable block -> -1000;
    # else 1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total (integer division)
    assert fragmentation_index([0, 0, 0], 2) == 0
    assert fragmentation_index([1, 0, 1], 2) == -1000
    assert fragmentation_index([4, 0, 0], 2) == 1000 - (1000 + 4 * 1000 // 4) // 4 == 500
    assert fragmentation_index([16, 0, 0, 0], 3) == 1000 - (1000 + 16000 // 8) // 16 == 813
    assert fragmentation_index([1, 0, 0], 2) == -250  # fewer free pages than requested: below 0, as Linux


def test_probe_parsing():
    ps = parse_probes("4MiB, 64KiB@dma,4096@normal", max_order=10)
    assert [(p.size, p.zone, p.order) for p in ps] == [(4 << 20, None, 10), (64 << 10, 0, 4), (4096, 1, 0)]
    for bad in ("8MiB", "0", "1MiB@high", "lots", ""):
        with pytest.raises(ProbeError):
            parse_probes(bad, max_order=10)


def _cliff_trace(n: int = 40) -> Trace:
    """n objects of 16 pages, then every even one freed, then every odd one: holes that never merge."""
    ops = [Op("a", i, 16 << 12, api="level") for i in range(n)]
    ops += [Op(FREE, i) for i in range(0, n, 2)] + [Op(FREE, i) for i in range(1, n, 2)]
    return Trace("cliff", "kalloc", ops, {})


def test_the_forecast_finds_the_cliff_at_the_step_the_trace_builds_it():
    tr, phases = loop(_cliff_trace(), 1)
    n = 40
    # What is free once the allocations stop (they fail when the bank is full): the construction's
    # start. Each even free then adds 16 pages that cannot merge (the odd neighbours stay): the
    # 64-page probe is covered, never served, from the first free that brings the zone to 64 pages.
    ka, h, _vm = build(BANK, "slab", "off")
    replay(Trace("fill", "kalloc", tr.ops[:n], {}), ka, h, verify=False)
    (zone,) = ka.buddy.populated_zones
    left = zone.nr_free
    assert left < 64 and zone.largest_free_order() < 6  # the watermark keeps some free
    expected = n + -(-(64 - left) // 16) - 1
    probes = parse_probes("256KiB", 10)
    out, _ = measure(tr, "slab", lambda: build(BANK, "slab", "off"),
                     observe=lambda parts: Forecast(*parts, tr, phases, probes))  # fmt: skip
    (p,) = out["forecast"]["probes"]
    assert p["out_of_memory_step"] is not None and p["out_of_memory_step"] < n  # full: lack of memory first
    assert p["cliff_step"] == expected
    at = p["at_cliff"]
    assert at["phase"] == {"step": 0, "name": "lap", "round": 0}
    assert at["window"]["bytes"] == 256 << 10 and 0 < at["window"]["pages_in_use"] < 64
    freed = set(range(0, 2 * (expected - n + 1), 2))  # the even ones freed so far
    assert at["objects_total"] >= 1
    assert all(o["id"] not in freed and o["step"] == o["id"] and o["phase"] == "lap" for o in at["objects"])
    assert at["objects_by_site"] == {"level": at["objects_total"]}
    assert at["objects_by_tag"] == {"untagged": at["objects_total"]}
    assert {b["owner"] for b in at["blocks"]} == {"heap"}
    assert p["recovered_step"] is not None and p["recovered_step"] > p["cliff_step"]
    # the index per order at the cliff: order 6 fails for fragmentation (towards 1000), not lack of memory
    fi = at["zones"]["Normal"]["fragmentation_index"]
    assert fi[6] > 0.5 and fi[0] == -1.0


def test_loop_gives_each_lap_its_own_ids():
    tr = Trace("t", "kalloc", [Op("a", 0, 10), Op("a", 1, 20), Op(FREE, 0)], {})
    big, phases = loop(tr, 3)
    assert [(o.kind, o.id) for o in big.ops] == [("a", 0), ("a", 1), ("f", 0), ("a", 2), ("a", 3), ("f", 2),
                                                 ("a", 4), ("a", 5), ("f", 4)]  # fmt: skip
    assert [(p.step, p.round) for p in phases] == [(0, 0), (3, 1), (6, 2)]


def test_session_file_phases_rounds_and_frees(tmp_path):
    (tmp_path / "load.trace").write_text("# kalloc trace v1\na 0 100 malloc @level\na 1 200\nf 1\n")
    (tmp_path / "play.trace").write_text("# kalloc trace v1\na 0 50 @audio\nf 0\na 1 60\n")
    (tmp_path / "s.toml").write_text(
        'rounds = 2\n[[phase]]\nname = "load"\ntrace = "load.trace"\n'
        '[[phase]]\nname = "play"\ntrace = "play.trace"\nrepeat = 2\n'
        '[[phase]]\nname = "unload"\nfree = ["load"]\n'
    )
    tr, phases = load_session(tmp_path / "s.toml")
    assert [(p.name, p.round) for p in phases] == [("load", 0), ("play", 0), ("unload", 0),
                                                   ("load", 1), ("play", 1), ("unload", 1)]  # fmt: skip
    ops = tr.ops
    assert ops[0] == Op("a", 0, 100, api="malloc", tag="level") and ops[3].tag == "audio"
    unload = ops[phases[2].step : phases[3].step]
    assert unload == [Op(FREE, 0)]  # only the load phase's survivor; play's survivors stay
    assert len({o.id for o in ops if o.kind == "a"}) == sum(o.kind == "a" for o in ops)


@pytest.mark.parametrize(
    "text",
    ["rounds = 0\n[[phase]]\ntrace='x'\n", "[[phase]]\nname='a'\n", "[[phase]]\nfree=['nope']\n",
     "[[phase]]\ntrace='missing.trace'\n", "x = 1\n", "not toml ["],
)  # fmt: skip
def test_bad_session_files_are_trace_errors(tmp_path, text):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(TraceError):
        load_session(tmp_path / "s.toml")
