"""`kalloc lab`: grade a student's allocator (mm_malloc, mm_free, mm_realloc) running in firmware.

    kalloc lab STUDENT.elf [TRACE ...] [--align 8|16] [--heap-max BYTES] [--op-budget N]
               [--mm-check] [--check-every N] [--guard G] [--sanitize kasan] [--uninit]
               [--irq [--seed N] [--irq-period N]] [--board B] [--json FILE] [-q]

STUDENT.elf is a student's file linked into the lab driver
(`make -C "$(kalloc sdk)" LAB=1 APP=/abs/student.c OUT=/abs/student.elf`). Every trace
(malloc-lab, wee_alloc or kalloc format; default: DEFAULT_TRACES of the shipped ones)
is replayed through the student's code on a fresh machine and checked after every
operation (kalloc_machine.tools.lab); the first broken rule stops that trace with a
report: operation, trace line, blocks, the student's function and line. Scores as
kalloc_machine.tools.labscore. `--sanitize=kasan` (an ELF built with KASAN=1) runs compiled
KASAN on the student's heap, `--uninit` adds uninitialised-read hints (warnings, the exit
status does not change), `--irq` the interrupt round. docs/lab.md (the handout),
docs/instructor.md (autograding), docs/teaching.md ("Lab: write your own allocator").

Invariants:
 1. Exit status: 0 every trace correct; 64 a trace broke a rule (alignment, bounds,
    overlap, contents, NULL, mm_check); 65 the student's code crashed (CPU fault, stack
    overflow, panic); 66 an operation spent its instruction budget (infinite loop) —
    when several traces fail, the first failed trace's; 3 an ELF that is no lab
    firmware or an unreadable trace or board; 2 usage.
 2. `--json -` writes only the JSON to stdout (the table and reports go to stderr).
 3. The JSON is a function of (ELF bytes, traces, options): no wall time, no host path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from kalloc_machine.board import load_board
from kalloc_machine.session import EXIT_ERROR, EXIT_FAULT, EXIT_TIMEOUT
from kalloc_machine.tools.lab import LabOptions, NotALabElf, check_elf, run_trace
from kalloc_machine.tools.labscore import document, hint_lines, table, violation_lines
from rich.console import Console

from kalloc.cli.options import (
    color_option,
    console,
    fail,
    json_option,
    quiet_option,
    run_option,
    stderr,
    write_json,
)
from kalloc.cli.progress import steps
from kalloc.replay import TRACES_DIR
from kalloc.replay.trace import TraceError, load

# The shipped traces `kalloc lab` replays when given none: the malloc-lab-style ones and
# the small real-program ones (the large real-program traces are named explicitly).
DEFAULT_TRACES = (
    "binary.rep",
    "coalesce.rep",
    "mixed-sizes.rep",
    "random.rep",
    "realloc.rep",
    "short-lived.rep",
    "cpp-demangle.trace",
    "grep-random-data.trace",
    "ls.trace",
)
STATUS = {"error": EXIT_ERROR, "fault": EXIT_FAULT, "timeout": EXIT_TIMEOUT}


def _bytes(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """--heap-max 4M -> 4194304 (K, M suffixes; a usage error otherwise)."""
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    try:
        n = int(text[:-1] if scale > 1 else text, 0) * scale
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size (e.g. 4M, 512K, 65536)") from None
    if not 4096 <= n <= 1 << 30:
        raise click.BadParameter(f"{value!r}: give between 4K and 1G")
    return n


@click.command("lab")
@click.argument("student", type=click.Path(dir_okay=False))
@click.argument("traces", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--align",
    type=click.Choice(["8", "16"]),
    default="8",
    show_default=True,
    help="Alignment every payload must have.",
)
@click.option(
    "--heap-max",
    default="4M",
    show_default=True,
    callback=_bytes,
    metavar="BYTES",
    help="Largest heap mem_sbrk may grow (reserved from kalloc's page allocator).",
)
@click.option(
    "--op-budget",
    default=20_000_000,
    show_default=True,
    type=click.IntRange(min=1000),
    help="Instructions one operation may take before it counts as an infinite loop.",
)
@click.option("--mm-check", is_flag=True, help="Call the student's mm_check after every operation.")
@click.option(
    "--check-every",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Verify every live payload every N operations (0: the blocks next to each "
    "operation, and all of them at the end).",
)
@click.option(
    "--guard",
    type=click.Choice(["explain", "always", "off"]),
    default="explain",
    show_default=True,
    help="Catch the allocator touching another live payload (a memory hook over the heap): 'explain' "
    "replays a failed trace with it to name the cause; 'always' runs every trace with it (slower: "
    "every heap access calls the hook); 'off' never.",
)
@run_option(
    "sanitize",
    type=click.Choice(["off", "kasan"]),
    default="off",
    help="kasan: compiled KASAN on the student's heap (the ELF built with LAB=1 KASAN=1): an access of "
    "their code inside a live payload is reported at the access.",
)
@click.option(
    "--uninit", is_flag=True, help="Hints (warnings) where the student's code reads heap bytes nothing wrote."
)
@click.option(
    "--irq", is_flag=True, help="The interrupt round: a timer handler allocates and frees while traces run."
)
@run_option("seed", help="Seed of the interrupt round's timer (same seed, same interrupts).")
@click.option(
    "--irq-period",
    default=500,
    show_default=True,
    type=click.IntRange(min=50),
    metavar="N",
    help="Mean instructions between the interrupt round's ticks.",
)
@run_option("board", help="Board the lab firmware runs on.")
@json_option("Write the scores and reports ('-': stdout).")
@quiet_option("No table.")
@color_option()
def lab_cmd(
    student: str,
    traces: tuple[str, ...],
    align: str,
    heap_max: int,
    op_budget: int,
    mm_check: bool,
    check_every: int,
    guard: str,
    sanitize: str,
    uninit: bool,
    irq: bool,
    seed: int,
    irq_period: int,
    board: str,
    json_path: str | None,
    quiet: bool,
    color: bool | None,
) -> None:
    """Grade a student's allocator (STUDENT.elf, built with LAB=1) on TRACEs: correctness and score.

    With no TRACE, a default set of the shipped traces. Exit status: 0 every trace
    correct; 64 a broken rule; 65 a crash; 66 an infinite loop; 3 bad ELF, trace or
    board; 2 usage.
    """
    err = stderr(color)
    paths = list(traces) or [str(TRACES_DIR / name) for name in DEFAULT_TRACES]
    try:
        check_elf(student, sanitize, isa=load_board(board).cpu.isa)  # an ELF for the board's ISA
        label = load_board(board).label
        loaded = [load(p) for p in paths]
    except (NotALabElf, TraceError, ValueError, OSError) as exc:
        fail(exc)
    options = LabOptions(
        board=board,
        align=int(align),
        heap_max=heap_max,
        op_budget=op_budget,
        mm_check=mm_check,
        guard=guard,
        check_all_every=check_every,
        sanitize=sanitize,
        uninit=uninit,
        irq=irq,
        seed=seed,
        irq_period=irq_period,
    )
    runs = []
    with steps("grading", total=len(loaded), color=color) as bar:
        for path, tr in zip(paths, loaded, strict=True):
            bar.doing(tr.name)
            runs.append(run_trace(student, tr, options, path=path))
            bar.done()
    doc = document(Path(student).name, options, runs, label)
    _show(doc, err if json_path == "-" else console(color, terminal_width=120), quiet)
    if json_path:
        write_json(json_path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    failed = [r.status for r in runs if r.violation is not None]
    sys.exit(STATUS[failed[0]] if failed else 0)


def _show(doc: dict[str, Any], con: Console, quiet: bool) -> None:
    """Each trace's hints, interrupt round and violation, one fact per line; then the table."""
    for tr in doc["traces"]:
        lines = hint_lines(tr) + (violation_lines(tr) if tr["violation"] is not None else [])
        for line in lines:
            con.print(line, markup=False, highlight=False)
    if not quiet:
        con.print(table(doc))
