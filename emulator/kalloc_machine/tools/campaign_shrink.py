"""Shrinking a seeded schedule's bug to explicit interrupt times and failing requests.

A bug the seeds dimension found reproduces with `--seed S --irq-every N --irq-jitter J
--fail-prob P`: exact, but it says nothing about *which* interrupt or failure matters.
Its report lists them (`interrupts.injected.times`, the `nth` of each injected `oom`),
so `shrink()` rewrites the run as explicit `--irq-at T,...` and `--fail-nth N,...`
(the same filters kept), checks that it still hits the same signature, then removes
what it can — halves, quarters ... down to single items, as delta debugging does —
keeping each removal that still reproduces, and tries the default seed. The result is
usually one `--irq-at T` or one `--fail-nth N`.

Invariants:
 1. Deterministic: a fixed order of attempts, each a fresh Session, in this process.
 2. A rewrite is kept only when its run hits the very signature (campaign.bugs); when the
    explicit rewrite itself does not reproduce, the seeded run is kept as it was.
 3. At most `max_runs` runs per bug.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.campaign import Found, bugs
from kalloc_machine.tools.options import run_args

Item = tuple[str, int]  # ("irq", time) or ("fail", request number)


def explicit(report: dict[str, Any]) -> list[Item]:
    """The interrupts raised and the requests failed in a run, as items to keep or drop."""
    times = (report["interrupts"].get("injected") or {}).get("times") or []
    nths = [e["nth"] for e in report["errors"] if e.get("injected") and "nth" in e]
    return [("irq", t) for t in times] + [("fail", n) for n in sorted(set(nths))]


def options_of(base: RunOptions, items: list[Item], seed: int) -> RunOptions:
    """`base` without its random schedule, raising and failing exactly `items`."""
    return dataclasses.replace(base, irq_every=0, irq_jitter=0, fail_prob=0.0, seed=seed,
                               irq_at=tuple(sorted(t for k, t in items if k == "irq")),
                               fail_nth=tuple(sorted(n for k, n in items if k == "fail")))  # fmt: skip


class _Attempts:
    """Runs of one shrink, counted, each judged by the signature it must hit."""

    def __init__(self, found: Found, max_runs: int, timeout_s: float) -> None:
        self.found, self.left, self.timeout_s = found, max_runs, timeout_s

    def hits(self, options: RunOptions) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        job = self.found.job
        report = Session(dataclasses.replace(options, timeout_s=self.timeout_s)).run().report
        return self.found.signature in bugs(report, self.found.signature.firmware, job.known, job.frames)


def shrink(found: Found, report: dict[str, Any], max_runs: int = 200, timeout_s: float = 120.0) -> bool:
    """Rewrite a seeds bug's job as its smallest explicit schedule (module docstring); True if rewritten."""
    base = found.job.options
    if not (base.irq_every or base.fail_prob):
        return False
    items, seed = explicit(report), base.seed
    tries = _Attempts(found, max_runs, timeout_s)
    if not tries.hits(options_of(base, items, seed)):
        return False  # invariant 2
    if seed and tries.hits(options_of(base, items, 0)):
        seed = 0
    chunk = max(1, len(items) // 2)
    while items:
        i, removed = 0, False
        while i < len(items):
            rest = items[:i] + items[i + chunk :]
            if tries.hits(options_of(base, rest, seed)):
                items, removed = rest, True
            else:
                i += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(1, chunk // 2)
    found.found_by = run_args(base)
    found.job = dataclasses.replace(found.job, options=options_of(base, items, seed))
    return True
