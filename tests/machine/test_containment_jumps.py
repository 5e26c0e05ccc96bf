"""Wild jumps and self-modifying code (issue 12's hostile corpus): contained, reported, never a hang.

firmware/tests/hostile_jump_{mmio,doorbell,data}.c call through a pointer into the UART's
MMIO window, the hypercall doorbells and a zeroed array in .bss; hostile_smc.c writes
instructions into a kmalloc buffer, runs them, rewrites and runs them again. Executing
device memory or data is a CPU fault (exit 65, one `cpu-fault` entry, the allocator
intact); self-modifying code is legal here (RAM is executable and Unicorn retranslates
written code), so its second call must see the new code.
"""

from __future__ import annotations

import time

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

from kalloc.gfp import GFP_KERNEL


def run(name: str) -> tuple[Session, dict, int, float]:
    s = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}")), timeout_s=30))
    t0 = time.monotonic()
    out = s.run()
    return s, out.report, out.exit_status, time.monotonic() - t0


@pytest.mark.parametrize(
    ("name", "target"),
    [("hostile_jump_mmio", 0x1000_0000), ("hostile_jump_doorbell", 0x1100_0000), ("hostile_jump_data", None)],
)
def test_a_jump_into_devices_or_data_is_one_cpu_fault(name: str, target: int | None) -> None:
    s, report, status, wall = run(name)
    assert status == 65 and report["end"] == "fault"
    kinds = [e["kind"] for e in report["errors"]]
    assert kinds == ["cpu-fault"], kinds
    if target is not None:
        assert report["errors"][0]["pc"] == target
    assert wall < 20
    s.ka.check()  # the allocator survived: its invariants hold and it still serves
    p = s.ka.kmalloc(64, GFP_KERNEL)
    assert p is not None
    s.ka.kfree(p)


def test_self_modifying_code_runs_the_new_code() -> None:
    s, report, status, wall = run("hostile_smc")
    assert status == 0 and report["errors"] == []
    assert "smc: 42 then 7" in report["uart"]
    assert wall < 20
    s.ka.check()
