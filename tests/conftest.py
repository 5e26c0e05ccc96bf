"""The suite's layout, and the kalloc pytest plugin, installed or not.

Tests are grouped by what they need, each folder's conftest.py says so:

    tests/allocator/   the allocator alone: pure Python, no machine, no Unicorn
    tests/properties/  Hypothesis properties and state machines over the allocator's API
    tests/machine/     the emulated machine end to end (Unicorn, firmware ELFs); marked `machine`
    tests/cli/         the command line and the docs
    tests/checks/      the layout's own rules, read from the source (layers, private names, sizes)

Shared helpers are fixtures in these conftest.py files, not copies in test modules.

An installed kalloc registers the plugin through its `pytest11` entry point; a plain
checkout (pythonpath = ".") loads it here. Loading it twice would be an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

_INSTALLED = any(ep.value == "kalloc_machine.tools.pytest_plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _INSTALLED else ["kalloc_machine.tools.pytest_plugin"]

MACHINE_TESTS = Path(__file__).resolve().parent / "machine"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "machine: boots the emulated machine (Unicorn); tests/machine/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MACHINE_TESTS in item.path.parents:
            item.add_marker(pytest.mark.machine)


@pytest.fixture
def cli_json(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    """cli_json(*args) -> (exit status, JSON text) of `kalloc run -q --json FILE *args`."""
    from click.testing import CliRunner

    from kalloc.cli import main  # the command line composes the machine: imported only when used

    def run(*args: str) -> tuple[int, str]:
        out = tmp_path / "report.json"
        res = CliRunner().invoke(main, ["run", "-q", "--json", str(out), *args])
        return res.exit_code, out.read_text()

    return run


@pytest.fixture
def cli_report(cli_json: Callable[..., tuple[int, str]]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """cli_report(*args) -> (exit status, report dict) of `kalloc run … --json`."""

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        status, text = cli_json(*args)
        return status, json.loads(text)

    return run
