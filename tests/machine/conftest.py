"""Tests of the emulated machine end to end: Unicorn runs firmware ELFs (committed, prebuilt).

Every test here carries the `machine` marker (tests/conftest.py adds it), so
`pytest -m "not machine"` runs the rest of the suite without booting a machine.
Shared helpers are the fixtures below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"


def run_firmware(name: str, **options: Any) -> RunOutcome:
    """Boot a shipped firmware ("demo", "tests/double_free") as `kalloc run` would; its outcome."""
    return Session(RunOptions(firmware=str(prebuilt(name)), **options)).run()


@pytest.fixture
def run_fw() -> Callable[..., RunOutcome]:
    """run_fw(name, **RunOptions fields) -> RunOutcome of a shipped firmware (firmware/build/NAME.elf)."""
    return run_firmware


@pytest.fixture
def tests_data() -> Path:
    """tests/data: the tiny assembler programs and their prebuilt ELFs (see tests/data/build.sh)."""
    return TESTS_DATA
