"""`kalloc bench --only campaign`: what a campaign's runs cost, measured side by side.

The workload is the demo-sized campaign of the user guide: firmware/tests/campaign_demo.c
under `--fail-each --depth 2 --irq-points 40` (87 runs). Only the run phase is timed
(campaign_exec.execute over the planned jobs: what `kalloc campaign` spends between its
baseline and its reproducer checks), so the figures are runs per second:

  runs/s, 1 local worker           the jobs in this process, one after another
  runs/s, 2 local workers          the process pool (its fork server's start included)
  runs/s, 2-worker LocalCluster    --dask (the cluster's start included); n/a without Dask

and, per run, a campaign run against a plain `kalloc run` of the same options (a Session
built and run, its report made), with the snapshot restore (campaign_snapshot) and with
a boot (`--no-snapshot`).

Invariants:
 1. Medians over `reps` interleaved rounds (tools/benchkit.py `interleaved`); each round
    forgets this process's snapshots first, so the boot they cost is in every sample.
 2. Nothing here asserts: the figures are reported next to no target.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable, Sequence

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools import campaign as cp
from kalloc_machine.tools import campaign_snapshot
from kalloc_machine.tools.benchkit import BenchSettings, Figure, interleaved
from kalloc_machine.tools.campaign_exec import execute

DEMO_SWEEP = cp.Sweep(fail_each=True, depth=2, irq_points=40)


def demo_jobs(board: str, quick: bool) -> list[cp.Job]:
    """The demo campaign's plan (87 runs; the first 20 in --quick)."""
    options = RunOptions(firmware=str(prebuilt("tests/campaign_demo")), board=board)
    clean, requests = cp.baseline(options)
    jobs = cp.plan(options, DEMO_SWEEP, clean, requests, cp.schedule_of(options))
    return jobs[:20] if quick else jobs


def _runs_per_second(jobs: Sequence[cp.Job], **how: object) -> Callable[[], float]:
    def sample() -> float:
        campaign_snapshot.forget()
        start = time.perf_counter()
        execute(jobs, lambda _result: None, **how)  # type: ignore[arg-type]
        return len(jobs) / (time.perf_counter() - start)

    return sample


def _per_run(jobs: Sequence[cp.Job], run: Callable[[cp.Job], object]) -> Callable[[], float]:
    def sample() -> float:
        campaign_snapshot.forget()
        start = time.perf_counter()
        for job in jobs:
            run(job)
        return (time.perf_counter() - start) / len(jobs) * 1e3

    return sample


def bench_campaign(s: BenchSettings, tick: Callable[[], None]) -> list[Figure]:
    quick = s.iters[0] < 100
    jobs = demo_jobs(s.board, quick)
    booted = [dataclasses.replace(j, restore=False) for j in jobs]
    samplers = {
        "1": _runs_per_second(jobs, workers=1),
        "2": _runs_per_second(jobs, workers=2),
        "plain": _per_run(jobs, lambda j: Session(j.options).run()),
        "restore": _per_run(jobs, cp.run_job),
        "boot": _per_run(booted, cp.run_job),
    }
    dask = importlib.util.find_spec("distributed") is not None
    if dask:
        samplers["dask"] = _runs_per_second(jobs, dask=True, workers=2)
    med = interleaved(samplers, s.reps, tick)
    what = f"campaign_demo, {len(jobs)} runs"
    return [
        Figure(f"campaign runs/s, 1 local worker ({what})", med["1"], "runs/s",
               note="the run phase only: this process, one run after another, snapshots restored"),
        Figure(f"campaign runs/s, 2 local workers ({what})", med["2"], "runs/s",
               note="--workers 2: the pool's fork server start included"),
        Figure(f"campaign runs/s, 2-worker Dask LocalCluster ({what})", med.get("dask"), "runs/s",
               note="--dask --workers 2: the cluster's start included" if dask else "Dask not installed"),
        Figure("plain kalloc run of a campaign job (Session built, run, report)", med["plain"], "ms/run"),
        Figure("campaign run, snapshot restore", med["restore"], "ms/run",
               note=f"{med['restore'] / med['plain']:.2f}x a plain kalloc run"),
        Figure("campaign run, boot (--no-snapshot)", med["boot"], "ms/run",
               note=f"{med['boot'] / med['plain']:.2f}x a plain kalloc run"),
        Figure("campaign run: snapshot restore vs boot", med["boot"] / med["restore"], "× faster"),
    ]  # fmt: skip
