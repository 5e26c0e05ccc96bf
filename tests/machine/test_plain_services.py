"""Services that read no caller walk no call site (bridge/doorbell.py, invariant 6), on both ISAs.

firmware/tests/plain_service_errors.c makes 100 NOPs and an NR_FREE_PAGES (marked `reads_no_caller`:
no walk), then a CONSOLE_WRITE and a BOOTINFO with a buffer that is not RAM from two named
functions: both fail; the BOOTINFO's site is walked late, while the guest is still stopped at
the store, and the reports must be what the eager walk gave (the same handlers served unmarked).
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.bridge import abi
from kalloc_machine.bridge.callsite import ChainMemo, reads_caller
from kalloc_machine.isa.armv7m_unwind import CallSiteWalker
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

MACHINES = [("default", None, (ChainMemo, "kept")), ("stm32f4", "armv7m", (CallSiteWalker, "walk"))]
PLAIN = ("NOP", "BOOTINFO", "STATS_DUMP", "NR_FREE_PAGES")


def _session(board: str, isa: str | None) -> Session:
    return Session(RunOptions(firmware=str(prebuilt("tests/plain_service_errors", isa)), board=board))


def _unmarked(session: Session) -> None:
    """Serve every plain service through an unmarked wrapper: the eager walk of every call."""
    for name in PLAIN:
        inner: Any = session.bridge.handler(name)
        session.bridge.register(name, lambda caller, *args, inner=inner: inner(caller, *args))


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("wall_s", "host")}


@pytest.mark.parametrize(("board", "isa", "walker"), MACHINES)
def test_only_the_failing_plain_calls_walk_their_site(
    board: str, isa: str | None, walker: tuple[type, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = [0]
    cls, name = walker
    walk = getattr(cls, name)

    def counted(self: Any, *args: Any) -> Any:
        walks[0] += 1
        return walk(self, *args)

    monkeypatch.setattr(cls, name, counted)
    report = _session(board, isa).run().report
    assert report["hypercalls"] == {"NOP": 100, "BOOTINFO": 2, "CONSOLE_WRITE": 1, "NR_FREE_PAGES": 1}
    # the BOOTINFO that failed (late) and the CONSOLE_WRITE (vmbridge.py serves it: it reads its
    # caller); before: one walk per call (104)
    assert walks[0] == 2


@pytest.mark.parametrize(("board", "isa", "walker"), MACHINES)
def test_a_failing_plain_call_names_the_site_the_eager_walk_named(
    board: str, isa: str | None, walker: tuple[type, str]
) -> None:
    lazy = _session(board, isa).run().report
    eager_session = _session(board, isa)
    _unmarked(eager_session)
    eager = eager_session.run().report
    assert _comparable(lazy) == _comparable(eager)
    sites = [(e["message"].split()[0], e["backtrace"][0]["symbol"]) for e in lazy["errors"]]
    assert sites == [("CONSOLE_WRITE", "write_nowhere"), ("BOOTINFO", "boot_nowhere")]


def test_the_marks() -> None:
    """The plain services are marked; an allocation service (it keeps its caller's site) is not."""
    session = _session("default", None)
    for name in PLAIN:
        assert not reads_caller(session.bridge.handler(name)), name
    assert reads_caller(session.bridge.handler("KMALLOC"))
    assert reads_caller(session.bridge.handler("CONSOLE_WRITE"))  # vmbridge.py's: passes its caller on
    assert abi.SERVICE_BY_NAME["NOP"].number == 0
