"""What the hostile-firmware tests share (test_hostile_rawpaths*.py): a session of a prebuilt ELF
with words of its .data poked before the run (a firmware's `mode`), a run, its JSON report as
bytes without the quantum, the check that one report comes out for every quantum, and the check
that the allocator still serves after the run.

Invariants:
 1. Every run is a fresh Session: nothing carries over from one run to the next.
 2. `report_bytes` leaves out `options.quantum` and nothing else: any other difference fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session

from kalloc.gfp import GFP_KERNEL

QUANTA = (100_000, 333, 100)


def session(elf: str, poke: Mapping[str, int] | None = None, **options: Any) -> Session:
    """A session of the prebuilt `elf` (sdk.prebuilt's name) with each `poke` symbol's word set."""
    s = Session(RunOptions(firmware=str(prebuilt(elf)), **options))
    for symbol, value in (poke or {}).items():
        addr = s.firmware.symbol_addr(symbol)
        assert addr is not None, f"{elf} has no `{symbol}`"
        s.machine.phys.write_u32(addr, value)
    return s


def run(elf: str, poke: Mapping[str, int] | None = None, **options: Any) -> tuple[Session, RunOutcome]:
    s = session(elf, poke, **options)
    return s, s.run()


def report_bytes(out: RunOutcome) -> str:
    """The JSON report with the quantum left out of its options (the one thing that may differ)."""
    r = dict(out.report)
    r["options"] = {k: v for k, v in r["options"].items() if k != "quantum"}
    return json.dumps(r, sort_keys=True)


def same_for_every_quantum(
    elf: str, poke: Mapping[str, int] | None = None, quanta: tuple[int, ...] = QUANTA, **options: Any
) -> tuple[Session, RunOutcome]:
    """Run once per quantum in `quanta`: one report, byte for byte; the last run."""
    reports = set()
    for q in quanta:
        s, out = run(elf, poke, quantum=q, **options)
        reports.add(report_bytes(out))
    assert len(reports) == 1, f"{elf} {poke or ''}: {len(reports)} different reports for quanta {quanta}"
    return s, out


def allocator_serves(s: Session) -> None:
    """After the run: the allocator's invariants hold, and it still hands out and takes back."""
    s.ka.check()
    p = s.ka.kmalloc(64, GFP_KERNEL)
    s.ka.kfree(p)
    s.ka.check()
