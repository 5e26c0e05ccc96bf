"""`kalloc replay --loop/--session/--probe` (issue 18): the forecast in the text, the JSON and pictures."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kalloc.cli import main
from kalloc.replay.trace import FREE, Op, dumps


def _cliff_file(tmp_path):
    n = 300  # 16-page objects: more than the 16 MiB board holds; then holes every other one
    ops = [Op("a", i, 16 << 12, api="malloc", tag="textures") for i in range(n)]
    ops += [Op(FREE, i) for i in range(0, n, 2)]
    p = tmp_path / "cliff.trace"
    p.write_text(dumps(ops))
    return p


def test_loop_and_probe_json_and_text(tmp_path):
    t = _cliff_file(tmp_path)
    r = CliRunner().invoke(main, ["replay", str(t), "--heap", "slab", "--loop", "2", "--probe",
                                  "1MiB,64KiB@dma", "--json", str(tmp_path / "o.json")])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["options"]["loop"] == 2 and doc["options"]["probe"] == "1MiB,64KiB@dma"
    (one,) = doc["replays"]
    fc = one["forecast"]
    assert fc["loop"] == 2 and fc["steps"] == 2 * 450 and [p["step"] for p in fc["phases"]] == [0, 450]
    s = fc["samples"][-1]
    assert {"step", "committed_bytes", "payload_bytes", "zones"} <= set(s)
    assert len(s["zones"]["Normal"]["fragmentation_index"]) == 11
    big, dma = fc["probes"]
    assert big["cliff_step"] is not None and big["at_cliff"]["objects_by_tag"] == {
        "textures": big["at_cliff"]["objects_total"]}
    assert dma["zone"] == "DMA"
    assert "fragmentation cliff at step" in r.output and "tags: textures" in r.output


def test_no_forecast_no_new_keys(tmp_path):
    t = _cliff_file(tmp_path)
    r = CliRunner().invoke(main, ["replay", str(t), "--heap", "slab", "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert "forecast" not in doc["replays"][0] and "loop" not in doc["options"]


def test_session_and_plot(tmp_path):
    _cliff_file(tmp_path)
    (tmp_path / "s.toml").write_text('rounds = 2\n[[phase]]\nname = "level"\ntrace = "cliff.trace"\n'
                                     '[[phase]]\nname = "unload"\nfree = "level"\n')  # fmt: skip
    r = CliRunner().invoke(main, ["replay", "--session", str(tmp_path / "s.toml"), "--heap", "slab",
                                  "--probe", "1MiB", "--plot", str(tmp_path / "png"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert "s-slab-forecast.png" in names and "s-slab-cliff1.png" in names


def test_bad_probe_and_session_usage(tmp_path):
    t = _cliff_file(tmp_path)
    r = CliRunner().invoke(main, ["replay", str(t), "--probe", "8MiB"])
    assert r.exit_code == 2 and "largest block" in r.output
    r = CliRunner().invoke(main, ["replay", str(t), "--session", str(t)])
    assert r.exit_code == 2
    (tmp_path / "bad.toml").write_text("rounds = 'x'\n")
    r = CliRunner().invoke(main, ["replay", "--session", str(tmp_path / "bad.toml")])
    assert r.exit_code == 3 and "rounds" in r.output and "Traceback" not in r.output


def test_replay_reads_tags_and_checks_budgets(tmp_path):
    t = tmp_path / "rec.trace"
    t.write_text("# kalloc trace v1\na 0 1000 malloc @audio\na 1 3000 kmalloc @audio\na 2 50\n"
                 "r 0 2000 realloc\nf 1\na 3 4000 @net\n")  # fmt: skip
    (tmp_path / "b.toml").write_text('audio = 3500\nnet = "4KiB"\nspare = 0.5\n')
    r = CliRunner().invoke(main, ["replay", str(t), "--heap", "slab", "--budgets", str(tmp_path / "b.toml"),
                                  "--json", str(tmp_path / "o.json"),
                                  "--plot", str(tmp_path / "png")])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["options"]["budgets"] == "b.toml"
    rows = {row["tag"]: row for row in doc["replays"][0]["tags"]}
    assert list(rows) == ["audio", "net", "spare", "untagged"]
    audio = rows["audio"]  # 1000 + 3000, then the realloc keeps its tag: 2000 + 3000 = 5000 at step 3
    assert audio["high_water_bytes"] == 5000 and audio["high_water_step"] == 3 and audio["live_bytes"] == 2000
    assert audio["over_budget"] == [{"step": 1, "id": 1, "size": 3000, "live_bytes": 4000}]
    assert audio["headroom_bytes"] == -1500
    assert rows["net"]["headroom_bytes"] == 96 and rows["net"]["over_budget"] == []
    assert rows["spare"]["budget_bytes"] == 8 << 20 and rows["spare"]["high_water_step"] is None
    assert rows["untagged"]["high_water_bytes"] == 50
    assert "tag audio" in r.output and "over budget first at step 1" in r.output
    assert (tmp_path / "png" / "rec-slab-tags.png").stat().st_size > 0  # stacked by tag


def test_tag_series_adds_up_to_the_payload():
    from kalloc.replay.budgets import tag_series
    from kalloc.replay.trace import parse

    tr = parse("# kalloc trace v1\na 0 100 @a\na 1 50\nr 0 300\na 2 7 @b\nf 1\n", "t")
    steps, series = tag_series(tr)
    assert steps == [0, 1, 2, 3, 4]
    assert series == {"a": [100, 100, 300, 300, 300], "untagged": [0, 50, 50, 50, 0], "b": [0, 0, 0, 7, 7]}


def test_replay_without_tags_or_budgets_has_no_tags_key(tmp_path):
    t = tmp_path / "plain.trace"
    t.write_text("# kalloc trace v1\na 0 10\nf 0\n")
    r = CliRunner().invoke(main, ["replay", str(t), "--json", "-", "-q"])
    assert r.exit_code == 0 and "tags" not in json.loads(r.stdout)["replays"][0]
    (tmp_path / "bad.toml").write_text("audio = true\n")
    r = CliRunner().invoke(main, ["replay", str(t), "--budgets", str(tmp_path / "bad.toml")])
    assert r.exit_code == 3 and "audio" in r.output and "Traceback" not in r.output
