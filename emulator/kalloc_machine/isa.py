"""The ISA-specific part of the machine: RISC-V RV32 in machine mode.

Everything the machine needs to know about the CPU sits in one small class, so a
Cortex-M or AArch64 port is a new class with the same methods, not a rewrite:
Unicorn arch/mode, register names, the trap entry the emulator performs at slice
boundaries, the CSRs that gate interrupts, the `ecall` convention, the meaning of
Unicorn's interrupt numbers, and the frame-pointer backtrace walk.

Data: registers are read in one `reg_read_batch` call (each Python `reg_read` costs
~1-2 µs, so the machine reads registers only at boundaries, faults and ecalls).

Invariants:
 1. `enter_interrupt` is only called at a slice boundary, never from a hook.
 2. Interrupt entry follows the privileged spec for M-mode: mepc ← pc, mcause ← cause,
    mstatus.MPIE ← MIE, MIE ← 0, MPP ← M, pc ← mtvec (base + 4*code when vectored).
    `mret` is executed by the CPU itself.
 3. `backtrace` never raises: a frame it cannot read ends the walk.
"""

from __future__ import annotations

from collections.abc import Callable

import capstone
import unicorn
from unicorn import riscv_const as rc

# mstatus bits (privileged spec 3.1.6)
MSTATUS_MIE = 1 << 3
MSTATUS_MPIE = 1 << 7
MSTATUS_MPP = 3 << 11  # both bits set = M-mode
# mie / mip bits
MIE_MTIE = 1 << 7
MIE_MEIE = 1 << 11

CAUSE_INTERRUPT = 0x8000_0000
CAUSE_TIMER = CAUSE_INTERRUPT | 7  # machine timer interrupt
CAUSE_EXTERNAL = CAUSE_INTERRUPT | 11  # machine external interrupt

# Unicorn's interrupt numbers are the RISC-V exception codes (mcause of a trap).
EXCEPTION_NAMES: dict[int, str] = {
    0: "misaligned instruction fetch",
    1: "instruction access fault",
    2: "illegal instruction",
    3: "breakpoint (ebreak)",
    4: "misaligned load",
    5: "load access fault",
    6: "misaligned store",
    7: "store access fault",
    8: "ecall",
    11: "ecall",
    12: "instruction page fault",
    13: "load page fault",
    15: "store page fault",
}

ABI_NAMES: tuple[str, ...] = (
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1",
    "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
    "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
    "t3", "t4", "t5", "t6",
)  # fmt: skip


