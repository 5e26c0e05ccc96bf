"""Thumb IT blocks seen from hooks (isa/armv7m_it.py), and the sled's one decline rule.

- A TLB fill or a hook-mode KASAN check on an access inside an IT block made Unicorn 2.1.4
  restore the CPU's IT state mid-block; after the block the stale state made the firmware skip
  an instruction (armv7m_it_fault mode 5: a `streq`/`ldreq` on a live object ended in a
  cpu-fault under every sanitize mode; mode 3 under KASAN: a second, spurious cpu-fault after
  the use-after-free report). The hooks now settle the state: one report, the firmware runs on.
- "Inside an IT block?" is asked only on Cortex-M: from a fault hook xPSR answers; from an MMIO
  callback the code before the PC, memoized by those bytes.
- A misaligned word store to the SCS (Unicorn splits it into four byte callbacks) is one report.
- Every device's "the deadline moved into the slice: cut" is `Machine.deadline_moved`.
Firmware: firmware/arm/tests/armv7m_it_fault.c, hostile_raw_systick.c.
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.isa.armv7m_it import ItBlocks, it_covers
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

IT_FAULT = "armv7m/tests/armv7m_it_fault"


def session(elf: str, symbol: str, mode: int, **options: Any) -> Session:
    s = Session(RunOptions(firmware=str(prebuilt(elf)), board="stm32f4", timeout_s=20.0, **options))
    addr = s.firmware.symbol_addr(symbol)
    assert addr is not None
    s.machine.phys.write_u32(addr, mode)
    return s


@pytest.mark.parametrize("sanitize", ["off", "poison", "kasan"])
def test_accesses_inside_it_blocks_leave_the_firmware_as_the_cpu_would(sanitize: str) -> None:
    """Mode 5: `streq` (its page's first store: a TLB fill) then `ldreq` on a live object. Before,
    the instruction after the function's return was skipped: printf's format pointer was never
    loaded and the run ended in a cpu-fault at address 0 or 1."""
    s = session(IT_FAULT, "mode", 5, sanitize=sanitize)
    out = s.run()
    assert s.machine.uart_output() == "stored 11\nread 11\nwent on after the access (mode 5)\n"
    assert out.exit_status == 0 and out.report["errors"] == []


def test_a_kasan_use_after_free_inside_an_it_block_is_one_report() -> None:
    """Mode 3 under hook-mode KASAN: the `ldreq` from a freed object is reported and the run goes on
    (as Linux's KASAN does); before, a second, spurious cpu-fault (at 0x6b6b6b6b) ended it."""
    s = session(IT_FAULT, "mode", 3, sanitize="kasan")
    out = s.run()
    assert [e["kind"] for e in out.report["errors"]] == ["use-after-free"]
    assert out.report["errors"][0]["instruction"] == "ldr r0, [r1]"
    assert s.machine.uart_output().endswith("went on after the access (mode 3)\n")
    assert out.exit_status == 64 and out.report["end"] == "exit"


def test_a_misaligned_scs_store_is_one_report() -> None:
    """hostile_raw_systick mode 4: one `str` to SYST_RVR + 1 reaches the SCS as four 1-byte stores;
    before, each was a cpu-fault entry (D's F4)."""
    out = session("armv7m/tests/hostile_raw_systick", "hostile_mode", 4).run()
    errors = out.report["errors"]
    assert [e["kind"] for e in errors] == ["cpu-fault"], [e["message"] for e in errors]
    assert errors[0]["message"].startswith("a 1-byte write to SYST_RVR (0xe000e015)")
    assert out.exit_status == 65


def test_a_fault_hook_reads_no_code_and_an_mmio_cut_reads_it_once_per_code() -> None:
    """Mode 1 (a fault in a block, seen by a fill hook): xPSR answers, no code is read. Mode 4 (a
    SysTick start in a block: an MMIO cut): the 16 bytes before the PC, decoded once per code."""
    for mode, quantum, reads in ((1, 100_000, 0), (4, 997, 1)):
        s = session(IT_FAULT, "mode", mode, sanitize="off", quantum=quantum)
        it: ItBlocks = s.machine.isa.it  # type: ignore[attr-defined]  # the Cortex-M ISA's
        seen: list[tuple[int, int]] = []
        read = it.read_code
        assert read is not None

        def counted(addr: int, n: int, read: Any = read, seen: list[tuple[int, int]] = seen) -> bytes:
            seen.append((addr, n))
            return bytes(read(addr, n))

        it.read_code = counted
        s.run()
        assert len(seen) == reads, (mode, seen)
        if reads:
            assert list(it.known.values()) == [True]  # the memo: one code window, inside a block


def test_the_memo_is_keyed_by_the_code_so_rewritten_code_is_decoded_again() -> None:
    ite = (0xBF0C).to_bytes(2, "little") + (0x6808).to_bytes(2, "little")  # ite eq; ldreq r0, [r1]
    plain = (0xBF00).to_bytes(2, "little") + (0x6808).to_bytes(2, "little")  # nop; ldr r0, [r1]
    code = {0: b"\0" * 12 + ite}
    it = ItBlocks(lambda addr, n: code[0][-n:])
    assert it.lost(None, 0x1010, synced=False)  # type: ignore[arg-type]  # no engine read needed
    code[0] = b"\0" * 12 + plain
    assert not it.lost(None, 0x1010, synced=False)  # type: ignore[arg-type]
    assert it_covers(ite) and not it_covers(plain)


def test_rv32_never_asks_whether_a_redirect_is_lost() -> None:
    """The RV32 demo cuts slices (mtimecmp stores, DMA starts) and stops at wfi and exit: the sled
    never calls redirect_lost there (Isa.it_blocks False)."""
    s = Session(RunOptions(firmware=str(prebuilt("demo")), sanitize="off", timeout_s=60.0))
    calls = []
    isa = s.machine.isa
    original = isa.redirect_lost
    isa.redirect_lost = lambda uc, synced: calls.append(synced) or original(uc, synced)  # type: ignore[method-assign]
    out = s.run()
    assert out.exit_status == 0 and s.machine.cuts > 0
    assert calls == []


@pytest.mark.parametrize(("elf", "board"), [("demo", "default"), ("armv7m/demo", "stm32f4")])
def test_every_device_cut_is_decided_in_one_place(elf: str, board: str) -> None:
    """The CLINT's and the SCS's raw callbacks and the other devices' (the DMA engine) ask
    Machine.deadline_moved; the run's cuts are the ones it made."""
    s = Session(RunOptions(firmware=str(prebuilt(elf)), board=board, sanitize="off", timeout_s=60.0))
    m = s.machine
    seen: set[str] = set()
    original = m.deadline_moved

    def moved(dev: Any, deadline: int | None, in_place: Any = None) -> None:
        seen.add(type(dev).__name__)
        original(dev, deadline, in_place)

    m.deadline_moved = moved  # type: ignore[method-assign]
    s.run()
    timer = "Clint" if board == "default" else "Scs"
    assert {timer, "DmaEngine"} <= seen, seen
