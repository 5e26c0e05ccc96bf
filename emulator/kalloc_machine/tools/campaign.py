"""Campaigns: rerun a firmware under every allocation failure and interrupt point, deduplicate the bugs.

`kalloc campaign` (kalloc.cli.campaign) is the systematic sibling of `kalloc explore`:
SQLite's and Linux's fail_nth way, deterministic. For each firmware:

 1. the *baseline*: one unperturbed run. A counting intercept at the hypercall bridge
    (the fault injector with nothing to fail, `RequestCounter`) numbers the allocation
    requests that match the `--fail-*` filters and notes each one's call site;
 2. the *plan* (`plan()`): one `Job` per run of each dimension swept —
      fail-each   request N failing, for N = 1..requests (`per_site`: only the first
                  request of each distinct call site), and with `depth` 2 also N and N+1;
      irq         the board's test line raised once at each of K instruction counts
                  spread evenly over the baseline's length (`--irq-at`);
      irq-alloc   the test line raised right after each allocation from task context
                  (`irq_allocs`; the exact counts come from campaign_irqalloc), so the
                  handler the firmware registered pre-empts each one once (`--irq-at`);
      seeds       the user's `--irq-every/--irq-jitter/--fail-prob` schedule under
                  seeds 0..S-1;
 3. every job is a `kalloc run` executed by campaign_exec (serially, by a local process
    pool, or on Dask), restored from a snapshot of the booted machine where that is exact
    (campaign_snapshot; `Job.restore`), else a fresh Session; each returns only its bug
    signatures;
 4. `Campaign.add()` folds the results in plan order, `verify()` reruns each signature's
    smallest reproducer from its `kalloc run` arguments and keeps its full report.

A *bug* is an error (severity "error") of a run whose kind and place (`kind` plus the
top frames of its site) the baseline did not have: a leak, a use-after-free, the
cpu-fault of a NULL dereferenced, invalid-context... Its *signature* is that kind and
those frames (function names, not addresses) plus the site of the injected failure
that caused it: for a cpu-fault carrying `after_injected_failure`, that failure (the
NULL dereferenced); otherwise the run's first injected failure; none for interrupt runs.

Invariants:
 1. Deterministic: the plan, the signatures, their order (first run in plan order), their
    counts and reproducers depend only on the firmware, the options and the dimensions,
    never on how many workers ran the jobs or in which order they finished.
 2. A reproducer is `run_args` of its job's options (kalloc_machine.tools.options), and
    `verify()` rebuilt the options from those very arguments to make the report it keeps.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kalloc.failslab import FailConfig
from kalloc_machine.bridge import faultinject
from kalloc_machine.report.symbols import Symbolizer
from kalloc_machine.session import BadInput, RunOptions, Session
from kalloc_machine.tools.campaign_snapshot import restored
from kalloc_machine.tools.explore import Baseline
from kalloc_machine.tools.options import RUN_OPTIONS, run_args

NEVER = 1 << 62  # a request number no run reaches: the counting intercept fails nothing
DIMENSIONS = ("fail-each", "irq", "seeds")

Place = tuple[str, tuple[str, ...]]  # (kind, top frames): what the baseline already had


@dataclass(frozen=True, slots=True)
class Sweep:
    """What a campaign sweeps (module docstring, step 2)."""

    fail_each: bool = False
    per_site: bool = False
    depth: int = 1  # 1: request N fails; 2: also N and N+1
    irq_points: int = 0  # K: the test line at K points of the run
    seeds: int = 0  # S: the schedule options under seeds 0..S-1
    frames: int = 3  # top frames of a site in a signature
    irq_allocs: bool = False  # the test line right after each task allocation (campaign_irqalloc)


@dataclass(frozen=True, slots=True)
class Signature:
    """One bug: its firmware, error kind, top frames, and the injected failure's site (None: none)."""

    firmware: str
    kind: str
    frames: tuple[str, ...]
    injected_site: str | None = None

    def describe(self) -> str:
        where = " < ".join(self.frames) or "?"
        after = f" after an injected failure in {self.injected_site}" if self.injected_site else ""
        return f"{self.kind} in {where}{after}"


