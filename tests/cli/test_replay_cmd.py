"""`kalloc replay` and the traces `kalloc run --record` writes for it: JSON, pictures, exit statuses."""

from __future__ import annotations

import json
import struct

import pytest
from click.testing import CliRunner

from kalloc.cli import main
from kalloc.heaps import HEAPS
from kalloc.replay.measure import build
from kalloc.replay.replayer import replay
from kalloc.replay.trace import parse
from kalloc.replay.tracegen import GENERATORS, malloc_lab_text


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
    banks = [("dma", 0x8000_0000, 2 << 20, True), ("ram", 0x8020_0000, 6 << 20, False)]
    ka, h, _vm = build(banks, "firstfit", "off")
    res = replay(tr, ka, h, check_every=10)
    assert not res.failed and res.skipped == 0
