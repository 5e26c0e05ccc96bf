"""Examples that run: every `kalloc` command and Python REPL snippet in README.md and docs/*.md.

Commands are the lines of ```sh blocks that start with `kalloc ` (or `$ kalloc ` in any
block); they run in-process through the command line, in a temporary directory where
`firmware/` and `kalloc/` link to the checkout's (so relative paths work and outputs
land there). A command passes when it is not a usage error (status 2) and raises
no Python exception: documented failures (status 3, 64, 65 ...) are what the docs show.
Placeholders stand for real files (PLACEHOLDERS); what cannot run here is listed, with
the reason, in SKIP. REPL snippets (```python blocks with `>>>`) run as doctests.
"""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# Placeholder -> a real file of the checkout ({tmp}: the test's temporary directory).
PLACEHOLDERS = {
    "app.elf": "firmware/build/tests/hello.elf",
    "app.ktrace": "{tmp}/app.ktrace",
    "plots/": "{tmp}/plots/",
    "out.json": "{tmp}/out.json",
    "bad.toml": "{tmp}/bad.toml",
}
# Commands that do not run here, and why (a substring of the command -> reason).
SKIP = {
    "/abs/": "an application built with the cross toolchain (tests/cli/test_sdk_lib_*.py build some)",
    "kalloc bench": "minutes of measurement; tests/cli/test_bench.py runs `kalloc bench --quick`",
    "path/to/": "a user's own firmware",
}
# Whole commands that do not run here (long ones), and why.
SKIP_EXACT = {
    "kalloc replay": "every shipped trace under the default heap (23 s on a busy 2-core machine); "
    "tests/cli/test_replay_cmd.py replays traces",
    "kalloc replay --heap all --json replay.json": "every shipped trace under every heap "
    "(100 s on a busy 2-core machine)",
}
BAD_BOARD = """name = "bad"
[[ram]]
name = "a"
base = 0x80000000
size = 0x100000
[[ram]]
name = "b"
base = 0x80080000
size = 0x100000
"""


def _blocks() -> list[tuple[str, int, str, str]]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            out.append((path.relative_to(ROOT).as_posix(), text[: m.start()].count("\n") + 1, m[1], m[2]))
    return out


def _commands() -> list[tuple[str, str]]:
    cmds = []
    for where, line, lang, body in _blocks():
        for i, raw in enumerate(body.splitlines()):
            s = raw.strip()
            if s.startswith("$ kalloc "):
                s = s[2:]
            elif not (lang == "sh" and s.startswith("kalloc ")):
                continue
            s = s.split(" | ")[0].replace("2>/dev/null", "")  # the kalloc part of a pipeline
            cmds.append((f"{where}:{line + 1 + i}", s))
    return cmds


def _snippets() -> list[tuple[str, str]]:
    return [(f"{where}:{line}", body) for where, line, lang, body in _blocks()
            if lang in ("python", "pycon", "") and ">>>" in body]  # fmt: skip


COMMANDS = _commands()


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_runs(where, command, tmp_path, monkeypatch):
    words = shlex.split(command, comments=True)
    reason = SKIP_EXACT.get(" ".join(words))
    reason = reason or next((why for key, why in SKIP.items() if key in command), None)
    if reason:
        pytest.skip(reason)
    argv = words[1:]
    for i, arg in enumerate(argv):
        for key, real in PLACEHOLDERS.items():
            if arg == key or arg.startswith(key):
                argv[i] = real.format(tmp=tmp_path) + arg[len(key):]
    if "--plot" in argv:
        pytest.importorskip("matplotlib")
    (tmp_path / "bad.toml").write_text(BAD_BOARD)
    if "app.ktrace" in command and "replay" in command:  # recorded by the command before it
        elf = str(ROOT / PLACEHOLDERS["app.elf"])
        CliRunner().invoke(main, ["run", elf, "-q", "--record", str(tmp_path / "app.ktrace")])
    for name in ("firmware", "kalloc"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code != 2, f"{where}: `{command}` is a usage error:\n{result.output[-2000:]}"


SNIPPETS = _snippets()


@pytest.mark.parametrize(("where", "body"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_doc_repl_snippet_runs(where, body, monkeypatch):
    monkeypatch.chdir(ROOT)
    test = doctest.DocTestParser().get_doctest(body, {}, where, where, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: pytest.fail(f"{where}:\n{s}", pytrace=False))
    assert runner.failures == 0


def test_the_docs_have_examples():
    assert len(COMMANDS) >= 15 and len(SNIPPETS) >= 5
