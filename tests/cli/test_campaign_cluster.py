"""Campaigns on Dask (issue 15), the parts CI can always check: the `cluster` extra names Dask, Dask
missing is one line and status 2 even on a machine that has it, and the campaign's own bench part
(`kalloc bench --only campaign`) produces its figures. The LocalCluster campaign itself is
tests/cli/test_campaign.py::test_dask_finds_the_same_signatures_as_the_pool (CI installs the extra)."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import prebuilt

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]
NULL3 = str(prebuilt("tests/campaign_null_third"))
HINT = "kalloc: error: --scheduler/--dask need Dask, which is not installed: pip install 'kalloc[cluster]'"


def test_the_cluster_extra_installs_dask_distributed_and_ci_installs_it():
    """pyproject.toml (the wheel's metadata is made from it; an editable install's may be older)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["cluster"] == ["dask[distributed]>=2024.1"]
    assert "pytest-xdist>=3" in project["optional-dependencies"]["test"]  # the pytest face under -n
    assert "pip install -q '.[test,cluster]'" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("flag", [["--scheduler", "tcp://127.0.0.1:1"], ["--dask"]])
def test_without_dask_one_line_and_status_2_before_any_run(flag, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # `import dask.distributed` fails
    res = CliRunner().invoke(main, ["campaign", NULL3, *flag], catch_exceptions=False)
    assert res.exit_code == 2 and res.stderr == HINT + "\n" and res.stdout == ""


def test_the_bench_measures_the_campaigns_runs(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--only", "campaign", "--quick", "--json", str(out)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    names = ["campaign runs/s, 1 local worker (campaign_demo, 20 runs)",
             "campaign runs/s, 2 local workers (campaign_demo, 20 runs)",
             "plain kalloc run of a campaign job (Session built, run, report)",
             "campaign run, snapshot restore", "campaign run, boot (--no-snapshot)",
             "campaign run: snapshot restore vs boot"]  # fmt: skip
    for name in names:
        assert figures[name]["value"] is not None and figures[name]["value"] > 0, name
    dask = figures["campaign runs/s, 2-worker Dask LocalCluster (campaign_demo, 20 runs)"]
    assert (dask["value"] is None) == (dask["note"] == "Dask not installed")
