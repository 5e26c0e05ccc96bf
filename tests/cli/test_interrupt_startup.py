"""Ctrl-C before a command runs (issue 13, "Exact facts"): one line, `kalloc: interrupted`, status 130.

`kalloc` takes most of a second to import (the allocator, click, rich, Unicorn, capstone,
pyelftools); a SIGINT in that time used to print a Python traceback. The child runs the
console script exactly as pip generates it from pyproject's `[project.scripts]` (`from
MODULE import FUNC; sys.exit(FUNC())`), with an import hook that sends the child SIGINT
when a given module starts importing: the interrupt lands inside the imports,
deterministically, wherever the hook says.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from kalloc.cli import main

ROOT = Path(__file__).resolve().parents[2]

# Sends SIGINT to itself when MODULE starts importing (a meta-path finder sees every import first).
_CHILD = """
import os, signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Hook())
sys.argv[0] = "kalloc"
from {entry} import {func}
sys.exit({func}())
"""


def _sigint_default() -> None:
    """A CI runner's background job inherits SIGINT ignored; the child restores the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _entry_point() -> tuple[str, str]:
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["kalloc"]
    module, func = script.split(":")
    return module, func


def _interrupt_at(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    entry, func = _entry_point()
    code = _CHILD.format(module=module, entry=entry, func=func)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          preexec_fn=_sigint_default, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize(
    "module",
    [
        "kalloc",  # the first import of all: the allocator package
        "kalloc.allocator",
        "click",
        "unicorn",  # the machine, imported by the command modules
        "kalloc_machine.session",
        "rich.console",
    ],
)
def test_ctrl_c_while_the_command_line_imports_is_one_line_and_status_130(module: str) -> None:
    proc = _interrupt_at(module, "run", "--help")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "kalloc: interrupted\n", proc.stderr
    assert proc.stdout == ""


def test_the_hook_really_interrupts() -> None:
    """Control: the same child without a hook on an imported module runs the command."""
    proc = _interrupt_at("no.such.module", "--version")
    assert proc.returncode == 0 and "kalloc, version" in proc.stdout, proc.stderr


def test_the_group_turns_keyboard_interrupt_into_status_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the imports, Ctrl-C inside a command is the same line, not click's "Aborted!" and 1."""
    import kalloc.cli.boards as boards

    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(boards.boards_cmd, "callback", boom)
    result = CliRunner().invoke(main, ["boards"])
    assert result.exit_code == 130
    assert "Aborted" not in result.output


def test_python_dash_m_uses_the_same_entry() -> None:
    text = (ROOT / "kalloc" / "cli" / "__main__.py").read_text()
    entry, func = _entry_point()
    assert f"from {entry} import {func}" in text


def test_importing_the_command_line_leaves_sigint_alone() -> None:
    """Only the console script defers SIGINT while it imports; a test process or a library
    caller that imports kalloc.cli keeps Python's handler (Ctrl-C still stops it)."""
    code = "import signal, kalloc.cli; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=_sigint_default, cwd=ROOT)  # fmt: skip
    assert proc.stdout.strip() == "True", proc.stderr


def test_the_command_runs_with_pythons_own_sigint_handler() -> None:
    """The script's deferral ends before the command runs (hostlimits installs its own in a run)."""
    entry, func = _entry_point()
    code = (f"import signal, sys; from {entry} import {func}; import kalloc.cli.boards as b; "
            "b.boards_cmd.callback = lambda *a, **k: print(signal.getsignal(signal.SIGINT) is "
            f"signal.default_int_handler); sys.argv[0] = 'kalloc'; {func}()")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, "boards"], capture_output=True, text=True, timeout=60,
                          preexec_fn=_sigint_default, cwd=ROOT)  # fmt: skip
    assert proc.stdout.strip() == "True", proc.stderr
