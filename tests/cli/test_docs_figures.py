"""The figures the docs quote, checked against the commands that produce them.

A figure in a guide that no test recomputes drifts: this file recomputes the cheap
ones (the utilization table's small traces, the tiny board's reserve, the plot's
order colours, the command table, the README's excerpts, the explore transcript)
and compares them with what the docs say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc import Kalloc, gfp
from kalloc.cli import main
from kalloc.replay import shipped_traces

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HEAPS = ("kmalloc", "slab", "firstfit", "arena", "segfit", "tlsf")
QUICK_TRACES = ("cpp-demangle.trace", "ls.trace", "grep-random-data.trace", "coalesce.rep", "find.trace")


def _utilization_table() -> dict[str, dict[str, str]]:
    """docs/performance.md's utilization table: trace -> heap -> "87.6%"."""
    rows = {}
    text = (DOCS / "performance.md").read_text()
    section = text[text.index("## Heap utilization") :]
    section = section[: section.find("\n## ", 1)]  # other sections' tables may list the same traces
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 + len(HEAPS) and cells[0].endswith((".rep", ".trace")):
            rows[cells[0]] = dict(zip(HEAPS, cells[3:], strict=True))
    return rows


def test_utilization_table_matches_the_replay_of_the_small_traces():
    table = _utilization_table()
    paths = {p.name: p for p in shipped_traces()}
    assert set(table) == set(paths), "the table lists every shipped trace, and only those"
    args = ["replay", *(str(paths[t]) for t in QUICK_TRACES), "--heap", "all", "--json", "-", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output[-2000:]
    for r in json.loads(result.stdout)["replays"]:
        quoted = table[Path(r["trace"]).name][r["heap"]]
        assert quoted == f"{r['utilization']:.1%}", (r["trace"], r["heap"])


def test_teaching_note_quotes_the_coalesce_figures():
    table = _utilization_table()["coalesce.rep"]
    note = (DOCS / "teaching.md").read_text()
    m = re.search(r"`firstfit` reaches about (\d+)% utilization against (\d+)% for the kmalloc", note)
    assert m, "teaching session 5's instructor note quotes firstfit vs kmalloc on coalesce.rep"
    assert f"{m[1]}" == table["firstfit"].split(".")[0] and f"{m[2]}" == table["kmalloc"].split(".")[0]


def test_tiny_board_reserve_is_the_one_allocator_md_states():
    result = CliRunner().invoke(main, ["run", "--board", "tiny", "--json", "-", "-q"])
    report = json.loads(result.stdout[result.stdout.index("{"):])
    kib = report["allocator"]["config"]["min_free_kbytes"]
    text = (DOCS / "allocator.md").read_text()
    m = re.search(r"so its\s+reserve is (\d+) KiB", text)
    assert m and int(m[1]) == kib


def test_a_failure_below_the_watermark_says_so():
    """Its counterpart, a fragmentation failure, is teaching session 5's test (tests/cli/test_teaching.py)."""
    ka = Kalloc.standalone(size=1 << 20, dma_size=256 << 10)
    while ka.alloc_pages(gfp.GFP_KERNEL | gfp.NOWARN, 0) is not None:
        pass
    assert ka.alloc_pages(gfp.GFP_KERNEL, 0) is None
    assert "too few free pages above the min watermark" in str(ka.reports[-1])


def test_fragmentation_plot_gives_every_order_its_own_colour(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from kalloc.replay import plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    trace = str(next(p for p in shipped_traces() if p.name == "coalesce.rep"))
    result = CliRunner().invoke(main, ["replay", trace, "--heap", "firstfit", "--plot", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output[-2000:]
    frag = next(f for f in figures if len(f.axes) == 3)
    layers = frag.axes[1].collections
    assert len(layers) == 11  # orders 0..10 on the default board
    colours = {tuple(round(c, 3) for c in layer.get_facecolor()[0]) for layer in layers}
    assert len(colours) == len(layers)
    assert plot.order_colours(11)[0] != plot.order_colours(11)[10]


def test_command_table_lists_every_command():
    guide = (DOCS / "user-guide.md").read_text()
    listed = set(re.findall(r"^\| `kalloc (\w+)", guide, re.M))
    assert set(main.commands) <= listed, set(main.commands) - listed


def _excerpts() -> list[tuple[str, list[str]]]:
    """The report excerpts of README.md and the user guide: (command, lines), "…" or "..."
    marking what an excerpt leaves out; blocks that show one `kalloc run` and its output."""
    blocks: list[list[str]] = []
    for doc in (ROOT / "README.md", DOCS / "user-guide.md"):
        inside, bare, current = False, False, []
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                if inside and bare:
                    blocks.append(current)
                inside, bare, current = not inside, line == "```", []
            elif inside:
                current.append(line)
    out = []
    for lines in blocks:
        commands = [ln for ln in lines if ln.startswith("$ ")]
        if lines and lines[0].startswith("$ kalloc run ") and len(commands) == 1 and ".toml" not in lines[0]:
            out.append((lines[0][2:], lines[1:]))
        elif lines and lines[0].startswith("── kalloc report: demo.elf"):
            out.append(("kalloc run", lines))
    return out


@pytest.mark.parametrize(("command", "lines"), _excerpts(), ids=[c for c, _ in _excerpts()])
def test_readme_excerpts_are_what_the_command_prints(command, lines):
    """Every line of an excerpt is a line of the piped output, in order (wall time aside)."""
    argv = command.split()[1:]
    result = CliRunner().invoke(main, [argv[0], *(str(ROOT / a) if a.startswith("firmware/") else a
                                                    for a in argv[1:])])  # fmt: skip
    seconds = re.compile(r"\d+\.\d\d s ·")
    printed = [seconds.sub("s ·", ln.rstrip()) for ln in result.output.splitlines()]
    at = 0
    for line in lines:
        if line.strip() in ("…", "...", ""):
            continue
        want = seconds.sub("s ·", line.rstrip())
        assert want in printed[at:], f"README line not printed (in order) by `{command}`: {line!r}"
        at = printed.index(want, at) + 1


def _explore_examples() -> list[tuple[str, list[str]]]:
    """The user guide's `kalloc explore` transcript: (command, the lines it prints)."""
    guide = (DOCS / "user-guide.md").read_text()
    block = guide[guide.index("$ kalloc explore firmware/build/tests/irq_race.elf"):]
    block = block[: block.index("```")]
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ kalloc "):
            out.append((line[2:], []))
        elif line:
            out[-1][1].append(line)
    return out


@pytest.mark.parametrize(("command", "lines"), _explore_examples(), ids=[c for c, _ in _explore_examples()])
def test_explore_transcript_is_what_explore_prints(command, lines):
    """Explore is deterministic (Hypothesis derandomized), so the guide's transcript is exact."""
    pytest.importorskip("hypothesis")
    argv = [str(ROOT / a) if a.startswith("firmware/") else a for a in command.split()[1:]]
    result = CliRunner().invoke(main, argv)
    printed = [ln.replace(str(ROOT) + "/", "") for ln in result.stdout.splitlines()]
    assert printed[-len(lines):] == lines
