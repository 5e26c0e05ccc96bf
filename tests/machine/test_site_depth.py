"""A call site keeps the same number of frames on both machines: its innermost 16 (docs/abi.md,
"Frame pointers and the call site"; bridge/doorbell.py BACKTRACE_DEPTH).

firmware/tests/deep_site.c recurses 20 frames deep and leaks at the bottom. The RV32 bridge
walks the frame-pointer chain from the wrapper's return address; the Cortex-M bridge unwinds
from the CPU at the doorbell store, a walk that starts at the wrapper's own pc and so must go
one frame further to keep 16 from the site. It kept 15 before (the walk's 16 counted the
wrapper's pc), both in the hypercall's fast walk and in the general walk the bridge falls back
to (an exception frame on the chain, another RAM bank), checked here with the fast walker off.
"""

from __future__ import annotations

import pytest
from kalloc_machine.bridge import doorbell
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

SITE = [("descend", 15)] + [("descend", 20)] * 15  # malloc's line, then descend's call line


def _leak_site(board: str, isa: str | None) -> list[tuple[str, int]]:
    report = Session(RunOptions(firmware=str(prebuilt("tests/deep_site", isa)), board=board)).run().report
    (leak,) = [e for e in report["errors"] if e["kind"] == "leak"]
    return [(f["symbol"], f["line"]) for f in leak["backtrace"]]


@pytest.mark.parametrize(("board", "isa"), [("default", None), ("stm32f4", "armv7m")])
def test_a_deep_site_keeps_16_frames(board: str, isa: str | None) -> None:
    assert _leak_site(board, isa) == SITE


def test_the_cortex_m_general_walk_keeps_16_frames_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doorbell, "call_site_walker", lambda machine, isa: None)  # always the general walk
    assert _leak_site("stm32f4", "armv7m") == SITE
