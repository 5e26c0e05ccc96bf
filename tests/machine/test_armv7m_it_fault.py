"""A fault inside a Thumb IT block ends the run with one report (it hung kalloc before).

Unicorn 2.1.4 runs an IT block to its end and loses a PC written from a hook inside it
(rawcount.py), so the idle sled cannot take a fault there: the memory hook used to map a page,
file the fault and "send" the CPU to the sled; the store then ran again, the firmware went on
with the sled's counter register zeroed, and an undefined instruction later was "handled"
forever inside one emu_start (no boundary, no wall clock). Now such a fault is declined, so
emu_start raises: one report, the documented fault status, the count a lower bound.
Firmware: firmware/arm/tests/armv7m_it_fault.c.
"""

from __future__ import annotations

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def run(mode: int, sanitize: str) -> dict:
    s = Session(RunOptions(firmware=str(prebuilt("armv7m/tests/armv7m_it_fault")), board="stm32f4",
                           sanitize=sanitize, timeout_s=20.0))  # fmt: skip
    s.machine.phys.write_u32(s.firmware.symbol_addr("mode"), mode)
    out = s.run()
    assert out.exit_status == 65
    return out.report


@pytest.mark.parametrize("sanitize", ["off", "poison"])
def test_an_unmapped_store_in_an_it_block_is_one_cpu_fault(sanitize: str) -> None:
    report = run(1, sanitize)
    assert report["end"] == "fault"
    assert [(e["kind"], e["message"]) for e in report["errors"]] == [
        ("cpu-fault", "write of 4 bytes at unmapped address 0x70000000")
    ]


def test_a_store_after_vfree_in_an_it_block_is_one_page_fault() -> None:
    report = run(2, "off")
    assert report["end"] == "fault"
    assert [e["kind"] for e in report["errors"]] == ["page-fault"]
    assert "a use after vfree" in report["errors"][0]["message"]


@pytest.mark.parametrize("quantum", [100_000, 3001, 997])
def test_a_device_store_in_an_it_block_leaves_the_firmware_as_the_cpu_would(quantum: int) -> None:
    """`it eq; streq` starting SysTick (GCC's `if (x) SYST->CSR = 7;`): the store's cut cannot send
    the CPU to the sled inside the block, so the slice runs on. Before, the sled's entry zeroed r12
    (the firmware read 0, not 77) and at quantum 997 the code after the store ran twice."""
    s = Session(RunOptions(firmware=str(prebuilt("armv7m/tests/armv7m_it_fault")), board="stm32f4",
                           sanitize="off", timeout_s=20.0, quantum=quantum))  # fmt: skip
    s.machine.phys.write_u32(s.firmware.symbol_addr("mode"), 4)
    out = s.run()
    assert "r12 77 after 1\n" in s.machine.uart_output()
    assert out.exit_status == 0 and out.report["errors"] == []
