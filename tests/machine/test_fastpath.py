"""The fast path's own behaviour (issue 14, part 3): off costs nothing, a scribbled window is one
report, the modes it cannot serve keep it off with a note, the patch is checked.

The proof that its reports are the Python twin's is tests/machine/test_fastpath_proof.py.
"""

from __future__ import annotations

import json

import pytest
from kalloc_machine import fastwindow
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

CHURN = str(prebuilt("bench/churn_kalloc"))
PROLOGUE = bytes.fromhex("397122dc06de8000")  # c.addi16sp sp,-64; c.swsp s0; c.swsp ra; c.addi4spn s0,sp,64


def run(elf: str, **options: object) -> tuple[Session, dict]:
    session = Session(RunOptions(firmware=elf, **options))  # type: ignore[arg-type]
    return session, session.run().report


def test_off_maps_nothing_patches_nothing_and_reports_as_before() -> None:
    plain, report = run(CHURN, sanitize="off")
    _, report_off = run(CHURN, sanitize="off", fastpath="off", percpu_cache=0)
    assert json.dumps(report, sort_keys=True) == json.dumps(report_off, sort_keys=True)
    assert "fastpath" not in report and "percpu" not in report
    assert "fastpath" not in report["options"] and "percpu_cache" not in report["options"]
    regions = [(lo, hi) for lo, hi, _ in plain.machine.uc.mem_regions()]
    assert not any(lo <= fastwindow.WINDOW <= hi for lo, hi in regions)
    assert plain.ka.magazines is None and plain.fastpath is None
    malloc = plain.firmware.symbol_addr("malloc") or 0
    assert bytes(plain.machine.uc.mem_read(malloc, 8)) == PROLOGUE  # the wrapper as linked
    assert "tunables    0    0    0" in report["slabinfo"] and "tunables   32   16" not in report["slabinfo"]


def test_on_patches_the_wrappers_and_maps_the_window() -> None:
    session, report = run(CHURN, sanitize="off", fastpath="on")
    assert report["fastpath"]["on"] and report["fastpath"]["corrupt"] is None
    assert report["options"]["fastpath"] == "on"
    assert "tunables   32   16    0" in report["slabinfo"]  # the array caches' columns
    malloc = session.firmware.symbol_addr("malloc") or 0
    entry = fastwindow.WINDOW + fastwindow.CODE
    assert bytes(session.machine.uc.mem_read(malloc, 8)) == fastwindow.jump(malloc, entry)


@pytest.mark.parametrize("mode", [1, 2, 3, 4])
def test_a_scribbled_window_is_one_report_and_the_run_goes_on(mode: int) -> None:
    session = Session(RunOptions(firmware=str(prebuilt("tests/fastpath_corrupt")), sanitize="off",
                                 fastpath="on"))  # fmt: skip
    session.machine.phys.write(session.firmware.symbol_addr("mode") or 0, mode.to_bytes(4, "little"))
    report = session.run().report
    corrupt = [e for e in report["errors"] if "fast path's ring is corrupt" in e["message"]]
    assert len(corrupt) == 1 and corrupt[0]["kind"] == "bad-hypercall"
    assert not [e for e in report["errors"] if e["kind"] == "internal"]
    assert report["end"] == "exit" and report["fastpath"]["corrupt"]
    assert session.fastpath is not None and not session.fastpath.patched  # unpatched: slow from then on


def test_a_store_into_the_blob_is_a_cpu_fault() -> None:
    session = Session(RunOptions(firmware=str(prebuilt("tests/fastpath_corrupt")), sanitize="off",
                                 fastpath="on"))  # fmt: skip
    session.machine.phys.write(session.firmware.symbol_addr("mode") or 0, (5).to_bytes(4, "little"))
    report = session.run().report
    assert report["end"] == "fault" and report["errors"][-1]["kind"] == "cpu-fault"


def test_the_corrupt_firmware_is_clean_without_scribbling() -> None:
    _, report = run(str(prebuilt("tests/fastpath_corrupt")), sanitize="off", fastpath="on")
    assert report["errors"] == [] and report["fastpath"]["served"] > 0


@pytest.mark.parametrize(("options", "why"), [
    ({"sanitize": "poison"}, "--sanitize off only"),
    ({"sanitize": "off", "irq_every": 5000}, "injected interrupts"),
    ({"sanitize": "off", "fail_nth": (3,)}, "fault injection"),
    ({"sanitize": "off", "heap": "firstfit"}, "--heap firstfit"),
])  # fmt: skip
def test_modes_it_cannot_serve_keep_it_off_with_a_note(options: dict, why: str) -> None:
    session, report = run(CHURN, fastpath="on", **options)
    assert session.fastpath is None and not report["fastpath"]["on"]
    notes = json.dumps([report["fastpath"], report.get("percpu")])
    assert why in notes


def test_a_prologue_that_reads_the_pc_cannot_move() -> None:
    assert fastwindow.displaced(PROLOGUE) is None  # the SDK's wrappers
    assert "auipc" in (fastwindow.displaced(bytes.fromhex("9702000013000000")) or "")  # auipc t0; nop
    assert "8 bytes" in (fastwindow.displaced(bytes.fromhex("3971130101ff130101ff")) or "")  # 2 + 4 + 4 bytes


def test_the_jump_reaches_both_ways() -> None:
    window = fastwindow.WINDOW
    for pc, target in ((0x8000_0168, window + fastwindow.CODE), (window + 0x1808, 0x8000_0170)):
        auipc, jalr = int.from_bytes(fastwindow.jump(pc, target)[:4], "little"), int.from_bytes(
            fastwindow.jump(pc, target)[4:], "little")
        hi = auipc >> 12 << 12
        lo = jalr >> 20
        lo -= (lo & 0x800) << 1
        assert (pc + hi + lo) & 0xFFFF_FFFF == target


def test_a_handler_that_unlocks_the_blob_is_one_report() -> None:
    """fastpath_corrupt mode 6: a timer handler re-enables interrupts, writes the window's allowed
    word and mallocs; the blob serves it, and the machine's drain at depth 1 names the ring corrupt
    (a handler's record is never replayed as task context). No traceback, the run goes on."""
    session = Session(RunOptions(firmware=str(prebuilt("tests/fastpath_corrupt")), sanitize="off",
                                 fastpath="on"))  # fmt: skip
    session.machine.phys.write(session.firmware.symbol_addr("mode") or 0, (6).to_bytes(4, "little"))
    report = session.run().report
    corrupt = [e for e in report["errors"] if "fast path's ring is corrupt" in e["message"]]
    assert len(corrupt) == 1 and "interrupt depth 1" in corrupt[0]["message"]
    assert report["end"] == "exit" and not [e for e in report["errors"] if e["kind"] == "internal"]
    assert report["fastpath"]["served"] == 1
