"""The inline replay of the fast path's ring (kalloc_machine/fastreplay.py, issue 14, fifth
session): the same reports as the per-record replay through the hit functions, record for
record, on real firmware, with a ring scribbled between two drains too.

Each test runs a firmware twice under `--fastpath on`: as shipped (the inline replay) and with
the inline replay refusing every record (`FastPath.replay` alone: the hit functions, the
reference the proof in test_fastpath_proof.py also holds both to), and compares the whole
reports but for the host's wall-clock fields.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from kalloc_machine import fastwindow
from kalloc_machine.report.timing import comparable
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

from kalloc.percpu import Magazines

FIRMWARE = ("bench/churn_kalloc", "tests/fastpath_program", "tests/double_free", "tests/leak",
            "tests/summary_mix", "tests/realloc_inplace_site", "tests/irq_race")  # fmt: skip


def report(name: str, inline: bool, scribble: tuple[int, int, int] | None = None, mode: int = 0,
           keep: int = 0) -> dict:  # fmt: skip
    """The report of `name` under --fastpath on; `scribble` = (record, word, value) written into
    the ring of the first drain that holds more than `record` records, before it replays (the
    word's bits in `keep` kept)."""
    session = Session(RunOptions(firmware=str(prebuilt(name)), sanitize="off", fastpath="on"))
    if mode:
        session.machine.phys.write(session.firmware.symbol_addr("mode") or 0, mode.to_bytes(4, "little"))
    fp = session.fastpath
    assert fp is not None
    drain = fp.drain

    def scribbled() -> None:
        nonlocal scribble
        head = struct.unpack_from("<I", fp.buf, fastwindow.H_HEAD)[0]
        if scribble is not None and head > scribble[0]:
            record, word, value = scribble
            at = fastwindow.RING + fastwindow.RECORD * record + 4 * word
            struct.pack_into("<I", fp.buf, at, struct.unpack_from("<I", fp.buf, at)[0] & keep | value)
            scribble = None
        drain()

    fp.drain = scribbled  # type: ignore[method-assign]
    if not inline:
        fp.inline = lambda head, start: start  # type: ignore[method-assign]
    return session.run().report


@pytest.mark.parametrize("name", FIRMWARE)
def test_inline_replay_reports_as_the_hit_functions(name: str) -> None:
    assert comparable(report(name, inline=True)) == comparable(report(name, inline=False))


@pytest.mark.parametrize("record, word, value", [
    (5, 1, 0x1234_5678),  # an object no magazine holds / not live
    (5, 0, 0xFFFF_FFF1),  # a class past the table
    (5, 0, 0x1100_0001),  # 17 frames (w0's top byte)
    (5, 0, 0x0000_000C),  # bits the blob leaves zero (w2, a gfp, is read for kmalloc records alone)
    (5, 0, 0x0000_0101),  # a free's size bits
])  # fmt: skip
def test_a_record_scribbled_mid_ring_is_the_same_one_report(record: int, word: int, value: int) -> None:
    """The records before the scribbled one are replayed inline, the rest by the hit functions'
    path, which files the one report: the same bytes as the hit functions' path alone."""
    on = report("bench/churn_kalloc", inline=True, scribble=(record, word, value))
    ref = report("bench/churn_kalloc", inline=False, scribble=(record, word, value))
    assert comparable(on) == comparable(ref)
    corrupt = [e for e in on["errors"] if "fast path's ring is corrupt" in e["message"]]
    assert len(corrupt) == 1 and f"record {record}" in corrupt[0]["message"]


@pytest.mark.parametrize("frames", [0, 17, 255])
def test_a_record_with_a_bad_frame_count_and_a_good_rest_is_the_same_one_report(frames: int) -> None:
    """w0's top byte (the frame count, sixth session) is checked only where a record's key is new:
    any count but 1..16 gives a key no record had, so the inline loop stops there too."""
    scribble = (5, 0, frames << 24)
    on = report("bench/churn_kalloc", inline=True, scribble=scribble, keep=0x00FF_FFFF)
    ref = report("bench/churn_kalloc", inline=False, scribble=scribble, keep=0x00FF_FFFF)
    assert comparable(on) == comparable(ref)
    corrupt = [e for e in on["errors"] if "fast path's ring is corrupt" in e["message"]]
    assert len(corrupt) == 1 and f"record 5 has {frames} frames" in corrupt[0]["message"]


def test_the_churn_replays_without_the_hit_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records go through the inline loop: the hit functions run only for calls Python serves."""
    calls: dict[str, int] = {"alloc": 0, "free": 0}
    hit_alloc, hit_free = Magazines.hit_alloc, Magazines.hit_free

    def count_alloc(self: Magazines, *args: Any) -> Any:
        calls["alloc"] += 1
        return hit_alloc(self, *args)

    def count_free(self: Magazines, *args: Any) -> Any:
        calls["free"] += 1
        return hit_free(self, *args)

    monkeypatch.setattr(Magazines, "hit_alloc", count_alloc)
    monkeypatch.setattr(Magazines, "hit_free", count_free)
    on = report("bench/churn_kalloc", inline=True)
    assert on["fastpath"]["served"] > 1000
    assert calls["alloc"] + calls["free"] < 0.1 * on["fastpath"]["served"]
