"""The lab handout, the instructor's guide and the teaching guide's lab section quote real output:
every `kalloc lab` command block followed by a text block is run, and the quoted lines must appear
in its output, in order. The scores the teaching guide quotes are recomputed (opt-in: -m slow)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/lab.md", "docs/instructor.md", "docs/teaching.md")
PAIR = re.compile(r"```sh\n(kalloc lab [^\n]*)\n```\n\n```text\n(.*?)\n```", re.S)


def excerpts() -> list[tuple[str, str, list[str]]]:
    out = []
    for doc in DOCS:
        for m in PAIR.finditer((ROOT / doc).read_text()):
            out.append((doc, m.group(1), m.group(2).splitlines()))
    return out


def test_each_doc_has_checked_excerpts():
    found = {doc for doc, _, _ in excerpts()}
    assert found == set(DOCS)
    assert len(excerpts()) >= 7


@pytest.mark.parametrize(("doc", "command", "quoted"), excerpts(), ids=lambda x: str(x)[:60])
def test_quoted_output_is_what_the_command_prints(monkeypatch, doc, command, quoted):
    monkeypatch.chdir(ROOT)
    r = CliRunner().invoke(main, shlex.split(command)[1:])
    assert r.exit_code in (0, 64), r.output
    lines = [ln.rstrip() for ln in (r.stdout + r.stderr).splitlines()]
    at = 0
    for want in quoted:
        want = want.rstrip()
        assert want in lines[at:], f"{doc}: {want!r} not printed (in order) by {command}"
        at = lines.index(want, at) + 1


@pytest.mark.slow
def test_the_teaching_guides_scores_of_the_reference_allocators():
    from kalloc_machine.sdk import sdk_dir
    from kalloc_machine.tools.lab import LabOptions, run_trace
    from kalloc_machine.tools.labscore import document

    from kalloc.cli.lab import DEFAULT_TRACES
    from kalloc.replay import TRACES_DIR
    from kalloc.replay.trace import load

    def grade(name: str) -> dict:
        elf = str(sdk_dir() / "build" / "lab" / f"{name}.elf")
        runs = [
            run_trace(elf, load(TRACES_DIR / t), LabOptions(), path=str(TRACES_DIR / t))
            for t in DEFAULT_TRACES
        ]
        return document(f"{name}.elf", LabOptions(), runs, "default")

    text = (ROOT / "docs/teaching.md").read_text()
    imp, seg = grade("implicit"), grade("segregated")
    per = {t["trace"]: t["instructions_per_op"] for t in imp["traces"]}
    seg_per = {t["trace"]: t["instructions_per_op"] for t in seg["traces"]}
    assert f"scores {imp['total']['score']:.1f}/100" in text
    assert f"mean utilization {imp['total']['utilization']:.1%}" in text
    assert f"{imp['total']['instructions_per_op']:,.0f} instructions per operation overall" in text
    assert (
        f"`realloc.rep`'s {per['realloc.rep']:,.0f}" in text
        and f"alone is {per['coalesce.rep']:,.0f}" in text
    )
    assert (
        f"{seg['total']['score']:.1f}/100 on the default traces, {seg['total']['instructions_per_op']:,.0f}"
        in text
    )
    assert f"`realloc.rep` {seg_per['realloc.rep']:,.0f} instructions per operation against" in text
    assert (
        f"the implicit list's {per['realloc.rep']:,.0f}, on `binary.rep` {seg_per['binary.rep']:,.0f} against"
        in text
    )
    assert f"against {per['binary.rep']:,.0f};" in text
