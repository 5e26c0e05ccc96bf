"""The raw store loop of `kalloc bench --only hooks` (tools/benchstores.py): the loop is the three
instructions it says, runs its iterations to its exit with one TLB fill per page, and the figure
(store cost with the data page filled rwx / rw-) is produced on both clocks. No timing is asserted
(docs/performance.md): the figure's meaning is "Stores and the TLB" there.
"""

from __future__ import annotations

import json
from typing import Any

import capstone
import pytest
from click.testing import CliRunner
from kalloc_machine.tools import benchstores
from kalloc_machine.tools.benchstores import DATA, RW, RWX, RawAccessLoop
from unicorn.riscv_const import UC_RISCV_REG_A1, UC_RISCV_REG_PC

from kalloc.cli import main


@pytest.mark.parametrize(("store", "access"), [(True, "sw a2, 0(a0)"), (False, "lw a3, 0(a0)")])
def test_the_loop_is_one_access_a_decrement_and_a_branch_back(store: bool, access: str) -> None:
    loop = RawAccessLoop(store, RWX)
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32)
    code = bytes(loop.uc.mem_read(benchstores.CODE, loop.exit - benchstores.CODE))
    text = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(code, benchstores.CODE)]
    assert text == [access, "addi a1, a1, -1", "bnez a1, -8"]


@pytest.mark.parametrize("perms", [RWX, RW])
def test_the_loop_runs_its_iterations_with_one_fill_per_page(perms: int) -> None:
    loop = RawAccessLoop(True, perms)
    for _ in range(3):
        span = loop.run(10_000)
        assert span.positive
        assert loop.uc.reg_read(UC_RISCV_REG_A1) == 0 and loop.uc.reg_read(UC_RISCV_REG_PC) == loop.exit
    assert bytes(loop.uc.mem_read(DATA, 4)) == (0x5A5A_5A5A).to_bytes(4, "little")
    assert loop.fills <= 2  # the code page and the data page, once: Unicorn keeps them between runs


def test_hooks_has_the_store_figure_on_both_clocks(tmp_path: Any) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--quick", "--only", "hooks", "--json", str(out)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    store = figures["store cost, data page filled rwx / rw- (raw Unicorn sw loop)"]
    assert store["value"] > 0 and store["wall"] > 0 and "rw- page" in store["note"]
    translation = figures["memory-heavy firmware speed, translation (TLB-fill hook) on / off"]
    assert "every store the slow path" in translation["note"]
