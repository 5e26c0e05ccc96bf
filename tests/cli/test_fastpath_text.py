"""The text report says what the per-CPU magazines and the fast path did, and why they were
not used when the run asked for them and the mode cannot serve them (never silently off)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kalloc.cli import main


def _text(*options: str) -> str:
    result = CliRunner().invoke(main, ["run", "bench/churn_kalloc", "--no-color", *options])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def test_fast_path_on_says_what_it_served() -> None:
    text = _text("--sanitize", "off", "--fastpath", "on")
    assert "per-CPU magazines: limit 32, batch 16; " in text
    served = [ln for ln in text.splitlines() if ln.startswith("fast path: ")]
    assert len(served) == 1 and "calls served in firmware" in served[0]
    assert int(served[0].split()[2]) > 1000  # the churn's 1,000 iterations + fill: most calls


@pytest.mark.parametrize("options", [("--fastpath", "on"), ("--percpu-cache", "8")])
def test_a_mode_that_cannot_serve_them_says_why(options: tuple[str, str]) -> None:
    text = _text(*options)  # default --sanitize poison
    assert "per-CPU magazines: not used: " in text and "--sanitize off only" in text
    if options[0] == "--fastpath":
        assert "fast path: not used: --sanitize poison checks object bytes" in text


def test_a_plain_run_mentions_neither() -> None:
    text = _text("--sanitize", "off")
    assert "per-CPU magazines" not in text and "fast path" not in text
