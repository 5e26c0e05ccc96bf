"""RISC-V RV32IMAC in machine mode: the `Isa` of every board so far (isa/__init__.py).

Holds what the machine needs to know about this CPU: Unicorn's arch/mode, the ABI
register names, the trap entry (at slice boundaries) and the CSRs gating interrupts, the
`ecall` convention, Unicorn's interrupt numbers, instruction lengths, decoding for reports
(capstone; loads and stores for fault addresses: isa/rv32_decode.py, with the encodings the
machine writes), the `wfi`/counter-CSR scan of an ELF's code, the idle sled, and the
frame-pointer backtrace (its walk: isa/rv32_unwind.py) and call convention.

Data: registers are read in one `reg_read_batch` call (a Python `reg_read` costs ~1-2 µs:
registers are read only at boundaries, faults and ecalls).

Invariants:
 1. `enter_interrupt` is only called at a slice boundary, never from a hook.
 2. Interrupt entry follows the privileged spec for M-mode: mepc ← pc, mcause ← cause,
    mstatus.MPIE ← MIE, MIE ← 0, MPP ← M, pc ← mtvec (base + 4*code when vectored).
    Every `mret` of the ELF is marked (RETURN_MARK, irqstate.py): it traps, counts as one, and
    `exception_return` performs it (M-mode only: MIE ← MPIE, MPIE ← 1, MPP ← U, priv ← MPP).
 3. `backtrace` never raises (rv32_unwind.py's invariant 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import capstone
import unicorn
from unicorn import riscv_const as rc

from kalloc_machine.isa import CodeScan, ReadCode, ReadU32, rv32_decode
from kalloc_machine.isa.rv32_decode import (
    IDLE_MARK,
    MRET,
    NOP,
    RETURN_MARK,
    SLED_COUNT,
    effective_access,
    jal_x0,
)
from kalloc_machine.isa.rv32_entry import TrapImage
from kalloc_machine.isa.rv32_unwind import walk_frames
from kalloc_machine.memlayout import IDLE_SLED_BASE
from kalloc_machine.rawregs import batch_reader, read_batch, word_reader, write_batch

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

PRIV_M = 3  # UC_RISCV_REG_PRIV's encoding of machine mode (U = 0, S = 1)
# Unicorn 2.1.4's Uc has reg_read_batch/reg_write_batch (from RegStateManager), which
# mypy's view of the package lacks: the methods that batch take `uc` as this alias.
BatchUc = Any
_GPRS: tuple[int, ...] = tuple(getattr(rc, f"UC_RISCV_REG_X{i}") for i in range(1, 32))
_ARG_REGS: tuple[int, ...] = tuple(getattr(rc, f"UC_RISCV_REG_A{i}") for i in range(8))
# The trap entry's and mret's registers, read and written in one ctypes call each (rawregs.py)
_ENTRY_READ = (rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MTVEC)
_ENTRY_WRITE = (rc.UC_RISCV_REG_MEPC, rc.UC_RISCV_REG_MCAUSE, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_PC)
_RETURN_READ = (rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_PRIV, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MEPC)
_RETURN_WRITE = (rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_PRIV)
_RETURN_CHECK = (rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_PRIV, rc.UC_RISCV_REG_MEPC)
_FINISH_READ = (rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MEPC)
_PC = (rc.UC_RISCV_REG_PC,)
_STATUS = (rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MIE)  # a boundary's interrupt delivery
_NO_IMAGE: Any = object()  # TrapImage.locate found nothing on this engine: register writes


class RiscV32:
    """RV32IMAC, machine mode, as Unicorn emulates it (2.1.4)."""

    name = "rv32imac"
    uc_arch = unicorn.UC_ARCH_RISCV
    uc_mode = unicorn.UC_MODE_RISCV32
    # ELF identity (e_machine is the string pyelftools reports)
    elf_class = 32
    elf_machine = "EM_RISCV"
    elf_description = "32-bit RISC-V"
    reg_names: tuple[str, ...] = ABI_NAMES[1:]
    # The text report's short registers line: return address, stack and frame pointers, first arguments.
    report_registers: tuple[str, ...] = ("ra", "sp", "s0", "a0", "a1", "a2")
    link_reg = "ra"
    timer_cause = CAUSE_TIMER
    external_cause = CAUSE_EXTERNAL
    ecall_intno = 8  # Unicorn delivers M-mode ecall as intno 8, PC already past it
    ecall_size = 4
    fault_pc_adjust = 4  # other intnos: Unicorn has advanced PC by 4, even past a 16-bit insn
    idle_size = 4  # wfi
    idle_mark = IDLE_MARK
    illegal_intno = 2  # Unicorn's intno for an illegal instruction (the marked wfi traps so)
    sled_step = 4  # the sled's counter, nops and jump are 32-bit
    sled_counter = rc.UC_RISCV_REG_T6  # the register the sled counts its laps in
    sled_base = IDLE_SLED_BASE
    return_intno = 2  # a marked mret traps as an illegal instruction: `exception_return` performs it
    return_mark = RETURN_MARK
    return_insn = MRET  # the sled's real mret a marked one is sent to (sled.py, `return_via`)
    frame_chain = True  # the hypercall stub's fp heads an s0 chain the bridge walks in RAM
    undefined_intno = -1  # an illegal instruction traps through the interrupt hook (intno 2)
    code_bit = 0
    it_blocks = False  # no Thumb IT blocks: the sled never asks redirect_lost

    def __init__(self) -> None:
        self._cs: Any = None  # capstone, opened on the first disassembly
        self.returns: frozenset[int] = frozenset()  # every mret of the ELF's code (scan_returns)
        self._image: Any = None  # the entry's TrapImage for the engine it was found on, or _NO_IMAGE
        self._pc_reader: tuple[Any, Callable[[], tuple[int, ...] | None]] | None = None  # (engine, reader)
        self._status_reader: tuple[Any, Callable[[], tuple[int, ...] | None]] | None = None  # mstatus, mie
        self._word_reader: tuple[Any, Callable[[int], int | None]] | None = None  # a marked mret's check

    # -- port hooks (nothing to do on this ISA) ----------------------------------------

    def setup(self, uc: unicorn.Uc) -> None:
        pass

    def read_elf(self, elf: Any) -> None:
        pass

    def bind(self, other: Any) -> None:
        self.returns = other.returns  # the machine's instance knows the firmware's mrets

    def core_devices(self, machine: Any) -> list[Any]:
        """None: the CLINT and the INTC are the board's devices."""
        return []

    def exception_return(self, uc: BatchUc) -> bool:
        """From the interrupt hook (intno 2, PC 4 past it): perform a marked `mret` in M-mode
        (invariant 2); False for any other illegal instruction (an mret outside M-mode too)."""
        pc, priv, mstatus, mepc = read_batch(uc, _RETURN_READ)
        if not self._is_marked_return(uc, pc - self.fault_pc_adjust, priv):
            return False
        self._perform_return(uc, mstatus, mepc)
        return True

    def return_via(self, uc: BatchUc, at: int) -> int | None:
        """As `exception_return`, but sends the PC to the real `mret` at `at` (sled.py, "Returns"):
        QEMU performs it, without a TLB flush. Its mepc, or None: not a marked return."""
        pc, priv, mepc = read_batch(uc, _RETURN_CHECK)
        if not self._is_marked_return(uc, pc - self.fault_pc_adjust, priv):
            return None
        write_batch(uc, _PC, (at,))
        return int(mepc)

    def finish_return(self, uc: BatchUc) -> None:
        """Perform the sled's `mret` the CPU stands on at a boundary, uncounted (its mark was)."""
        self._perform_return(uc, *read_batch(uc, _FINISH_READ))

    def _is_marked_return(self, uc: BatchUc, pc: int, priv: int) -> bool:
        if pc not in self.returns or priv != PRIV_M:
            return False
        reader = self._word_reader
        if reader is None or reader[0] is not uc:
            reader = self._word_reader = (uc, word_reader(uc))
        word = reader[1](pc)
        return (bytes(uc.mem_read(pc, 4)) if word is None else word.to_bytes(4, "little")) == RETURN_MARK

    @staticmethod
    def _perform_return(uc: BatchUc, mstatus: int, mepc: int) -> None:  # MIE <- MPIE, MPIE <- 1, MPP <- U
        mpp = (mstatus & MSTATUS_MPP) >> 11  # the mode returned to (the reserved 2 is U, as in QEMU)
        mstatus = (mstatus & ~(MSTATUS_MIE | MSTATUS_MPP)) | (MSTATUS_MIE if mstatus & MSTATUS_MPIE else 0)
        write_batch(uc, _RETURN_WRITE, (mstatus | MSTATUS_MPIE, mepc, 0 if mpp == 2 else mpp))

    # -- registers ------------------------------------------------------------------

    def read_regs(self, uc: BatchUc) -> dict[str, int]:
        """pc and x1..x31 by ABI name, in one batch read."""
        values = uc.reg_read_batch([rc.UC_RISCV_REG_PC, *_GPRS])
        out = {"pc": values[0]}
        out.update(zip(ABI_NAMES[1:], values[1:], strict=False))
        return out

    def read_csrs(self, uc: BatchUc) -> dict[str, int]:
        """The trap CSRs, for fault reports."""
        regs = (rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MIE, rc.UC_RISCV_REG_MTVEC,
                rc.UC_RISCV_REG_MEPC, rc.UC_RISCV_REG_MCAUSE)  # fmt: skip
        return dict(zip(("mstatus", "mie", "mtvec", "mepc", "mcause"), uc.reg_read_batch(regs), strict=False))

    def redirect_lost(self, uc: unicorn.Uc, synced: bool) -> bool:
        """A PC written from a hook always takes on RV32 (no IT blocks: `it_blocks`, never asked)."""
        return False

    def hook_settler(self, uc: unicorn.Uc) -> None:
        """A memory hook leaves RV32's state as translated code assumes: nothing to call."""
        return None

    def pc(self, uc: unicorn.Uc) -> int:  # one untyped ctypes call (rawregs.batch_reader): every boundary
        reader = self._pc_reader
        if reader is None or reader[0] is not uc:
            reader = self._pc_reader = (uc, batch_reader(uc, _PC))
        got = reader[1]()
        pc: int = got[0] if got is not None else uc.reg_read(rc.UC_RISCV_REG_PC)
        return pc

    def set_pc(self, uc: unicorn.Uc, pc: int) -> None:
        uc.reg_write(rc.UC_RISCV_REG_PC, pc)

    # -- interrupts -------------------------------------------------------------------

    def _status(self, uc: unicorn.Uc) -> tuple[int, int]:
        """(mstatus, mie) in one untyped ctypes call (rawregs.batch_reader), as `pc` reads."""
        reader = self._status_reader
        if reader is None or reader[0] is not uc:
            reader = self._status_reader = (uc, batch_reader(uc, _STATUS))
        got = reader[1]()
        return (got[0], got[1]) if got is not None else (uc.reg_read(_STATUS[0]), uc.reg_read(_STATUS[1]))

    def interrupts_enabled(self, uc: unicorn.Uc) -> bool:
        """mstatus.MIE: the global machine interrupt enable."""
        return bool(self._status(uc)[0] & MSTATUS_MIE)

    def pending_enable(self, uc: unicorn.Uc) -> tuple[bool, bool]:
        """(timer enabled, external enabled) from the mie CSR (MTIE, MEIE)."""
        mie = self._status(uc)[1]
        return bool(mie & MIE_MTIE), bool(mie & MIE_MEIE)

    def enter_interrupt(self, uc: BatchUc, cause: int) -> int:
        """Take an interrupt now (invariant 2). Returns the handler address. Stored into the CPU
        state as QEMU's own entry does, without a TLB flush, where it can (isa/rv32_entry.py)."""
        image = self._image
        if image is None or (image is not _NO_IMAGE and image.uc is not uc):
            image = self._image = TrapImage.locate(uc) or _NO_IMAGE
        if image is not _NO_IMAGE and (handler := image.enter(cause)) is not None:
            return int(handler)
        pc, mstatus, mtvec = read_batch(uc, _ENTRY_READ)
        mpie = MSTATUS_MPIE if mstatus & MSTATUS_MIE else 0
        mstatus = (mstatus & ~(MSTATUS_MIE | MSTATUS_MPIE)) | mpie | MSTATUS_MPP
        base = mtvec & ~3
        target: int = base + 4 * (cause & 0x3FF) if mtvec & 3 == 1 else base
        write_batch(uc, _ENTRY_WRITE, (pc, cause, mstatus, target))
        return target

    # -- ecall and faults ---------------------------------------------------------------

    def syscall_args(self, uc: BatchUc) -> tuple[int, int, int]:
        """(number, arg0, arg1) of an ecall: a7, a0, a1."""
        a7, a0, a1 = uc.reg_read_batch([rc.UC_RISCV_REG_A7, rc.UC_RISCV_REG_A0, rc.UC_RISCV_REG_A1])
        return a7, a0, a1

    def fault_name(self, intno: int) -> str:
        """Unicorn's UC_HOOK_INTR number as words."""
        return EXCEPTION_NAMES.get(intno, f"exception {intno}")

    # -- instructions ---------------------------------------------------------------------

    def insn_size(self, code: bytes) -> int:
        """2 for a compressed instruction, else 4 (from its first byte)."""
        return 4 if code[0] & 3 == 3 else 2

    def disassemble(self, pc: int, code: bytes) -> str:
        """The one instruction at the start of `code` (read at pc), as text (a marked mret: `mret`)."""
        if pc in self.returns and code.startswith(RETURN_MARK):
            return "mret"
        if self._cs is None:
            self._cs = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
        for _addr, _size, mnemonic, op_str in self._cs.disasm_lite(code, pc, 1):
            return f"{mnemonic} {op_str}".strip()
        if len(code) >= 2 and code[0] & 3 != 3:
            return f".half {int.from_bytes(code[:2], 'little'):#06x}"
        if len(code) >= 4:
            return f".word {int.from_bytes(code[:4], 'little'):#010x}"
        return "??"

    def memory_operand(self, read: ReadCode, pc: int, regs: dict[str, int]) -> tuple[int, int] | None:
        """(address, width) the load/store/AMO at pc touches, from its base register."""
        h = int.from_bytes(read(pc, 2), "little")
        word = int.from_bytes(read(pc, 4), "little") if h & 3 == 3 else h
        got = effective_access(h, word)
        if got is None:
            return None
        rs1, off, width = got
        return ((regs.get(ABI_NAMES[rs1], 0) if rs1 else 0) + off) & 0xFFFF_FFFF, width

    def scan_code(self, ranges: Sequence[tuple[int, bytes]]) -> CodeScan:
        """Every `wfi` (the machine idles there) and the first read of each counter CSR."""
        return rv32_decode.scan_code(ranges)

    def scan_returns(self, ranges: Sequence[tuple[int, bytes]]) -> list[int]:
        """Every `mret` of the code sections at an instruction start (rv32_decode.scan_returns);
        kept in `returns` for `disassemble` and `exception_return`."""
        found = rv32_decode.scan_returns(ranges)
        self.returns = frozenset(found)
        return found

    def idle_sled(self, base: int, length: int) -> bytes:
        """The lap counter (t6 += 1), length-2 nops, then a jump back to base."""
        return SLED_COUNT + NOP * (length - 2) + jal_x0(-4 * (length - 1))

    # -- calls ------------------------------------------------------------------------------

    def backtrace(
        self,
        read_u32: ReadU32,
        pc: int,
        regs: dict[str, int],
        depth: int = 16,
        in_ram: Callable[[int], bool] | None = None,
        is_code: Callable[[int], bool] | None = None,
    ) -> list[int]:
        """The s0 chain from pc (see `walk_frames`)."""
        return walk_frames(read_u32, pc, regs["ra"], regs["s0"], depth, in_ram, is_code)

    def call_setup(self, uc: unicorn.Uc, function: int, args: Sequence[int], return_to: int) -> None:
        """Arguments in a0..a7, ra = return_to, pc = function (the caller saves the context)."""
        if len(args) > len(_ARG_REGS):
            raise ValueError("at most 8 register arguments (a0..a7)")
        for reg, value in zip(_ARG_REGS, args, strict=False):
            uc.reg_write(reg, value & 0xFFFF_FFFF)
        uc.reg_write(rc.UC_RISCV_REG_RA, return_to)
        uc.reg_write(rc.UC_RISCV_REG_PC, function)

    def return_value(self, uc: unicorn.Uc) -> int:
        """a0."""
        a0: int = uc.reg_read(rc.UC_RISCV_REG_A0)
        return a0


Cpu = RiscV32  # the name isa_for() looks up
