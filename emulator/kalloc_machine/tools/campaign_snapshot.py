"""Campaign runs restored from a snapshot of the booted machine instead of booted, where that is exact.

A campaign runs one firmware hundreds of times with options that differ only in what
they perturb: the allocation requests that fail (`--fail-nth` and its `--fail-*`
filters) and the times the test line is raised (`--irq-at`). Everything before the
first perturbation is the same in every run, so each process boots the firmware once
per *boot key* (the options without those fields), runs it to `main` (a harness break:
kalloc_machine.tools.harness), takes a snapshot (kalloc_machine.snapshot), and for each
job restores it, installs the job's perturbation and runs to the end:

    the fault injector     faultinject.install with the job's FailConfig, as Session does
                           (its request count starts at 0: no allocation request ran yet)
    the test-line injector an IrqInjector with the job's times, set as the machine's
                           `injector` and added last to the run loop's timed devices, as
                           Machine and RunLoop place it when built with `irq_at`

`restored(job)` returns None when this is not exact, and the caller boots instead:
  - a random schedule (`--irq-every`, `--fail-prob`: the seeds dimension), or a seed,
    sanitizer, board ... other than a cached boot's (a new boot key boots once more);
  - an `--irq-at` time at or before the snapshot's instruction count;
  - a firmware that made an allocation request before `main`, or that has no `main`
    or never reaches it (its boot key is then remembered as not restorable).

Invariants:
 1. Exact: a restored job's report equals a booted one's but for HOST_COUNTERS (Unicorn's
    TLB fills; harness invariant 1), so its bug signatures and exit status are the same
    (tests/cli/test_campaign_snapshot.py compares whole campaigns byte for byte).
 2. At most CACHED boots per process (each holds the board's RAM twice), least recently
    used dropped first.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

from kalloc.failslab import FailConfig
from kalloc_machine.bridge import faultinject
from kalloc_machine.devices import IrqInjector
from kalloc_machine.session import RunOptions, RunOutcome
from kalloc_machine.snapshot import Snapshot
from kalloc_machine.tools.harness import StopError, Target

SNAPSHOT_AT = "main"
CACHED = 2
# The services fault injection intercepts (bridge/faultinject.py): none may run before the snapshot.
ALLOCATION_SERVICES = frozenset({
    "ALLOC_PAGES", "ALLOC_PAGES_EXACT", "CACHE_ALLOC", "KMALLOC", "KREALLOC", "KCALLOC", "MALLOC", "CALLOC",
    "REALLOC", "ALIGNED_ALLOC", "DMA_ALLOC_COHERENT", "DMA_POOL_ALLOC",
})  # fmt: skip
_PERTURBATIONS: dict[str, Any] = {
    "fail_nth": (), "fail_site": None, "fail_context": "any", "fail_cache": None, "irq_at": (),
}  # fmt: skip


@dataclasses.dataclass(slots=True)
class Booted:
    """One boot key's Target, its snapshot at SNAPSHOT_AT and the instruction count there."""

    target: Target
    snapshot: Snapshot
    at: int


_booted: OrderedDict[tuple[Any, ...], Booted | None] = OrderedDict()  # None: this boot key cannot restore
stats = {"boots": 0, "restores": 0}  # this process's, for the bench and the tests


def boot_key(options: RunOptions) -> tuple[Any, ...]:
    """The options a snapshot depends on: all but the perturbations installed after the restore."""
    return dataclasses.astuple(dataclasses.replace(options, timeout_s=0.0, **_PERTURBATIONS))


def _boot(options: RunOptions) -> Booted | None:
    base = dataclasses.replace(options, **_PERTURBATIONS)
    target = Target(base)
    stats["boots"] += 1
    if target.firmware.symbol_addr(SNAPSHOT_AT) is None:
        return None
    try:
        stop = target.run_to(SNAPSHOT_AT)
    except StopError:
        return None
    if ALLOCATION_SERVICES & target.session.bridge.call_counts().keys():
        return None  # a request before main: the restored fault injector would miscount
    return Booted(target, target.snapshot(), stop.instructions)


def _cached(options: RunOptions) -> Booted | None:
    key = boot_key(options)
    if key in _booted:
        _booted.move_to_end(key)
        return _booted[key]
    booted = _booted[key] = _boot(options)
    while len(_booted) > CACHED:
        _booted.popitem(last=False)
    return booted


def forget() -> None:
    """Drop this process's boots and snapshots (the bench: each sample pays its own boot)."""
    _booted.clear()


def restorable(options: RunOptions) -> bool:
    """Could a job with these options be restored at all (no random schedule)?"""
    return not (options.irq_every or options.fail_prob)


def restored(options: RunOptions) -> RunOutcome | None:
    """The run of `options` from this process's snapshot of its boot; None when not exact (module doc)."""
    if not restorable(options):
        return None
    booted = _cached(options)
    if booted is None or any(t <= booted.at for t in options.irq_at):
        return None
    target = booted.target
    target.restore(booted.snapshot)
    stats["restores"] += 1
    _perturb(target, options)
    return target.finish()


def _perturb(target: Target, o: RunOptions) -> None:
    """Install `o`'s fault injector and test-line times in the restored machine, as a boot with `o` would."""
    session, machine = target.session, target.machine
    session.options = target.options = o
    config = FailConfig(nth=o.fail_nth, probability=o.fail_prob, site=o.fail_site, context=o.fail_context,
                        cache=o.fail_cache, seed=o.seed)  # fmt: skip
    session.faults = faultinject.install(session.bridge, machine, session.ka, session.firmware, config)
    if o.irq_at:
        line, intc = session.board.test_irq, machine.intc
        assert line is not None and intc is not None  # the campaign's plan checked the board
        machine.injector = IrqInjector(line, intc.raise_line, irq_at=o.irq_at, seed=o.seed)
        machine.loop.add_timed(machine.injector)
