"""`kalloc bench --quick` runs and produces every figure (no timing is asserted: see docs/performance.md)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kalloc.cli import main


def test_bench_quick_produces_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--quick", "--json", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    for needle in ("hypercall floor", "kmalloc+kfree", "kmem_cache_alloc", "alloc_pages", "malloc+realloc",
                   "emulation speed", "poison / off", "kasan", "1024 MiB board", "1 GiB board / 16 MiB",
                   "resident memory", "utilization", "translation", "snapshot restore"):  # fmt: skip
        assert any(needle in name for name in figures), needle
    # ratios to the floor may be n/a in --quick (too few iterations to rise above the noise);
    # these never depend on a difference of two timings:
    for name, f in figures.items():
        if name.startswith("resident memory"):  # two processes' peak RSS, ~0.1 MiB apart: may be <= 0
            assert f["value"] is not None and abs(f["value"]) < 64, name
        elif any(k in name for k in ("boot", "emulation speed", "slowdown", "snapshot")):
            assert f["value"] is not None and f["value"] > 0, name
    assert figures["hypercall floor (empty round trip)"]["unit"] == "µs"
