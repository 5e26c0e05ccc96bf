"""`kalloc run --plot FILE` and the forecast's session pictures (issue 18), from firmware and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kalloc_machine.report.runplot import RunPlot
from kalloc_machine.session import RunOptions, Session

from kalloc.cli import main

pytest.importorskip("matplotlib")

ELF = "firmware/build/tests/tags_vmalloc.elf"


def test_run_plot_samples_tags_and_grids_the_peak_from_firmware():
    s = Session(RunOptions(firmware=ELF))
    plot = RunPlot(s.ka, s.heap, s.vm, s.tags)
    s.run()
    tags = ("textures", "scratch", "net", "untagged")
    highest = {t: max(p[2].get(t, 0) for p in plot.points) for t in tags}
    assert highest == {"textures": 500000, "scratch": 10000, "net": 1500, "untagged": 5000}
    assert plot.points[-1][2]["textures"] == 0  # all freed at the end
    assert plot.peak is not None
    _n, committed, grid = plot.peak
    vm_pages = [p for pfns in grid.areas for p in pfns]
    assert len(grid.areas) >= 2 and len(vm_pages) >= 74  # the textures area (74 pages) at least
    assert {grid.tags[p] for p in vm_pages} <= {"textures", "scratch", "untagged"}
    assert sum(1 for p in vm_pages if grid.tags[p] == "textures") >= 74
    assert all(grid.owner(p) == "vmalloc" for p in vm_pages)
    assert committed >= 500000


def test_run_plot_writes_the_png_and_leaves_the_json_alone(tmp_path):
    png, a, b = tmp_path / "run.png", tmp_path / "a.json", tmp_path / "b.json"
    r = CliRunner().invoke(main, ["run", ELF, "-q", "--json", str(a), "--plot", str(png)])
    assert r.exit_code == 0 and f"wrote {png}" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    CliRunner().invoke(main, ["run", ELF, "-q", "--json", str(b)])
    assert json.loads(a.read_text()) == json.loads(b.read_text())


def test_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    from kalloc.replay import plot

    def missing():  # type: ignore[no-untyped-def]
        raise plot.PlotUnavailable(f"--plot needs matplotlib: {plot.INSTALL_HINT}")

    monkeypatch.setattr(plot, "require", missing)
    r = CliRunner().invoke(main, ["run", ELF, "--plot", str(tmp_path / "x.png")])
    assert r.exit_code == 3
    assert r.output.strip() == "kalloc: error: --plot needs matplotlib: pip install 'kalloc[plot]'"


def test_a_forecast_plot_has_the_session_animation_with_the_cliff(tmp_path):
    from PIL import Image

    out = tmp_path / "png"
    r = CliRunner().invoke(main, ["replay", "tests/data/antifrag/levels.trace", "--board",
                                  "tests/data/antifrag/onemib.toml", "--heap", "slab", "--probe", "128KiB",
                                  "--plot", str(out), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    with Image.open(out / "levels-slab-session.gif") as im:
        assert im.n_frames == 24 + 1 + 1  # every 32nd of 768 steps, the last, the cliff at step 166
    assert (out / "levels-slab-session.png").stat().st_size > 0
    assert (out / "levels-slab-cliff1.png").stat().st_size > 0
