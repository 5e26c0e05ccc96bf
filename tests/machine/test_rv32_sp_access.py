"""The RV32 decoder names the byte a compressed sp-relative load/store touches (c.lwsp,
c.swsp: every prologue and epilogue), for every report that decodes an access (the MMU's
page faults, the stack guard's trap, cpu faults). Encodings checked against capstone."""

import capstone
import pytest
from kalloc_machine.isa.rv32 import effective_access

_MD = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)


@pytest.mark.parametrize(("h", "text", "off"), [
    (0xC606, "c.swsp ra, 0xc(sp)", 12),
    (0x40B2, "c.lwsp ra, 0xc(sp)", 12),
    (0xDE22, "c.swsp s0, 0x3c(sp)", 60),
    (0x5472, "c.lwsp s0, 0x3c(sp)", 60),
    (0xDFFE, "c.swsp t6, 0xfc(sp)", 252),
])  # fmt: skip
def test_compressed_sp_relative_accesses_decode_to_sp_plus_offset(h: int, text: str, off: int) -> None:
    (insn,) = _MD.disasm(h.to_bytes(2, "little"), 0)
    assert f"{insn.mnemonic} {insn.op_str}" == text  # the encoding is what the test says it is
    assert effective_access(h, h) == (2, off, 4)  # x2 = sp, a word
