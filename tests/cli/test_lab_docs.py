"""The lab handout and the instructor's guide quote real output: every `kalloc lab` command block
followed by a text block is run, and the quoted lines must appear in its output, in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/lab.md", "docs/instructor.md")
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
