"""The pytest face of campaigns: `pytest --kalloc-campaign=fail-each` reruns each kalloc test under a sweep.

A test that used the plugin's `kalloc_target` / `kalloc_run` and passed is run again, once
per point of the sweep, with that point's perturbation applied to every Target it makes
(the pytest plugin's factory reads `OVERRIDE` from the test's stash):

    fail-each  allocation request N failing (`--kalloc-fail-nth N`), for N = 1, 2, ... until a
               rerun in which no Target reached its Nth request (SQLite's way: no count first);
    irq        the test line raised once at each of K instruction counts spread over the test's
               longest Target run (`--kalloc-irq-at T`; K = --kalloc-campaign-points);
    seeds      the --kalloc-irq-every schedule under seeds 0..S-1 (`--kalloc-seed S`;
               S = --kalloc-campaign-seeds).

A *bug* is what `kalloc campaign` calls one (kalloc_machine.tools.campaign `bugs`): an error in
a rerun's report whose kind and top frames the test's own run did not have. The test then
fails with each signature once (kind, where, the injected failure's site, how many reruns hit
it) and its reproducer, the first rerun that hit it as a pytest line:
`pytest 'tests/test_x.py::test_y' --kalloc-fail-nth 4`.

Invariants:
 1. The test's own run decides as without the option; the sweep runs only after it passed,
    and never when the test made no Target (it does not use kalloc).
 2. A rerun's own outcome (its assertions failing under an injected failure, a StopError) is not
    judged: only kalloc's reports are. Ctrl-C and pytest.exit still stop the session.
 3. Deterministic: the same reruns in the same order, so the same bugs, counts and reproducers,
    under pytest-xdist too (each test's sweep runs in the worker that ran the test).
 4. Importing this module imports neither Unicorn nor the machine (the plugin loads it always).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from kalloc_machine.tools.options import RUN_OPTIONS, run_args

if TYPE_CHECKING:
    from kalloc_machine.session import RunOptions
    from kalloc_machine.tools.campaign import Signature
    from kalloc_machine.tools.harness import Target

DIMENSIONS = ("fail-each", "irq", "seeds")
OVERRIDE = pytest.StashKey[dict[str, Any]]()  # the rerun's RunOptions fields, for the kalloc_target factory


def addoption(group: Any) -> None:
    """The campaign's options in the plugin's `kalloc` group."""
    group.addoption("--kalloc-campaign", dest="kalloc_campaign", default="", metavar="DIMENSIONS",
                    help="Rerun each passing kalloc test under these sweeps (comma-separated: fail-each, "
                         "irq, seeds) and fail it with the new kalloc errors, deduplicated.")  # fmt: skip
    group.addoption("--kalloc-campaign-points", dest="kalloc_campaign_points", type=int, default=20,
                    metavar="K", help="irq: the test line at K points of the run (default: %(default)s).")
    group.addoption("--kalloc-campaign-seeds", dest="kalloc_campaign_seeds", type=int, default=10,
                    metavar="S", help="seeds: the --kalloc-irq-every schedule under seeds 0..S-1 "
                                      "(default: %(default)s).")  # fmt: skip
    group.addoption("--kalloc-campaign-max-runs", dest="kalloc_campaign_max_runs", type=int, default=1000,
                    metavar="N", help="At most N reruns per test (default: %(default)s).")  # fmt: skip


def dimensions(config: pytest.Config) -> tuple[str, ...]:
    """The dimensions --kalloc-campaign asks for (a pytest usage error for an unknown one)."""
    words = tuple(w.strip() for w in str(config.getoption("kalloc_campaign") or "").split(",") if w.strip())
    bad = [w for w in words if w not in DIMENSIONS]
    if bad:
        raise pytest.UsageError(f"--kalloc-campaign {','.join(bad)}: not a dimension (choose from "
                                f"{', '.join(DIMENSIONS)})")  # fmt: skip
    if "seeds" in words and not config.getoption("kalloc_irq_every"):
        raise pytest.UsageError("--kalloc-campaign=seeds needs a schedule to seed: --kalloc-irq-every N")
    return words


@dataclass(slots=True)
class _Hit:
    """One signature: its first rerun (the reproducer), how many reruns hit it, its first message."""

    rerun: dict[str, Any]
    message: str
    runs: int = 1


@dataclass(slots=True)
class _Sweep:
    """One test's sweep: its item, the Targets list the factory fills, the baseline's places."""

    item: pytest.Item
    used: list[Target]
    base: RunOptions
    known: frozenset[Any]
    frames: int = 3
    left: int = 1000
    runs: int = 0
    hits: dict[Signature, _Hit] = field(default_factory=dict)

    def rerun(self, override: dict[str, Any]) -> list[Target]:
        """Run the test again with `override` applied to its Targets; the Targets it made (invariant 2)."""
        start = len(self.used)
        self.item.stash[OVERRIDE] = override
        self.left, self.runs = self.left - 1, self.runs + 1
        try:
            self.item.runtest()
        except (KeyboardInterrupt, pytest.exit.Exception):
            raise
        except BaseException:  # pytest.fail / skip are BaseExceptions: not judged (invariant 2)
            pass
        finally:
            del self.item.stash[OVERRIDE]
        made = self.used[start:]
        del self.used[start:]  # reruns' Targets are not the test's own (the plugin's autocheck)
        self._judge(made, override)
        return made

    def _judge(self, made: list[Target], override: dict[str, Any]) -> None:
        from kalloc_machine.tools.campaign import bugs

        for target in made:
            report = target.report(consult=False)
            for sig in bugs(report, str(target.options.firmware), self.known, self.frames):
                hit = self.hits.get(sig)
                if hit is None:
                    entry: dict[str, Any] = next((e for e in report["errors"] if e["kind"] == sig.kind), {})
                    self.hits[sig] = _Hit(override, entry.get("message", ""))
                else:
                    hit.runs += 1


def _fail_each(sweep: _Sweep) -> Iterator[None]:
    n = 1
    while sweep.left > 0:
        made = sweep.rerun({"fail_nth": (n,)})
        yield
        faults = [t.session.faults for t in made]
        if not any(f is not None and f.failslab.eligible >= n for f in faults):
            return  # no Target reached request n: every request has failed once
        n += 1


def _irq(sweep: _Sweep, points: int, end: int) -> Iterator[None]:
    times = sorted({max(1, end * (i + 1) // (points + 1)) for i in range(points)})
    for t in times:
        if sweep.left <= 0:
            return
        sweep.rerun({"irq_at": (t,)})
        yield


def _seeds(sweep: _Sweep, seeds: int) -> Iterator[None]:
    for seed in range(seeds):
        if sweep.left <= 0 or seed == sweep.base.seed:
            continue  # the test's own run had this seed
        sweep.rerun({"seed": seed})
        yield


def run(item: pytest.Item, used: list[Target], base: RunOptions) -> str | None:
    """Sweep `item` (it passed and made the Targets `used`); the failure text, or None (no bug)."""
    from kalloc_machine.tools.campaign import places

    config = item.config
    words = dimensions(config)
    own = list(used)
    if not words or not own or not hasattr(item, "runtest"):
        return None
    reports = [t.report(consult=False) for t in own]
    known = frozenset().union(*(places(r, 3) for r in reports))
    sweep = _Sweep(item, used, base, known, left=config.getoption("kalloc_campaign_max_runs"))
    end = max(r["instructions"] for r in reports)
    plans = {"fail-each": lambda: _fail_each(sweep),
             "irq": lambda: _irq(sweep, config.getoption("kalloc_campaign_points"), end),
             "seeds": lambda: _seeds(sweep, config.getoption("kalloc_campaign_seeds"))}  # fmt: skip
    for word in words:
        for _ in plans[word]():
            pass
    return _failure(item, sweep, words) if sweep.hits else None


def plugin_args(options: RunOptions, fields: Sequence[str]) -> list[str]:
    """`options` as the plugin's --kalloc-* flags (only `fields`, only those not at their defaults)."""
    by_flag = {spec.flag: spec for spec in RUN_OPTIONS.values()}
    args = run_args(dataclasses.replace(options, firmware=None))
    out = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if by_flag[flag].field in fields:
            out += ["--kalloc-" + flag.removeprefix("--"), value]
    return out


def _failure(item: pytest.Item, sweep: _Sweep, words: tuple[str, ...]) -> str:
    from kalloc_machine.tools.pytest_plugin import PLUGIN_OPTIONS

    buggy = sum(h.runs for h in sweep.hits.values())
    lines = [f"kalloc campaign ({', '.join(words)}): {len(sweep.hits)} distinct bug(s) in {sweep.runs} "
             f"rerun(s) of this test ({buggy} hit(s))"]  # fmt: skip
    for i, (sig, hit) in enumerate(sweep.hits.items(), 1):
        options = dataclasses.replace(sweep.base, **hit.rerun)
        command = shlex.join(["pytest", item.nodeid, *plugin_args(options, PLUGIN_OPTIONS)])
        lines += [f"#{i} {sig.describe()}: {hit.runs} rerun(s)", f"   {hit.message}",
                  f"   reproduce: {command}"]  # fmt: skip
    return "\n".join(lines)
