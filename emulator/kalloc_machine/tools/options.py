"""The run options, defined once for every front end: `kalloc run`, `kalloc explore`, the pytest plugin.

RUN_OPTIONS holds one `RunOption` per field of `RunOptions` (kalloc_machine.session)
that a user can set: its flag, default, kind of value (a range or a choice),
metavar and help. The front ends adapt this one table:

    kalloc.cli.options      click options (`kalloc run`, and the ones `kalloc explore`
                            shares: board, sanitize)
    tools.pytest_plugin     `--kalloc-board`, `--kalloc-sanitize`, `--kalloc-seed`, `--kalloc-suppress`,
                            `--kalloc-irq-every`, `--kalloc-fail-nth`, `--kalloc-max-errors`
    run_args(options)       back to a `kalloc run` command line (explore's reproducer)

A list value ("N,N,...") is text on the command line and a tuple of ints in RunOptions:
`parse` turns one into the other and raises ValueError with the message a user reads.

This module imports nothing but the standard library: the pytest plugin loads it in
every pytest session of anyone who installed kalloc.

Invariants:
 1. Each RunOption's default is RunOptions()'s default for its field
    (tests/machine/test_pytest_plugin.py checks it).
 2. `run_args(o)` names only the fields that differ from the defaults, in table
    order (the reproducers explore prints keep that order), and `kalloc run` given
    those arguments builds RunOptions equal to `o` (the wall-clock timeout aside).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def parse_times(value: str) -> tuple[int, ...]:
    """Instruction counts, decimal or 0x, non-negative: "1000, 0x2000" -> (1000, 8192)."""
    try:
        times = tuple(int(v, 0) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"{value!r} is not a comma-separated list of instruction counts") from None
    if any(t < 0 for t in times):
        raise ValueError("instruction counts must be non-negative")
    return times


def parse_counts(value: str) -> tuple[int, ...]:
    """Allocation request numbers, counted from 1: "3,7" -> (3, 7)."""
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a comma-separated list of numbers") from None
    if any(n < 1 for n in counts):
        raise ValueError("requests are counted from 1")
    return counts


@dataclass(frozen=True, slots=True)
class RunOption:
    """How a user sets one RunOptions field (module doc)."""

    field: str  # the RunOptions field
    flag: str  # `kalloc run`'s spelling
    default: Any  # RunOptions()'s default (invariant 1)
    help: str
    type: type = str  # int, float or str (a list value: str, with `parse`)
    low: float | None = None  # the range of an int or float
    high: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    show_default: bool = False
    parse: Callable[[str], tuple[int, ...]] | None = None  # a list value: text -> tuple
    multiple: bool = False  # repeatable (`--suppress A --suppress B`): a tuple of str, default ()


_OPTIONS = (
    RunOption("board", "--board", "default", "Shipped board name or path to a .toml.", show_default=True),
    RunOption("seed", "--seed", 0, "Seed for every random choice.", int, show_default=True),
    RunOption("sanitize", "--sanitize", "poison", "Memory-error detection mode.",
              choices=("poison", "kasan", "off"), show_default=True),
    RunOption("heap", "--heap", "kmalloc", "Policy behind malloc/free (kalloc replay compares them; "
              "docs/allocator.md).", choices=("kmalloc", "slab", "firstfit", "arena"), show_default=True),
    RunOption("quantum", "--quantum", 100_000,
              "Instructions per emulation slice (devices and interrupts are serviced between slices).", int,
              low=100, show_default=True),
    RunOption("max_instructions", "--max-instructions", 500_000_000,
              "Instruction budget; exhausting it ends the run (status 66).", int, low=1, show_default=True),
    RunOption("irq_every", "--irq-every", 0,
              "Raise the board's test interrupt line every N instructions (0: never).", int, low=0,
              show_default=True),
    RunOption("irq_jitter", "--irq-jitter", 0,
              "Add 0..N instructions (drawn from --seed) to each --irq-every time.", int, low=0,
              show_default=True),
    RunOption("quarantine", "--quarantine", None,
              "KASAN quarantine size (default: min(256 KiB, RAM/32)); freed objects wait there before reuse.",
              int, low=0, metavar="BYTES"),
    RunOption("fail_prob", "--fail-prob", 0.0,
              "Fail each matching allocation request with probability P (drawn from --seed).", float, low=0.0,
              high=1.0, metavar="P"),
    RunOption("fail_site", "--fail-site", None, "Inject only into allocations made by this function.",
              metavar="SYMBOL"),
    RunOption("fail_context", "--fail-context", "any", "Inject only into allocations from this context.",
              choices=("task", "irq", "any"), show_default=True),
    RunOption("fail_cache", "--fail-cache", None, "Inject only into this slab cache or DMA pool.",
              metavar="NAME"),
    RunOption("irq_at", "--irq-at", (), "Also raise the test line at these instruction counts.",
              metavar="N,N,...", parse=parse_times),
    RunOption("fail_nth", "--fail-nth", (),
              "Fail these allocation requests (1-based, counting the requests that match the --fail-* "
              "filters).",
              metavar="N,N,...", parse=parse_counts),
    RunOption("max_errors", "--max-errors", 1000,
              "Keep at most N distinct errors; later new ones are only counted (identical errors are "
              "always kept once, with a count).", int, low=1, metavar="N", show_default=True),
    RunOption("timeout_s", "--timeout", 120.0,
              "Wall-clock limit in seconds: the run and the leak scan (status 66).", float, low=0.01,
              show_default=True),
    RunOption("percpu_cache", "--percpu-cache", 0,
              "Per-CPU array caches of N objects per kmalloc class 8..2048 in front of SLUB (Linux's "
              "sheaves; --sanitize off only; 0: plain SLUB).", int, low=0, high=64, metavar="N",
              show_default=True),
    RunOption("fastpath", "--fastpath", "off",
              "Serve per-CPU cache hits of malloc/free/kmalloc/kfree in firmware (RV32, --sanitize off; "
              "implies --percpu-cache 32).", choices=("on", "off"), show_default=True),
    RunOption("suppress", "--suppress", (),
              "Suppressions file (TOML; repeatable): known errors in third-party code left out of the report "
              "and the exit status (docs/user-guide.md, Suppressions).", metavar="FILE", multiple=True),
)  # fmt: skip
RUN_OPTIONS: dict[str, RunOption] = {o.field: o for o in _OPTIONS}


def run_args(options: Any) -> list[str]:
    """The `kalloc run` arguments for a RunOptions (only the fields that differ from the defaults)."""
    out = [options.firmware] if options.firmware else []
    for spec in _OPTIONS:
        value = getattr(options, spec.field)
        if value == spec.default or value is None or spec.field == "timeout_s":  # wall clock: not replayed
            continue
        if spec.multiple:
            out += [arg for v in value for arg in (spec.flag, str(v))]
            continue
        out += [spec.flag, ",".join(map(str, value)) if spec.parse else str(value)]
    return out
