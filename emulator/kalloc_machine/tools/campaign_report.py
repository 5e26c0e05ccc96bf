"""A campaign's results: the JSON document (`kalloc campaign --json`) and the summary table.

`summary(...)` builds the JSON document (docs/user-guide.md, *Campaigns*): the sweep, the
baseline of each firmware, how many runs were planned and done, and every signature with
its run count, its smallest reproducer and that reproducer's full report. `render()`
prints the same on a console (kalloc_machine.report.console): a rich table, one row per
signature, then one `kalloc run …` reproducer line per signature. `markdown()` and
`html()` are the report to attach to CI (`--report FILE`): the same facts, and for each
bug its first error's message and backtrace.

Invariants:
 1. The JSON holds no wall-clock time: the same campaign gives the same bytes whatever
    the number of workers (a wall-clock `--budget` that cut the campaign short aside:
    `complete` is then false and `runs.done` says how far it got).
 2. Signatures keep the campaign's order (campaign.Campaign.found: first run in plan order).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from kalloc_machine.report.symbols import format_frame
from kalloc_machine.session import VERSION
from kalloc_machine.tools.campaign import Found, Requests, Sweep, top_frames
from kalloc_machine.tools.explore import Baseline


@dataclass(slots=True)
class Target:
    """One firmware of a campaign: its name as given, its baseline, its requests, its planned runs."""

    firmware: str
    clean: Baseline
    requests: Requests
    runs: int = 0
    task_allocations: int | None = None  # --irq-allocs: its points (allocations from task context, irqs on)

    def as_dict(self, frames: int) -> dict[str, Any]:
        report = self.clean.outcome.report
        errors = [{"kind": e["kind"], "frames": list(top_frames(e, frames))}
                  for e in report["errors"] if e.get("severity") == "error"]  # fmt: skip
        return {
            "firmware": self.firmware,
            "baseline": {
                "exit_code": report["exit_code"],
                "end": report["end"],
                "instructions": report["instructions"],
                "allocation_requests": self.requests.count,
                "allocation_sites": len(self.requests.first_of_each_site()),
                "errors": errors,
                **({} if self.task_allocations is None else {"task_allocations": self.task_allocations}),
            },
            "runs": self.runs,
        }


def summary(sweep: Sweep, targets: Sequence[Target], found: Sequence[Found], planned: int, done: int,
            buggy: int, complete: bool) -> dict[str, Any]:  # fmt: skip
    """The JSON document of a campaign (module docstring)."""
    return {
        "kalloc_version": VERSION,
        "sweep": dataclasses.asdict(sweep),
        "firmware": [t.as_dict(sweep.frames) for t in targets],
        "runs": {"planned": planned, "done": done, "with_bugs": buggy},
        "complete": complete,
        "bugs": [_bug(f) for f in found],
    }


def _bug(found: Found) -> dict[str, Any]:
    sig = found.signature
    return {
        "firmware": sig.firmware,
        "kind": sig.kind,
        "frames": list(sig.frames),
        "injected_site": sig.injected_site,
        "runs": found.runs,
        "dimension": found.job.dimension,
        "reproducer": {"args": found.args(), "command": found.command(), "reproduced": found.reproduced},
        "found_by": found.found_by or found.args(),
        "report": found.report,
    }


_CHECKED = {True: "", False: "  (did not reproduce)", None: "  (not checked)"}


def render(out: Console, doc: dict[str, Any]) -> None:
    """The summary on a console: a headline, the table of signatures, the reproducer lines."""
    runs, bugs = doc["runs"], doc["bugs"]
    cut = "" if doc["complete"] else f" (stopped after {runs['done']} of {runs['planned']} runs)"
    out.print(f"campaign: {len(doc['firmware'])} firmware, {runs['done']} runs, {len(bugs)} distinct bug(s) "
              f"in {runs['with_bugs']} run(s){cut}", markup=False)  # fmt: skip
    for t in doc["firmware"]:
        base = t["baseline"]
        known = ", ".join(sorted({e["kind"] for e in base["errors"]}))
        note = f"; its own errors are not counted as bugs: {known}" if known else ""
        out.print(f"baseline {t['firmware']}: status {base['exit_code']}, {base['allocation_requests']} "
                  f"allocation request(s) at {base['allocation_sites']} site(s), {base['instructions']} "
                  f"instructions, {t['runs']} run(s) planned{note}", markup=False)  # fmt: skip
    if not bugs:
        out.print("no bug found", style="bold green")
        return
    table = Table(title=None, show_lines=False)
    for column in ("#", "kind", "where", "injected failure in", "runs", "firmware"):
        table.add_column(column, justify="right" if column in ("#", "runs") else "left")
    for i, bug in enumerate(bugs, 1):
        table.add_row(str(i), bug["kind"], " < ".join(bug["frames"]), bug["injected_site"] or "-",
                      str(bug["runs"]), bug["firmware"], style="red")  # fmt: skip
    out.print(table)
    for i, bug in enumerate(bugs, 1):
        check = _CHECKED[bug["reproducer"]["reproduced"]]
        out.print(f"#{i} {bug['reproducer']['command']}{check}", markup=False, soft_wrap=True)


def _details(bug: dict[str, Any]) -> tuple[str, list[str]]:
    """The reproducer's first error of the bug's kind: its message and backtrace lines."""
    report = bug.get("report") or {}
    entry = next((e for e in report.get("errors", []) if e["kind"] == bug["kind"]), None)
    if entry is None:
        return "", []
    trace = entry.get("backtrace") or (entry.get("alloc_site") or {}).get("backtrace") or []
    return entry.get("message", ""), [format_frame(f) for f in trace]


def markdown(doc: dict[str, Any]) -> str:
    """The campaign as Markdown (`--report FILE.md`): headline, baselines, table, each bug's details."""
    runs, bugs = doc["runs"], doc["bugs"]
    cut = "" if doc["complete"] else f" (stopped after {runs['done']} of {runs['planned']} runs)"
    out = [f"# kalloc campaign: {len(bugs)} distinct bug(s)", "",
           f"{len(doc['firmware'])} firmware, {runs['done']} runs, {runs['with_bugs']} with bugs{cut}.", "",
           "| firmware | status | allocation requests | sites | runs |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for t in doc["firmware"]:
        b = t["baseline"]
        out.append(f"| `{t['firmware']}` | {b['exit_code']} | {b['allocation_requests']} | "
                   f"{b['allocation_sites']} | {t['runs']} |")  # fmt: skip
    if not bugs:
        return "\n".join([*out, "", "No bug found.", ""])
    out += ["", "| # | kind | where | injected failure in | runs | firmware |", "|---:|---|---|---|---:|---|"]
    for i, bug in enumerate(bugs, 1):
        out.append(f"| {i} | {bug['kind']} | {' < '.join(bug['frames'])} | {bug['injected_site'] or '-'} | "
                   f"{bug['runs']} | `{bug['firmware']}` |")  # fmt: skip
    for i, bug in enumerate(bugs, 1):
        message, frames = _details(bug)
        check = _CHECKED[bug["reproducer"]["reproduced"]].strip()
        out += ["", f"## {i}. {bug['kind']} in {bug['frames'][0]}", "", "```sh",
                bug["reproducer"]["command"] + (f"  # {check}" if check else ""), "```", "", message, "",
                *(f"    {line}" for line in frames)]  # fmt: skip
    return "\n".join([*out, ""])


def html(doc: dict[str, Any]) -> str:
    """The campaign as a standalone HTML page (`--report FILE.html`): the terminal's table and details."""
    out = Console(record=True, width=160, file=io.StringIO(), color_system="standard", highlight=False)
    render(out, doc)
    for i, bug in enumerate(doc["bugs"], 1):
        message, frames = _details(bug)
        out.print(f"\n#{i} {message}", markup=False, style="bold")
        for line in frames:
            out.print(f"    {line}", markup=False)
    return out.export_html(inline_styles=True)
