"""RV32IMAC instruction words for the RISC-V `Isa` (isa/rv32.py), without an engine: the
encodings the machine writes into the image and the idle sled (the `wfi` and `mret` marks, nop,
the sled's lap counter and its jump back), the counter CSRs an ELF must not read, the load /
store decode a fault report names its byte from (`effective_access`), and the scans of an ELF's
code: every `wfi` and the first read of each counter CSR (`scan_code`), every `mret` (`scan_returns`).

Invariants:
 1. IDLE_MARK and RETURN_MARK are custom-0 words (reserved for extensions this CPU lacks): they
    trap as illegal instructions, through UC_HOOK_INTR, with no code hook.
 2. `effective_access` never raises: an instruction it does not decode is None.
 3. `scan_returns` finds an `mret` only at an instruction start (walked by length from each
    section's start), so bytes that only look like one are never marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import capstone

from kalloc_machine.isa import CodeScan

# CSR reads whose values are not deterministic or not available on this machine
# (docs/abi.md): rdcycle/rdinstret read host counters, rdtime is illegal.
COUNTER_CSRS = {0xC00: "rdcycle", 0xC01: "rdtime", 0xC02: "rdinstret",
                0xC80: "rdcycleh", 0xC81: "rdtimeh", 0xC82: "rdinstreth"}  # fmt: skip

NONDETERMINISTIC = "reads a host counter (not deterministic)"
WFI = (0x1050_0073).to_bytes(4, "little")
NOP = (0x0000_0013).to_bytes(4, "little")  # addi x0, x0, 0
MRET = (0x3020_0073).to_bytes(4, "little")  # the return from a machine-mode trap
RETURN_MARK = (0x0000_100B).to_bytes(4, "little")  # on every mret (irqstate.py): custom-0, traps as IDLE_MARK
# The machine's mark on every `wfi` of the loaded image (sled.py): a word of the custom-0
# opcode space, which the base ISA reserves for extensions this CPU lacks, so it traps as
# an illegal instruction, through UC_HOOK_INTR: no code hook, nothing per instruction.
IDLE_MARK = (0x0000_000B).to_bytes(4, "little")
SLED_COUNT = (0x001F_8F93).to_bytes(4, "little")  # addi t6, t6, 1: the sled's lap counter


def jal_x0(offset: int) -> bytes:
    """`jal x0, offset` (a plain jump), encoded."""
    imm = offset & 0x1F_FFFF
    insn = (0x6F | ((imm >> 20) & 1) << 31 | ((imm >> 1) & 0x3FF) << 21
            | ((imm >> 11) & 1) << 20 | ((imm >> 12) & 0xFF) << 12)  # fmt: skip
    return insn.to_bytes(4, "little")


def _sext(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def effective_access(h: int, word: int) -> tuple[int, int, int] | None:
    """(base register number, offset, width) of a load, store or AMO, or None.

    `h` is the first halfword at the pc, `word` the 32-bit instruction (or `h` again for a compressed
    one). A fill hook only learns the *page*; the report names the byte, from base register and offset.
    """
    if h & 3 == 3:
        op, f3, rs1 = word & 0x7F, (word >> 12) & 7, (word >> 15) & 31
        if op == 0x03:
            return rs1, _sext(word >> 20, 12), {0: 1, 1: 2, 2: 4, 4: 1, 5: 2}.get(f3, 4)
        if op == 0x23:
            return rs1, _sext(((word >> 25) << 5) | ((word >> 7) & 31), 12), 1 << (f3 & 3)
        if op == 0x2F:  # lr/sc/amo: the address is rs1
            return rs1, 0, 4
        return None
    quad, f3 = h & 3, h >> 13
    if quad == 0 and f3 in (2, 6):  # c.lw, c.sw
        off = ((h >> 10) & 7) << 3 | ((h >> 6) & 1) << 2 | ((h >> 5) & 1) << 6
        return 8 + ((h >> 7) & 7), off, 4
    if quad == 2 and f3 in (2, 6):  # c.lwsp, c.swsp: sp-relative (prologues' and epilogues' own)
        lwsp = ((h >> 12) & 1) << 5 | ((h >> 4) & 7) << 2 | ((h >> 2) & 3) << 6
        return 2, lwsp if f3 == 2 else ((h >> 9) & 0xF) << 2 | ((h >> 7) & 3) << 6, 4
    return None


def scan_code(ranges: Sequence[tuple[int, bytes]]) -> CodeScan:
    """Every `wfi` (the machine idles there) and the first read of each counter CSR."""
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
    md.skipdata = True
    idle: list[int] = []
    seen: dict[str, int] = {}
    for base, code in ranges:
        for addr, size, mnemonic, _ops in md.disasm_lite(code, base):
            if size != 4:
                continue
            word = code[addr - base : addr - base + 4]
            if word == WFI:
                idle.append(addr)
            elif mnemonic.startswith(("csr", "rd")):
                insn = int.from_bytes(word, "little")
                csr, funct3 = insn >> 20, (insn >> 12) & 7
                if (insn & 0x7F) == 0x73 and funct3 in (2, 6) and csr in COUNTER_CSRS:
                    seen.setdefault(COUNTER_CSRS[csr], addr)
    hazards = []
    for what, addr in sorted(seen.items(), key=lambda kv: kv[1]):
        why = "is illegal on this machine" if "time" in what else NONDETERMINISTIC
        hazards.append((addr, what, why))
    return idle, hazards


def scan_returns(ranges: Sequence[tuple[int, bytes]]) -> list[int]:
    """Every `mret` of the code sections at an instruction start (walked by instruction length:
    each is overwritten with RETURN_MARK, so bytes that only look like one are not)."""
    found: list[int] = []
    for base, code in ranges:
        last = code.rfind(MRET)
        at = 0
        while 0 <= at <= last:
            h = code[at] | code[at + 1] << 8 if at + 1 < len(code) else 0
            if h & 3 != 3:
                at += 2
                continue
            if code[at : at + 4] == MRET:
                found.append(base + at)
            at += 4 if h & 0x1F != 0x1F else 6 if h & 0x3F == 0x1F else 8  # 48/64-bit: not RV32IMAC's
    return found
