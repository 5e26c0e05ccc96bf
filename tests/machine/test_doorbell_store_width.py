"""A doorbell store that is not one aligned 32-bit word is exactly one fatal report (Machine.fatal).

Unicorn 2.1.4 splits a misaligned word store to MMIO into smaller stores, one doorbell callback
each (two halfwords on RV32, four bytes on Cortex-M); each would be a `bad-hypercall` without
`Machine.fatal`'s "one instruction, one report". The run ends at the store, exactly: the same
instruction count for every quantum, nothing after the store runs.
Firmware: firmware/tests/hostile_doorbell_misaligned.c (built for both boards).
"""

from __future__ import annotations

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, RunOutcome, Session

ELF = {"default": "tests/hostile_doorbell_misaligned", "stm32f4": "armv7m/tests/hostile_doorbell_misaligned"}
# mode -> (board -> the width and offset the report names)
STORES = {
    0: {"default": "2 bytes at offset 0x2", "stm32f4": "1 bytes at offset 0x2"},  # a word at +2, split
    1: {"default": "2 bytes at offset 0x0", "stm32f4": "2 bytes at offset 0x0"},  # a halfword
    2: {"default": "1 bytes at offset 0x1", "stm32f4": "1 bytes at offset 0x1"},  # a byte
}


def run(board: str, mode: int, quantum: int) -> tuple[RunOutcome, str]:
    s = Session(RunOptions(firmware=str(prebuilt(ELF[board])), board=board, quantum=quantum, timeout_s=30.0))
    addr = s.firmware.symbol_addr("hostile_mode")
    assert addr is not None
    s.machine.phys.write_u32(addr, mode)
    return s.run(), s.machine.uart_output()


@pytest.mark.parametrize("board", ["default", "stm32f4"])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_a_doorbell_store_of_another_width_is_one_fatal_report(board: str, mode: int) -> None:
    outs = [run(board, mode, q) for q in (100_000, 97)]
    for out, uart in outs:
        errors = out.report["errors"]
        assert [e["kind"] for e in errors] == ["bad-hypercall"], [e["message"] for e in errors]
        assert errors[0]["message"].startswith(f"doorbell store of {STORES[mode][board]}:")
        assert errors[0].get("count", 1) == 1
        assert out.report["end"] == "fatal" and out.exit_status == 64
        assert uart == f"mode {mode}\n"  # nothing after the store ran
    assert outs[0][0].report["instructions"] == outs[1][0].report["instructions"]  # exact
