"""The Cortex-M decoder (isa/armv7m_decode.py) names the memory every Thumb load and store
touches, multi-register transfers included (push/pop, stm/ldm with and without writeback,
ldrd/strd), for every report that decodes an access: the MMU's page faults and refused
accesses, and the stack guard's first access (`kalloc_machine.isa.accesses`).

Each encoding is checked three ways: capstone disassembles it to the text the test names;
`memory_operand` gives the transfer's lowest address and whole width; `accesses` gives
exactly the accesses Unicorn's memory hooks see when the Cortex-M4 executes the instruction
(4-byte words in ascending order for a transfer wider than a word). The previous decoder
answered None for push/pop/stm/ldm (reports named the page), read r9..r12 (capstone's sb,
sl, fp, ip) as 0, and took ldrbt & co. for word accesses.
"""

from __future__ import annotations

import contextlib

import capstone
import pytest
import unicorn
from kalloc_machine.isa import accesses, isa_for
from unicorn import arm_const as ac

CODE, DATA = 0x1000, 0x2000_0000
# r<i> = 0x20001000 + 0x100 * i, sp = 0x20008000; r10 (sl) is small: an index register
REGS = {f"r{i}": DATA + 0x1000 + 0x100 * i for i in range(13)} | {"sp": DATA + 0x8000, "lr": CODE | 1}
REGS["r10"] = 0x40
UC_REGS = {f"r{i}": getattr(ac, f"UC_ARM_REG_R{i}") for i in range(13)}
UC_REGS |= {"sp": ac.UC_ARM_REG_SP, "lr": ac.UC_ARM_REG_LR}
_MD = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)

# (encoding, capstone's text, the transfer's lowest address, its width in bytes)
ENCODINGS = [
    ("80b5", "push {r7, lr}", 0x20007FF8, 8),
    ("f0b5", "push {r4, r5, r6, r7, lr}", 0x20007FEC, 20),
    ("10bd", "pop {r4, pc}", 0x20008000, 8),
    ("80bc", "pop {r7}", 0x20008000, 4),
    ("4df8044d", "str r4, [sp, #-0x4]!", 0x20007FFC, 4),  # push.w {r4}
    ("5df8044b", "ldr r4, [sp], #4", 0x20008000, 4),  # pop.w {r4}
    ("2de9f041", "push.w {r4, r5, r6, r7, r8, lr}", 0x20007FE8, 24),
    ("bde8f081", "pop.w {r4, r5, r6, r7, r8, pc}", 0x20008000, 24),
    ("20e90e00", "stmdb r0!, {r1, r2, r3}", 0x20000FF4, 12),
    ("06c8", "ldm r0!, {r1, r2}", 0x20001000, 8),
    ("06c0", "stm r0!, {r1, r2}", 0x20001000, 8),
    ("03c8", "ldm r0, {r0, r1}", 0x20001000, 8),
    ("11e90c00", "ldmdb r1, {r2, r3}", 0x200010F8, 8),
    ("b1e81c00", "ldm.w r1!, {r2, r3, r4}", 0x20001100, 12),
    ("2ce90300", "stmdb ip!, {r0, r1}", 0x20001BF8, 8),
    ("9be80f00", "ldm.w fp, {r0, r1, r2, r3}", 0x20001B00, 16),
    ("6de90201", "strd r0, r1, [sp, #-0x8]!", 0x20007FF8, 8),
    ("f2e80201", "ldrd r0, r1, [r2], #8", 0x20001200, 8),
    ("d2e90401", "ldrd r0, r1, [r2, #0x10]", 0x20001210, 8),
    ("c0e90023", "strd r2, r3, [r0]", 0x20001000, 8),
    ("5df804fb", "ldr pc, [sp], #4", 0x20008000, 4),
    ("dbf80400", "ldr.w r0, [fp, #4]", 0x20001B04, 4),
    ("dcf80000", "ldr.w r0, [ip]", 0x20001C00, 4),
    ("49f82a10", "str.w r1, [sb, sl, lsl #2]", 0x20001A00, 4),
    ("16f8030c", "ldrb r0, [r6, #-0x3]", 0x200015FD, 1),
    ("11f8040e", "ldrbt r0, [r1, #4]", 0x20001104, 1),
    ("21f8020e", "strht r0, [r1, #2]", 0x20001102, 2),
    ("0190", "str r0, [sp, #4]", 0x20008004, 4),
]  # fmt: skip


def _unicorn_accesses(code: bytes) -> list[tuple[int, int]]:
    """What Unicorn's memory hooks see when a Cortex-M4 executes `code` once from REGS."""
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(ac.UC_CPU_ARM_CORTEX_M4)
    uc.mem_map(CODE, 0x1000)
    uc.mem_map(DATA, 0x10000)
    uc.mem_write(CODE, code + b"\x00\xbf" * 4)
    for name, value in REGS.items():
        uc.reg_write(UC_REGS[name], value)
    seen: list[tuple[int, int]] = []
    uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE,
                lambda _uc, _acc, addr, size, _v, _ud: seen.append((addr, size)))  # fmt: skip
    with contextlib.suppress(unicorn.UcError):  # a pop of pc to 0 faults on the next fetch, after its loads
        uc.emu_start(CODE | 1, CODE + 0x100, count=1)
    return seen


@pytest.mark.parametrize(("code", "text", "addr", "width"), ENCODINGS)
def test_the_decoder_names_what_the_cpu_touches(code: str, text: str, addr: int, width: int) -> None:
    raw = bytes.fromhex(code)
    (insn,) = _MD.disasm(raw, CODE, 1)
    assert f"{insn.mnemonic} {insn.op_str}" == text  # the encoding is what the test says it is
    isa = isa_for("armv7m")
    padded = raw + b"\x00\xbf" * 2

    def read(a: int, n: int) -> bytes:
        return padded[a - CODE : a - CODE + n]

    assert isa.memory_operand(read, CODE, REGS) == (addr, width)
    assert accesses(isa, read, CODE, REGS) == _unicorn_accesses(raw)


def test_accesses_of_garbage_and_of_no_access() -> None:
    isa = isa_for("armv7m")
    assert accesses(isa, lambda a, n: b"\x00\xbf\x00\xbf"[:n], CODE, REGS) == []  # nop: no access

    def outside(a: int, n: int) -> bytes:
        raise ValueError("not RAM")

    assert accesses(isa, outside, CODE, REGS) == []
    assert accesses(isa, lambda a, n: b"\xff\xff\xff\xff"[:n], CODE, REGS) == []  # not an instruction