class RiscV32:
    """RV32IMAC, machine mode, as Unicorn emulates it (2.1.4)."""

    name = "rv32imac"
    uc_arch = unicorn.UC_ARCH_RISCV
    uc_mode = unicorn.UC_MODE_RISCV32
    cs_arch = capstone.CS_ARCH_RISCV
    cs_mode = capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC
    reg_names: tuple[str, ...] = ABI_NAMES
    reg_pc = rc.UC_RISCV_REG_PC
    reg_sp = rc.UC_RISCV_REG_SP
    reg_fp = rc.UC_RISCV_REG_S0
    reg_ra = rc.UC_RISCV_REG_RA
    ecall_intno = 8  # Unicorn delivers M-mode ecall as intno 8, PC already past it
    fault_pc_adjust = 4  # other intnos: Unicorn has advanced PC by 4, even past a 16-bit insn
    # ELF identity (e_machine is the string pyelftools reports)
    elf_class = 32
    elf_machine = "EM_RISCV"
    wfi_encoding = (0x1050_0073).to_bytes(4, "little")

    _GPRS: tuple[int, ...] = tuple(getattr(rc, f"UC_RISCV_REG_X{i}") for i in range(1, 32))

    # -- registers ------------------------------------------------------------------

    def read_regs(self, uc: unicorn.Uc) -> dict[str, int]:
        """pc and x1..x31 by ABI name, in one batch read."""
        values = uc.reg_read_batch([rc.UC_RISCV_REG_PC, *self._GPRS])
        out = {"pc": values[0]}
        out.update(zip(ABI_NAMES[1:], values[1:], strict=False))
        return out

    def read_csrs(self, uc: unicorn.Uc) -> dict[str, int]:
        """The trap CSRs, for fault reports."""
        regs = (rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MIE, rc.UC_RISCV_REG_MTVEC,
                rc.UC_RISCV_REG_MEPC, rc.UC_RISCV_REG_MCAUSE)  # fmt: skip
        return dict(zip(("mstatus", "mie", "mtvec", "mepc", "mcause"), uc.reg_read_batch(regs), strict=False))

    def pc(self, uc: unicorn.Uc) -> int:
        return uc.reg_read(rc.UC_RISCV_REG_PC)

    def set_pc(self, uc: unicorn.Uc, pc: int) -> None:
        uc.reg_write(rc.UC_RISCV_REG_PC, pc)

    # -- interrupts -------------------------------------------------------------------

    def interrupts_enabled(self, uc: unicorn.Uc) -> bool:
        """mstatus.MIE: the global machine interrupt enable."""
        return bool(uc.reg_read(rc.UC_RISCV_REG_MSTATUS) & MSTATUS_MIE)

    def pending_enable(self, uc: unicorn.Uc) -> tuple[bool, bool]:
        """(timer enabled, external enabled) from the mie CSR (MTIE, MEIE)."""
        mie = uc.reg_read(rc.UC_RISCV_REG_MIE)
        return bool(mie & MIE_MTIE), bool(mie & MIE_MEIE)

    def enter_interrupt(self, uc: unicorn.Uc, cause: int) -> int:
        """Take an interrupt now (invariant 2). Returns the handler address."""
        pc, mstatus, mtvec = uc.reg_read_batch(
            [rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MTVEC]
        )
        mpie = MSTATUS_MPIE if mstatus & MSTATUS_MIE else 0
        mstatus = (mstatus & ~(MSTATUS_MIE | MSTATUS_MPIE)) | mpie | MSTATUS_MPP
        base = mtvec & ~3
        target = base + 4 * (cause & 0x3FF) if mtvec & 3 == 1 else base
        uc.reg_write_batch(
            [
                (rc.UC_RISCV_REG_MEPC, pc),
                (rc.UC_RISCV_REG_MCAUSE, cause),
                (rc.UC_RISCV_REG_MSTATUS, mstatus),
                (rc.UC_RISCV_REG_PC, target),
            ]
        )
        return target

    # -- ecall and faults ---------------------------------------------------------------

    def syscall_args(self, uc: unicorn.Uc) -> tuple[int, int, int]:
        """(number, arg0, arg1) of an ecall: a7, a0, a1."""
        a7, a0, a1 = uc.reg_read_batch([rc.UC_RISCV_REG_A7, rc.UC_RISCV_REG_A0, rc.UC_RISCV_REG_A1])
        return a7, a0, a1

    def fault_name(self, intno: int) -> str:
        """Unicorn's UC_HOOK_INTR number as words."""
        return EXCEPTION_NAMES.get(intno, f"exception {intno}")

    # -- backtrace ------------------------------------------------------------------------

    @staticmethod
    def backtrace(
        read_u32: Callable[[int], int],
        pc: int,
        ra: int,
        fp: int,
        depth: int = 16,
        in_ram: Callable[[int], bool] | None = None,
        is_code: Callable[[int], bool] | None = None,
    ) -> list[int]:
        """Raw PCs: pc, then the return address of each frame up the s0 chain.

        RISC-V GCC with -fno-omit-frame-pointer keeps the saved ra at fp-4 and the
        caller's fp at fp-8, except in a leaf function, which saves only s0, at fp-4.
        With `is_code`, a first frame whose [fp-4] is not code is taken for a leaf:
        its caller is `ra` and the next frame pointer is [fp-4]. The walk stops at
        fp == 0, a frame outside RAM (`in_ram` false or `read_u32` raising), a
        misaligned fp, a zero return address, or a caller fp that does not grow
        (frames live higher up the stack). When no frame could be read, `ra` is the
        only caller.
        """
        pcs = [pc]
        first = True
        while fp and len(pcs) < depth:
            if fp & 3 or (in_ram is not None and not in_ram(fp - 8)):
                break
            try:
                ret, nxt = read_u32(fp - 4), read_u32(fp - 8)
            except (ValueError, IndexError):
                break
            if first and is_code is not None and not is_code(ret) and is_code(ra):
                ret, nxt = ra, ret  # a leaf frame: [fp-4] is the caller's fp
            first = False
            if not ret:
                break
            pcs.append(ret)
            if nxt <= fp:
                break
            fp = nxt
        if len(pcs) == 1 and ra:
            pcs.append(ra)
        return pcs
