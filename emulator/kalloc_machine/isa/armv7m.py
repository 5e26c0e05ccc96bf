"""ARMv7-M (Cortex-M4, Thumb-2): the `Isa` of the Cortex-M boards (isa/__init__.py).

Unicorn's ARM in M-class mode (UC_MODE_THUMB | UC_MODE_MCLASS, CPU model Cortex-M4).
What Unicorn 2.1.4 does and what this module does instead (checked on the engine):

  svc            UC_HOOK_INTR intno 2 (EXCP_SWI), PC already past the 2-byte svc: the
                 machine's exit/panic call (r12 = number, r0 = argument; r7 is the
                 Thumb frame pointer, so not Linux's r7 number register)
  wfi            halts the CPU and returns from emu_start without a count: each wfi of
                 the image is marked with `bkpt #0xab`, which traps through
                 UC_HOOK_INTR (intno 7, EXCP_BKPT) with PC at the bkpt (no code hook)
  udf            raises UC_ERR_INSN_INVALID out of emu_start (no hook sees it): the
                 machine's fallback reports it (inexact count), so it is not the mark
  exceptions     Unicorn's M-class takes no NVIC exception by itself and does not
                 unstack: `enter_interrupt` performs the entry (ARMv7-M ARM B1.5.6:
                 the 8-word frame r0-r3, r12, lr, ReturnAddress, xPSR on the active
                 stack, 8-byte aligned with xPSR bit 9 recording the pad; lr =
                 EXC_RETURN; IPSR = the exception number; pc = the vector at VTOR +
                 4*number, VTOR = FIRMWARE_LOAD); a `bx lr` (or pop) of EXC_RETURN in
                 handler mode reaches UC_HOOK_INTR as intno 8 (EXCP_EXCEPTION_EXIT) with
                 PC = EXC_RETURN & ~1, and `exception_return` unstacks (B1.5.8)
  idle sled      the system region (0xE000_0000 and up) is execute-never on M-profile,
                 so this ISA's sled lives at SLED_BASE in the executable external-RAM
                 region, below RAM_BASE
  PC             writing an even PC clears the Thumb state (the next fetch faults):
                 `set_pc` and the run loop (`code_bit`) always pass pc | 1

Interrupts (the System Control Space, isa/armv7m_scs.py, is this ISA's `core_devices`): the
SysTick (15), PendSV (14) and the NVIC's IRQ 0..31 (16 + n; IRQ 0 is the board's interrupt
controller's line) are taken at slice boundaries by priority (`next_exception`, B1.5.4):
only an exception whose group priority is higher than the execution priority (the active
exceptions', PRIMASK, BASEPRI, FAULTMASK) pre-empts, so a handler of a higher priority
nests inside a lower one (a second frame on the main stack, EXC_RETURN 0xFFFFFFF1).
Simplified: no tail-chaining and no late arrival: a return always unstacks, and the next
exception is taken at the next slice boundary (the frame is stacked again, as a
tail-chained exception's would not be; the handler sees the same state either way).
Exception entry (B1.5.6-7) stacks on the process stack in thread mode with CONTROL.SPSEL
set (EXC_RETURN 0xFFFFFFFD) and on the main stack otherwise (0xFFFFFFF9 from thread mode,
0xFFFFFFF1 from a handler), then runs the handler on the main stack (SPSEL cleared).
Exception return (B1.5.8) checks what the hardware checks and reports an illegal one as a
cpu-fault at the EXC_RETURN (the hardware's INVPC/INVSTATE UsageFault): an EXC_RETURN
that is not F1/F9/FD (the FP variants E1/E9/ED: the SDK is soft-float, no FP frame), a
return to handler mode with no other exception active, a return to thread mode with
another still active (CCR.NONBASETHRDENA is 0), a stacked xPSR whose exception number
does not match the mode returned to or whose Thumb bit is clear, a frame outside memory.
`interrupts_enabled` (the allocator's "may this caller sleep") is PRIMASK clear and
thread mode.

Backtraces: Thumb GCC's frame pointer r7 points at the bottom of the locals, not at
the saved {r7, lr} pair, so an r7 chain cannot be walked; `backtrace` unwinds with the
DWARF call-frame information of .debug_frame (read once per ELF: `read_elf`), and walks
through an exception frame (EXC_RETURN as a return address: the stacked pc is the
interrupted instruction).

Invariants:
 1. `enter_interrupt` is only called at a slice boundary, never from a hook.
 2. `backtrace` never raises: a frame it cannot read or unwind ends the walk.
 3. `pc()` is even (the address); what Unicorn is given is pc | 1.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import capstone
import unicorn
from unicorn import arm_const as ac

from kalloc_machine.devices import Clock
from kalloc_machine.isa import CodeScan, Isa, ReadCode, ReadU32
from kalloc_machine.isa.armv7m_scs import Scs
from kalloc_machine.isa.armv7m_unwind import Unwinder, walk_cfi
from kalloc_machine.memlayout import FIRMWARE_LOAD
from kalloc_machine.rawregs import read_batch, write_batch

# long-module: the whole Isa protocol for one CPU, with B1.5's exception entry and return checks
EXC_SYSTICK = 15
EXC_IRQ0 = 16
VTOR = FIRMWARE_LOAD  # the vector table starts the image (firmware/arm/crt0.S)
VECTOR_TABLE = "kalloc_vector_table"  # its symbol (its size says how many vectors it has)
SLED_BASE = 0x7800_0000  # external RAM region: executable on M-profile, below RAM_BASE
EXC_RETURN_HANDLER = 0xFFFF_FFF1
EXC_RETURN_THREAD = 0xFFFF_FFF9
EXC_RETURN_THREAD_PSP = 0xFFFF_FFFD
EXC_RETURNS = (EXC_RETURN_HANDLER, EXC_RETURN_THREAD, EXC_RETURN_THREAD_PSP)
CONTROL_SPSEL = 2
XPSR_ALIGN = 1 << 9  # stacked xPSR: the entry padded the frame by 4 bytes
XPSR_T = 1 << 24

WFI = b"\x30\xbf"
IDLE_MARK = b"\xab\xbe"  # bkpt #0xab
SLED_COUNT = b"\x0c\xf1\x01\x0c"  # add.w r12, r12, #1
NOP_W = b"\xaf\xf3\x00\x80"  # nop.w

INTR_NAMES: dict[int, str] = {
    1: "undefined instruction",
    2: "svc",
    3: "instruction fetch abort (execute-never or unmapped)",
    4: "data abort",
    7: "breakpoint (bkpt)",
    8: "exception return outside an exception",
}

GPR_NAMES: tuple[str, ...] = tuple(f"r{i}" for i in range(13)) + ("sp", "lr")
_GPRS: tuple[int, ...] = tuple(getattr(ac, f"UC_ARM_REG_R{i}") for i in range(13)) + (
    ac.UC_ARM_REG_SP, ac.UC_ARM_REG_LR)  # fmt: skip
_MASK_REGS = (ac.UC_ARM_REG_PRIMASK, ac.UC_ARM_REG_BASEPRI, ac.UC_ARM_REG_FAULTMASK)
_ARG_REGS = (ac.UC_ARM_REG_R0, ac.UC_ARM_REG_R1, ac.UC_ARM_REG_R2, ac.UC_ARM_REG_R3)
_FRAME_REGS = (ac.UC_ARM_REG_R0, ac.UC_ARM_REG_R1, ac.UC_ARM_REG_R2, ac.UC_ARM_REG_R3,
               ac.UC_ARM_REG_R12, ac.UC_ARM_REG_LR)  # fmt: skip
_REGS = (ac.UC_ARM_REG_PC, *_GPRS, ac.UC_ARM_REG_PSP)
_STATE_REGS = (ac.UC_ARM_REG_PRIMASK, ac.UC_ARM_REG_IPSR)
# Exception entry and return: each reads and writes in one ctypes call (rawregs.py), in the order
# the registers must be written (SP and CONTROL before IPSR moves the core into handler mode)
_ENTRY_READ = (*_FRAME_REGS, ac.UC_ARM_REG_PC, ac.UC_ARM_REG_XPSR, ac.UC_ARM_REG_SP, ac.UC_ARM_REG_CONTROL)
_ENTRY_WRITE = (ac.UC_ARM_REG_SP, ac.UC_ARM_REG_LR, ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_PC)
_ENTRY_WRITE_PSP = (ac.UC_ARM_REG_SP, ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_LR, ac.UC_ARM_REG_IPSR,
                    ac.UC_ARM_REG_PC)  # fmt: skip
_RETURN_READ = (ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_MSP, ac.UC_ARM_REG_PSP)
_RETURN_TAIL = (ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_XPSR, ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_PC)
_RETURN_WRITE_PSP = (*_FRAME_REGS, ac.UC_ARM_REG_PSP, *_RETURN_TAIL)
_RETURN_WRITE_MSP = (*_FRAME_REGS, ac.UC_ARM_REG_MSP, *_RETURN_TAIL)
_SVC_REGS = (ac.UC_ARM_REG_R12, ac.UC_ARM_REG_R0, ac.UC_ARM_REG_R1)
BatchUc = Any


def b_w(offset: int) -> bytes:
    """`b.w` (T4) by `offset` from its own address + 4, encoded."""
    off = offset & 0x1FF_FFFF
    s, i1, i2 = off >> 24 & 1, off >> 23 & 1, off >> 22 & 1
    j1, j2 = 1 - (i1 ^ s), 1 - (i2 ^ s)
    hw1 = 0xF000 | s << 10 | (off >> 12) & 0x3FF
    hw2 = 0x9000 | j1 << 13 | j2 << 11 | (off >> 1) & 0x7FF
    return hw1.to_bytes(2, "little") + hw2.to_bytes(2, "little")


class ArmV7M:
    """Cortex-M4 (ARMv7-M, Thumb-2) as Unicorn emulates it (module docstring)."""

    name = "armv7m"
    uc_arch = unicorn.UC_ARCH_ARM
    uc_mode = unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS
    elf_class = 32
    elf_machine = "EM_ARM"
    elf_description = "32-bit ARM (Cortex-M, Thumb-2)"
    reg_names: tuple[str, ...] = GPR_NAMES
    report_registers: tuple[str, ...] = ("lr", "sp", "r7", "r0", "r1", "r2")
    link_reg = "lr"
    timer_cause = EXC_SYSTICK
    external_cause = EXC_IRQ0
    ecall_intno = 2  # svc: PC already past it
    ecall_size = 2
    fault_pc_adjust = 0  # bkpt and fetch aborts: PC at the instruction
    idle_size = 2  # wfi (16-bit)
    idle_mark = IDLE_MARK
    illegal_intno = 7  # the mark (bkpt) traps so
    return_intno = 8  # EXCP_EXCEPTION_EXIT: bx lr of an EXC_RETURN in handler mode
    return_mark = b""  # nothing to mark: the return traps by itself
    frame_chain = False  # the hypercall stub passes fp = 0: the bridge unwinds from the CPU
    undefined_intno = 1  # udf & co. reach UC_HOOK_INSN_INVALID, not the interrupt hook: named as this
    sled_step = 4  # add.w, nop.w, b.w
    sled_counter = ac.UC_ARM_REG_R12
    sled_base = SLED_BASE
    code_bit = 1  # the Thumb bit every PC given to Unicorn carries

    def __init__(self) -> None:
        self._cs: Any = None
        self._csd: Any = None  # capstone with operand details (memory_operand)
        self.unwind = Unwinder()
        self.data_ranges: list[tuple[int, int]] = []  # ($d, next mapping symbol) in code sections
        self.reports: list[str] = []  # a bare engine's exception errors (no machine: `core_devices`)
        self.scs = Scs(Clock(), None, None, self.reports.append)  # replaced by the machine's

    def core_devices(self, machine: Any) -> list[Any]:
        """The System Control Space (NVIC, SysTick, SCB) of the machine's CPU (isa/armv7m_scs.py).
        Its errors and this ISA's exception errors end the run as cpu-faults at the CPU's pc."""
        uc = machine.uc

        def report(message: str) -> None:
            machine.fatal(machine.faults.cpu_fault(message, self.pc(uc)), "fault")

        self.scs = scs = Scs(machine.clock, machine.intc, machine.clint, report)
        table = machine.firmware.symbol_addr(VECTOR_TABLE)
        sizes = [size for addr, size, name in machine.firmware.symtab.entries if name == VECTOR_TABLE]
        if table is not None and sizes and sizes[0]:
            scs.table = (table, sizes[0] // 4)  # the SDK's table: exceptions past its end have no vector
        scs.pc_of = lambda: self.pc(uc)

        def read_masks() -> tuple[int, int, int]:
            primask, basepri, faultmask = read_batch(uc, _MASK_REGS)
            return primask, basepri, faultmask

        scs.read_masks = read_masks
        return [scs]

    # -- setup ----------------------------------------------------------------------

    def setup(self, uc: unicorn.Uc) -> None:
        """Select the Cortex-M4 model (before anything else touches the engine)."""
        uc.ctl_set_cpu_model(ac.UC_CPU_ARM_CORTEX_M4)

    def read_elf(self, elf: Any) -> None:
        """The unwind table (.debug_frame) and the data-in-code ranges (mapping symbols $d)."""
        self.unwind = Unwinder.from_elf(elf)
        symtab = elf.get_section_by_name(".symtab")
        marks = []
        if symtab is not None:
            for sym in symtab.iter_symbols():
                if sym.name in ("$d", "$t", "$a") or sym.name.startswith(("$d.", "$t.", "$a.")):
                    marks.append((sym["st_value"], sym.name[1]))
        marks.sort()
        self.data_ranges = [(a, marks[i + 1][0] if i + 1 < len(marks) else a + 4)
                            for i, (a, kind) in enumerate(marks) if kind == "d"]  # fmt: skip

    def bind(self, other: Isa) -> None:
        """Take what the firmware's reading learned (the machine's own instance)."""
        if isinstance(other, ArmV7M):
            self.unwind, self.data_ranges = other.unwind, other.data_ranges

    # -- registers ------------------------------------------------------------------

    def read_regs(self, uc: BatchUc) -> dict[str, int]:
        """pc, r0..r12, sp, lr (lr without its Thumb bit unless it is an EXC_RETURN), psp (the
        process stack: the unwinder crosses an EXC_RETURN 0xFFFFFFFD frame there)."""
        values = read_batch(uc, _REGS)  # one ctypes call: every hypercall's backtrace starts here
        out = {"pc": values[0]}
        out.update(zip(GPR_NAMES, values[1:], strict=False))
        out["psp"] = values[-1]
        if out["lr"] < 0xF000_0000:
            out["lr"] &= ~1
        return out

    def read_csrs(self, uc: BatchUc) -> dict[str, int]:
        regs = (ac.UC_ARM_REG_XPSR, ac.UC_ARM_REG_PRIMASK, ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_MSP,
                ac.UC_ARM_REG_PSP, ac.UC_ARM_REG_BASEPRI)  # fmt: skip
        names = ("xpsr", "primask", "control", "msp", "psp", "basepri")
        return dict(zip(names, uc.reg_read_batch(regs), strict=False))

    def pc(self, uc: unicorn.Uc) -> int:
        pc: int = uc.reg_read(ac.UC_ARM_REG_PC)
        return pc & ~1

    def set_pc(self, uc: unicorn.Uc, pc: int) -> None:
        uc.reg_write(ac.UC_ARM_REG_PC, pc | 1)

    # -- interrupts -------------------------------------------------------------------

    def interrupts_enabled(self, uc: BatchUc) -> bool:
        """PRIMASK clear and thread mode: the caller may sleep (an active handler may not)."""
        primask, ipsr = read_batch(uc, _STATE_REGS)
        return not primask & 1 and not ipsr & 0x1FF

    def pending_enable(self, uc: unicorn.Uc) -> tuple[bool, bool]:
        """(SysTick can pend, NVIC IRQ 0 (the interrupt controller's line) is enabled)."""
        return self.scs.timer_enabled(), bool(self.scs.enabled & 1)

    def enter_interrupt(self, uc: BatchUc, cause: int) -> int:
        """Exception entry (B1.5.6 PushStack, B1.5.7 ExceptionTaken): the frame on the active
        stack, the handler on the main stack. Returns the handler address (0: the entry failed
        and was reported)."""
        r0, r1, r2, r3, r12, lr, pc, xpsr, sp, control = read_batch(uc, _ENTRY_READ)
        handler_mode = bool(xpsr & 0x1FF)
        on_psp = not handler_mode and control & CONTROL_SPSEL
        pad = 4 if sp & 4 else 0
        frame = (sp - 32 - pad) & 0xFFFF_FFFF
        stacked_xpsr = (xpsr & ~XPSR_ALIGN) | XPSR_T | (XPSR_ALIGN if pad else 0)
        words = (r0, r1, r2, r3, r12, lr, pc & ~1, stacked_xpsr)
        scs = self.scs
        vector_at = scs.vtor + 4 * cause
        if scs.vtor == scs.table[0] and cause >= scs.table[1]:
            scs.report(f"exception {cause} (IRQ {cause - 16}) pending and enabled, but the vector table at "
                       f"VTOR {scs.vtor:#x} ({VECTOR_TABLE}) has {scs.table[1]} entries: it has no handler")
            return 0
        try:
            uc.mem_write(frame, b"".join(w.to_bytes(4, "little") for w in words))
            handler = int.from_bytes(uc.mem_read(vector_at, 4), "little")
        except unicorn.UcError:
            scs.report(f"exception {cause} entry: the frame at {frame:#x} ({'process' if on_psp else 'main'} "
                       f"stack) or the vector at VTOR {scs.vtor:#x} + {4 * cause} is not memory (a stacking "
                       "or vector-table fetch error)")  # fmt: skip
            return 0
        if not handler & 1:
            scs.report(f"exception {cause} entry: its vector at {vector_at:#x} is {handler:#x}, without the "
                       "Thumb bit (an INVSTATE UsageFault on a Cortex-M)")  # fmt: skip
            return 0
        exc_return = EXC_RETURN_THREAD_PSP if on_psp else EXC_RETURN_THREAD
        exc_return = EXC_RETURN_HANDLER if handler_mode else exc_return
        # SP first: the active stack (PSP in thread mode with SPSEL); then the handler runs on MSP
        if on_psp:
            spsel_off = control & ~CONTROL_SPSEL
            write_batch(uc, _ENTRY_WRITE_PSP, (frame, spsel_off, exc_return, cause, handler | 1))
        else:
            write_batch(uc, _ENTRY_WRITE, (frame, exc_return, cause, handler | 1))
        scs.activate(cause)
        return handler & ~1

    def next_exception(self) -> tuple[int, bool]:
        """(the pending exception that pre-empts now or 0, True when one waits for the priority)."""
        return self.scs.pick()

    def exception_return(self, uc: BatchUc) -> bool:
        """From the interrupt hook (intno `return_intno`): check and perform the exception return
        (B1.5.8). An illegal one is reported (a cpu-fault at the EXC_RETURN; the run ends) and
        True is returned: the hook has nothing more to do."""
        exc_return = (self.pc(uc) | 1) & 0xFFFF_FFFF
        why = self._unstack(uc, exc_return)
        if why is not None:
            self.scs.report(f"illegal exception return: EXC_RETURN {exc_return:#010x} {why}")
        return True

    def _unstack(self, uc: BatchUc, exc_return: int) -> str | None:  # long: one check per rule of B1.5.8
        """Unstack for exc_return, or say why the hardware would fault instead."""
        if exc_return not in EXC_RETURNS:
            if exc_return in (0xFFFF_FFE1, 0xFFFF_FFE9, 0xFFFF_FFED):
                return "asks for a floating-point frame: this machine stacks none (the SDK is soft-float)"
            return "is not 0xfffffff1, 0xfffffff9 or 0xfffffffd (an INVPC UsageFault on a Cortex-M)"
        active = self.scs.active
        ipsr, control, msp, psp = read_batch(uc, _RETURN_READ)
        current = ipsr & 0x1FF
        if not active or active[-1] != current:
            return f"from exception {current}, which the machine did not take (active: {active or 'none'})"
        to_handler = exc_return == EXC_RETURN_HANDLER
        if to_handler and len(active) < 2:
            return "returns to handler mode, but no other exception is active (INVPC)"
        if not to_handler and len(active) > 1:
            return (f"returns to thread mode while exception {active[-2]} is still active (INVPC: "
                    "CCR.NONBASETHRDENA is 0)")  # fmt: skip
        sp = psp if exc_return == EXC_RETURN_THREAD_PSP else msp
        try:
            raw = bytes(uc.mem_read(sp, 32))
        except unicorn.UcError:
            return f"unstacks from {sp:#x}, which is not memory (an unstacking error)"
        r0, r1, r2, r3, r12, lr, pc, xpsr = struct.unpack("<8I", raw)
        frame_exc = xpsr & 0x1FF
        back_to = active[-2] if to_handler else 0
        if frame_exc != back_to:
            where = f"exception {back_to}" if back_to else "thread mode"
            return (f"finds exception number {frame_exc} in the stacked xPSR at {sp + 28:#x}, but returns to "
                    f"{where}: a spoofed or corrupted frame (INVPC)")  # fmt: skip
        if not xpsr & XPSR_T:
            return f"finds the Thumb bit clear in the stacked xPSR {xpsr:#010x} at {sp + 28:#x} (INVSTATE)"
        new_sp = (sp + 32 + (4 if xpsr & XPSR_ALIGN else 0)) & 0xFFFF_FFFF
        psp_back = exc_return == EXC_RETURN_THREAD_PSP  # the frame's stack pointer, then CONTROL.SPSEL
        control = control | CONTROL_SPSEL if psp_back else control & ~CONTROL_SPSEL
        values = (r0, r1, r2, r3, r12, lr, new_sp, control, xpsr & ~XPSR_ALIGN, frame_exc, pc | 1)
        write_batch(uc, _RETURN_WRITE_PSP if psp_back else _RETURN_WRITE_MSP, values)
        active.pop()
        return None

    # -- traps ---------------------------------------------------------------------------

    def syscall_args(self, uc: BatchUc) -> tuple[int, int, int]:
        """(number, arg0, arg1) of an svc: r12, r0, r1."""
        r12, r0, r1 = read_batch(uc, _SVC_REGS)
        return r12, r0, r1

    def fault_name(self, intno: int) -> str:
        return INTR_NAMES.get(intno, f"exception {intno}")

    # -- instructions ---------------------------------------------------------------------

    def insn_size(self, code: bytes) -> int:
        """4 for a 32-bit Thumb-2 instruction (first halfword 0b11101/0b11110/0b11111), else 2."""
        hw = int.from_bytes(code[:2], "little")
        return 4 if hw >> 11 in (0x1D, 0x1E, 0x1F) else 2

    def _disasm(self) -> Any:
        if self._cs is None:
            self._cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        return self._cs

    def disassemble(self, pc: int, code: bytes) -> str:
        for _addr, _size, mnemonic, op_str in self._disasm().disasm_lite(code, pc, 1):
            return f"{mnemonic} {op_str}".strip()
        if len(code) >= 4 and self.insn_size(code) == 4:
            return f".word {int.from_bytes(code[:4], 'little'):#010x}"
        if len(code) >= 2:
            return f".short {int.from_bytes(code[:2], 'little'):#06x}"
        return "??"

    def memory_operand(self, read: ReadCode, pc: int, regs: dict[str, int]) -> tuple[int, int] | None:
        """(address, width) of the load/store at pc: base + index (shifted) + offset (pc-relative
        literals from Align(pc + 4, 4)); the width from the mnemonic. None for anything else."""
        if self._csd is None:
            self._csd = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
            self._csd.detail = True
        for insn in self._csd.disasm(read(pc, 4), pc, 1):
            ops = [op for op in insn.operands if op.type == capstone.arm.ARM_OP_MEM]
            if not ops or not insn.mnemonic.startswith(("ld", "st")):
                return None
            mem = ops[0].mem
            base = insn.reg_name(mem.base) if mem.base else None
            value = ((pc + 4) & ~3) if base == "pc" else regs.get(base or "", 0)
            if mem.index:
                shift = ops[0].shift.value if ops[0].shift.type == capstone.arm.ARM_SFT_LSL else 0
                value += regs.get(insn.reg_name(mem.index), 0) << shift
            op = insn.mnemonic.split(".")[0]
            width = 1 if op.endswith("b") else 2 if op.endswith("h") else 8 if op.endswith("d") else 4
            writeback_post = len(insn.operands) > 2 and insn.operands[-1].type == capstone.arm.ARM_OP_IMM
            return (value + (0 if writeback_post else mem.disp)) & 0xFFFF_FFFF, width
        return None

    def _is_data(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.data_ranges)

    def scan_code(self, ranges: Sequence[tuple[int, bytes]]) -> CodeScan:
        """Every 16-bit `wfi` (data in code, mapping symbol $d, skipped); no counter hazards."""
        md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        md.skipdata = True
        idle: list[int] = []
        for base, code in ranges:
            at = code.find(WFI)
            if at < 0:
                continue
            for addr, size, _mnemonic, _ops in md.disasm_lite(code, base):
                if size == 2 and code[addr - base : addr - base + 2] == WFI and not self._is_data(addr):
                    idle.append(addr)
        return idle, []

    def scan_returns(self, ranges: Sequence[tuple[int, bytes]]) -> list[int]:
        """None: an exception return reaches the interrupt hook (`return_intno`)."""
        return []

    def idle_sled(self, base: int, length: int) -> bytes:
        """The lap counter (r12 += 1), length-2 `nop.w`, then `b.w` back to base."""
        return SLED_COUNT + NOP_W * (length - 2) + b_w(-4 * (length - 1) - 4)

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
        """The CFI unwind from pc (see `walk_cfi`)."""
        return walk_cfi(self.unwind, read_u32, pc, regs, depth, in_ram, is_code)

    def call_setup(self, uc: unicorn.Uc, function: int, args: Sequence[int], return_to: int) -> None:
        """Arguments in r0..r3, lr = return_to, pc = function (AAPCS)."""
        if len(args) > len(_ARG_REGS):
            raise ValueError("at most 4 register arguments (r0..r3)")
        for reg, value in zip(_ARG_REGS, args, strict=False):
            uc.reg_write(reg, value & 0xFFFF_FFFF)
        uc.reg_write(ac.UC_ARM_REG_LR, return_to | 1)
        uc.reg_write(ac.UC_ARM_REG_PC, function | 1)

    def return_value(self, uc: unicorn.Uc) -> int:
        r0: int = uc.reg_read(ac.UC_ARM_REG_R0)
        return r0


Cpu = ArmV7M  # the name isa_for() looks up