@dataclass(frozen=True, slots=True)
class Job:
    """One run of the plan: its number, its options, its dimension, the baseline's places."""

    index: int
    options: RunOptions
    dimension: str
    known: frozenset[Place] = frozenset()
    frames: int = 3
    restore: bool = True  # from a snapshot of the booted machine where exact (campaign_snapshot)

    def size(self) -> tuple[int, int]:
        """Smaller is a better reproducer: fewest perturbations, then earliest in the plan."""
        o = self.options
        return (len(o.fail_nth) + len(o.irq_at) + (1 if o.irq_every or o.fail_prob else 0), self.index)


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job sends back: its number, exit status and the bug signatures of its report."""

    index: int
    exit_status: int
    bugs: tuple[Signature, ...]


@dataclass(slots=True)
class Requests:
    """The baseline's allocation requests matching the filters: how many, and each one's call site."""

    count: int = 0
    sites: list[tuple[int, str]] = field(default_factory=list)  # (site pc, function), one per request

    def first_of_each_site(self) -> list[int]:
        """Request numbers (1-based) of the first request at each distinct call site."""
        seen: set[int] = set()
        out = []
        for n, (pc, _name) in enumerate(self.sites, 1):
            if pc not in seen:
                seen.add(pc)
                out.append(n)
        return out


class RequestCounter:
    """The bridge intercept of a baseline: the fault injector with nothing to fail, noting each site."""

    def __init__(self, session: Session, filters: FailConfig) -> None:
        config = dataclasses.replace(filters, nth=(NEVER,), probability=0.0)
        try:
            injector = faultinject.install(session.bridge, session.machine, session.ka, session.firmware,
                                           config)  # fmt: skip
        except ValueError as exc:  # a --fail-site the ELF lacks
            raise BadInput(str(exc)) from None
        assert injector is not None
        self.session, self.injector = session, injector
        self.handles: list[int] = []
        session.bridge.intercept = self

    def __call__(self, service: int, caller: Any, args: list[int]) -> tuple[int, int] | None:
        before = self.injector.failslab.eligible
        answer = self.injector(service, caller, args)
        if self.injector.failslab.eligible != before:
            self.handles.append(caller.site)
        return answer

    def requests(self) -> Requests:
        sym = Symbolizer(self.session.firmware, self.session.ka.depot)
        sites = []
        for handle in self.handles:
            site = sym.site(handle) or {"pc": 0, "symbol": None}
            sites.append((site["pc"] or 0, site["symbol"] or "??"))
        return Requests(len(sites), sites)


def filters_of(options: RunOptions) -> FailConfig:
    """The --fail-* filters of `options` (what fail-each's request numbers count)."""
    return FailConfig(site=options.fail_site, context=options.fail_context, cache=options.fail_cache)


def unperturbed(options: RunOptions) -> RunOptions:
    """`options` with no injected failure, filter or interrupt schedule: the baseline's."""
    return dataclasses.replace(options, irq_at=(), irq_every=0, irq_jitter=0, fail_nth=(), fail_prob=0.0,
                               fail_site=None, fail_context="any", fail_cache=None)  # fmt: skip


def baseline(options: RunOptions) -> tuple[Baseline, Requests]:
    """The unperturbed run of `options.firmware`, and its allocation requests under the filters."""
    clean = unperturbed(options)
    session = Session(clean)
    counter = RequestCounter(session, filters_of(options))
    outcome = session.run()
    line, intc = session.board.test_irq, session.machine.intc
    handled = line is not None and intc is not None and bool(intc.ever_enabled >> line & 1)
    return Baseline(clean, outcome, line if intc is not None else None, handled), counter.requests()


# -- signatures ------------------------------------------------------------------------------------


def top_frames(entry: dict[str, Any], frames: int) -> tuple[str, ...]:
    """The function names of an error's first `frames` frames (a leak's: its allocation site's)."""
    trace = entry.get("backtrace") or (entry.get("alloc_site") or {}).get("backtrace") or []
    names = [f.get("symbol") or "??" for f in trace[:frames]]
    return tuple(names) if names else (entry.get("symbol") or "??",)


def _injected_site(entry: dict[str, Any], report: dict[str, Any]) -> str | None:
    after = entry.get("after_injected_failure")
    if after and after.get("site"):
        return after["site"].get("symbol") or "??"
    first = next((e for e in report["errors"] if e.get("injected")), None)
    return None if first is None else (first.get("symbol") or "??")


def places(report: dict[str, Any], frames: int) -> frozenset[Place]:
    """The (kind, top frames) of every error of a report."""
    errors = [e for e in report["errors"] if e.get("severity") == "error"]
    return frozenset((e["kind"], top_frames(e, frames)) for e in errors)


def bugs(report: dict[str, Any], firmware: str, known: frozenset[Place],
         frames: int) -> tuple[Signature, ...]:  # fmt: skip
    """The signatures of a report's errors the baseline did not have, each once, in report order."""
    out: dict[Signature, None] = {}
    for entry in report["errors"]:
        if entry.get("severity") != "error":
            continue
        top = top_frames(entry, frames)
        if (entry["kind"], top) not in known:
            out[Signature(firmware, entry["kind"], top, _injected_site(entry, report))] = None
    return tuple(out)


def run_job(job: Job) -> JobResult:
    """Run one job (restored, or a fresh Session) and keep its bug signatures: the function workers call."""
    outcome = (restored(job.options) if job.restore else None) or Session(job.options).run()
    name = str(job.options.firmware)
    return JobResult(job.index, outcome.exit_status, bugs(outcome.report, name, job.known, job.frames))


# -- the plan --------------------------------------------------------------------------------------


def plan(base: RunOptions, sweep: Sweep, clean: Baseline, requests: Requests, schedule: RunOptions,
         start: int = 0, alloc_times: Sequence[int] = (), restore: bool = True) -> list[Job]:  # fmt: skip
    """The jobs of one firmware, numbered from `start` (module docstring, step 2).

    `base` carries the --fail-* filters (fail-each's runs keep them); `schedule` the
    --irq-every/--irq-jitter/--fail-prob options the seeds dimension runs under;
    `alloc_times` the irq-alloc points (campaign_irqalloc.alloc_times). BadInput when
    interrupts are asked for on a board without a test line.
    """
    known = places(clean.outcome.report, sweep.frames)
    irq = sweep.irq_points or sweep.irq_allocs or (sweep.seeds and schedule.irq_every)
    if irq and clean.test_line is None:
        raise BadInput(f"board {base.board}: no interrupt controller, so no test line to raise "
                       "(--irq-points, --irq-allocs and --irq-every need one)")  # fmt: skip
    options: list[tuple[str, RunOptions]] = []
    if sweep.fail_each:
        firsts = requests.first_of_each_site() if sweep.per_site else range(1, requests.count + 1)
        nths: list[tuple[int, ...]] = [(n,) for n in firsts]
        if sweep.depth >= 2:
            nths += [(n, n + 1) for n in firsts if n < requests.count]
        options += [("fail-each", dataclasses.replace(base, fail_nth=nth)) for nth in nths]
    if sweep.irq_points:
        end = clean.outcome.report["instructions"]
        times = sorted({max(1, end * (i + 1) // (sweep.irq_points + 1)) for i in range(sweep.irq_points)})
        options += [("irq", dataclasses.replace(clean.options, irq_at=(t,))) for t in times]
    if sweep.irq_allocs:
        options += [("irq-alloc", dataclasses.replace(clean.options, irq_at=(t,))) for t in alloc_times]
    for seed in range(sweep.seeds):
        options.append(("seeds", dataclasses.replace(schedule, seed=seed)))
    return [Job(start + i, o, dim, known, sweep.frames, restore) for i, (dim, o) in enumerate(options)]


def schedule_of(options: RunOptions) -> RunOptions:
    """The seeds dimension's options: the baseline's plus the random schedule and filters given."""
    return dataclasses.replace(unperturbed(options), irq_every=options.irq_every,
                               irq_jitter=options.irq_jitter, fail_prob=options.fail_prob,
                               fail_site=options.fail_site,
                               fail_context=options.fail_context, fail_cache=options.fail_cache)  # fmt: skip


# -- the result ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Found:
    """One signature: how many runs hit it, the smallest of them, and (after verify) its report."""

    signature: Signature
    runs: int
    job: Job
    reproduced: bool | None = None
    report: dict[str, Any] | None = None
    found_by: list[str] | None = None  # the seeded run's arguments, when campaign_shrink rewrote `job`

    def args(self) -> list[str]:
        return run_args(self.job.options)

    def command(self) -> str:
        return shlex.join(["kalloc", "run", *self.args()])


@dataclass(slots=True)
class Campaign:
    """The results folded in plan order (invariant 1): signatures, run counts, statuses."""

    jobs: Sequence[Job]
    results: dict[int, JobResult] = field(default_factory=dict)

    def add(self, result: JobResult) -> None:
        self.results[result.index] = result

    def found(self) -> list[Found]:
        """Each signature once, in the order of the first run (in plan order) that hit it."""
        out: dict[Signature, Found] = {}
        for job in self.jobs:
            result = self.results.get(job.index)
            for sig in result.bugs if result is not None else ():
                hit = out.get(sig)
                if hit is None:
                    out[sig] = Found(sig, 1, job)
                    continue
                hit.runs += 1
                if job.size() < hit.job.size():
                    hit.job = job
        return list(out.values())

    def buggy_runs(self) -> int:
        return sum(1 for r in self.results.values() if r.bugs)


def options_from_args(args: Iterable[str]) -> RunOptions:
    """RunOptions from `kalloc run` arguments as run_args writes them (FIRMWARE, then --flag value pairs)."""
    by_flag = {spec.flag: spec for spec in RUN_OPTIONS.values()}
    items = list(args)
    kw: dict[str, Any] = {}
    if items and not items[0].startswith("--"):
        kw["firmware"] = items.pop(0)
    for flag, value in zip(items[::2], items[1::2], strict=True):
        spec = by_flag[flag]
        if spec.multiple:
            kw[spec.field] = (*kw.get(spec.field, ()), value)
        elif spec.parse is not None:
            kw[spec.field] = spec.parse(value)
        else:
            kw[spec.field] = spec.type(value)
    return RunOptions(**kw)


def verify(found: Found, timeout_s: float) -> None:
    """Rerun `found`'s reproducer from its own arguments; keep the report, note whether it reproduced."""
    options = dataclasses.replace(options_from_args(found.args()), timeout_s=timeout_s)
    report = Session(options).run().report
    sig, job = found.signature, found.job
    found.report = report
    found.reproduced = sig in bugs(report, sig.firmware, job.known, job.frames)
