"""ARMv7-M (Cortex-M4, Thumb-2): the `Isa` of the Cortex-M boards (isa/__init__.py).

Unicorn's ARM in M-class mode (UC_MODE_THUMB | UC_MODE_MCLASS, CPU model Cortex-M4).
What Unicorn 2.1.4 does and what this ISA does instead (checked on the engine):

  svc            UC_HOOK_INTR intno 2 (EXCP_SWI), PC already past the 2-byte svc: the
                 machine's exit/panic call (r12 = number, r0 = argument; r7 is the
                 Thumb frame pointer, so not Linux's r7 number register)
  wfi            halts the CPU and returns from emu_start without a count: each wfi of
                 the image is marked with `bkpt #0xab`, which traps through
                 UC_HOOK_INTR (intno 7, EXCP_BKPT) with PC at the bkpt (no code hook)
  udf            raises UC_ERR_INSN_INVALID out of emu_start (no hook sees it): the
                 machine's fallback reports it (inexact count), so it is not the mark
  exceptions     Unicorn's M-class takes no NVIC exception by itself and does not
                 unstack: `enter_interrupt` and `exception_return` perform B1.5's entry
                 and return (isa/armv7m_exc.py); a `bx lr` (or pop) of EXC_RETURN in
                 handler mode reaches UC_HOOK_INTR as intno 8 (EXCP_EXCEPTION_EXIT)
  idle sled      the system region (0xE000_0000 and up) is execute-never on M-profile,
                 so this ISA's sled lives at SLED_BASE in the executable external-RAM
                 region, below RAM_BASE
  PC             writing an even PC clears the Thumb state (the next fetch faults):
                 `set_pc` and the run loop (`code_bit`) always pass pc | 1

The module is the Isa protocol's glue; the work is in three modules beside it:
  isa/armv7m_decode.py   Thumb-2 decoding: sizes, text, the accesses of a load/store
                         (one, or a multi-register transfer), the wfi scan, the idle sled
  isa/armv7m_exc.py      the exception model: entry (B1.5.6-7) and return (B1.5.8)
  isa/armv7m_scs.py      the System Control Space (NVIC, SysTick, SCB): `core_devices`
  isa/armv7m_unwind.py   the DWARF CFI unwinder (`backtrace`, the hypercall's walker)

Interrupts: the SysTick (15), PendSV (14) and the NVIC's IRQ 0..31 (16 + n; IRQ 0 is the
board's interrupt controller's line) are taken at slice boundaries by priority
(`next_exception`, B1.5.4): only an exception whose group priority is higher than the
execution priority (the active exceptions', PRIMASK, BASEPRI, FAULTMASK) pre-empts, so a
handler of a higher priority nests inside a lower one (a second frame on the main stack,
EXC_RETURN 0xFFFFFFF1). `interrupts_enabled` (the allocator's "may this caller sleep") is
PRIMASK clear and thread mode.

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

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import unicorn
from unicorn import arm_const as ac

from kalloc_machine.devices import Clock
from kalloc_machine.isa import CodeScan, Isa, ReadCode, ReadU32
from kalloc_machine.isa import armv7m_exc as exc
from kalloc_machine.isa.armv7m_decode import IDLE_MARK, ThumbDecoder, idle_sled, insn_size
from kalloc_machine.isa.armv7m_it import ItBlocks
from kalloc_machine.isa.armv7m_scs import Scs
from kalloc_machine.isa.armv7m_unwind import Unwinder, walk_cfi
from kalloc_machine.rawcount import counter
from kalloc_machine.rawregs import batch_reader, engine_handle, read_batch, uclib

EXC_SYSTICK = 15
EXC_IRQ0 = 16
SLED_BASE = 0x7800_0000  # external RAM region: executable on M-profile, below RAM_BASE

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
_REGS = (ac.UC_ARM_REG_PC, *_GPRS, ac.UC_ARM_REG_PSP)
_STATE_REGS = (ac.UC_ARM_REG_PRIMASK, ac.UC_ARM_REG_IPSR)
_SVC_REGS = (ac.UC_ARM_REG_R12, ac.UC_ARM_REG_R0, ac.UC_ARM_REG_R1)
_PC = ac.UC_ARM_REG_PC
BatchUc = Any


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
    it_blocks = True  # a PC written from a hook can be lost (redirect_lost)

    def __init__(self) -> None:
        self.unwind = Unwinder()
        self.decoder = ThumbDecoder()  # with the ELF's data-in-code ranges (read_elf)
        self.reports: list[str] = []  # a bare engine's exception errors (no machine: `core_devices`)
        self.scs = Scs(Clock(), None, None, self.reports.append)  # replaced by the machine's
        self._pc_reader: tuple[Any, Any] | None = None  # (engine, rawregs.batch_reader of its PC): `pc`
        self._pc_value = ctypes.c_uint32()  # `set_pc`'s argument
        self.it = ItBlocks()  # Thumb IT blocks seen from hooks (isa/armv7m_it.py)

    def core_devices(self, machine: Any) -> list[Any]:
        """The System Control Space (NVIC, SysTick, SCB) of the machine's CPU (isa/armv7m_scs.py).
        Its errors and this ISA's exception errors end the run as cpu-faults at the CPU's pc."""
        uc = machine.uc

        def report(message: str) -> None:
            machine.fatal(machine.faults.cpu_fault(message, self.pc(uc)), "fault")

        self.scs = scs = Scs(machine.clock, machine.intc, machine.clint, report)
        self.it.read_code = machine.phys.read  # the code before a PC, without the engine (armv7m_it.py)
        table = machine.firmware.symbol_addr(exc.VECTOR_TABLE)
        sizes = [size for addr, size, name in machine.firmware.symtab.entries if name == exc.VECTOR_TABLE]
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
        self.decoder.read_marks(elf)

    def bind(self, other: Isa) -> None:
        """Take what the firmware's reading learned (the machine's own instance)."""
        if isinstance(other, ArmV7M):
            self.unwind, self.decoder.data_ranges = other.unwind, other.decoder.data_ranges

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

    def pc(self, uc: unicorn.Uc) -> int:  # one untyped ctypes call (rawregs.batch_reader): every boundary
        reader = self._pc_reader
        if reader is None or reader[0] is not uc:
            reader = self._pc_reader = (uc, batch_reader(uc, (ac.UC_ARM_REG_PC,)))
        got = reader[1]()
        pc: int = got[0] if got is not None else uc.reg_read(ac.UC_ARM_REG_PC)
        return pc & ~1

    def redirect_lost(self, uc: unicorn.Uc, synced: bool) -> bool:
        """From a hook: is the CPU inside a Thumb IT block? There Unicorn 2.1.4 runs the block to
        its end and a PC written now is lost (rawcount.py): a fault cannot be sent to the idle
        sled, nor a slice cut. `synced` (a fault, fill or interrupt hook): xPSR's IT bits say so;
        else (an MMIO callback) the code before the PC, memoized (isa/armv7m_it.py)."""
        return self.it.lost(uc, 0 if synced else self.pc(uc), synced)

    def hook_settler(self, uc: unicorn.Uc) -> Callable[[], None]:
        """What a memory hook (UC_HOOK_MEM_READ/WRITE) calls last: the IT bits the engine restored
        for an access inside an IT block back to zero (isa/armv7m_it.py, 2)."""
        return self.it.settler(uc)

    def set_pc(self, uc: unicorn.Uc, pc: int) -> None:
        """pc | 1 through the library's uc_reg_write, not the binding's (a cut sends the CPU to the sled
        from a callback: uc_reg_write, unlike the batch write, keeps a PC written there)."""
        handle, value = engine_handle(uc), self._pc_value
        value.value = pc | 1
        if uclib is None or handle is None or uclib.uc_reg_write(handle, _PC, ctypes.byref(value)):
            uc.reg_write(_PC, pc | 1)

    def overrun_reader(self, uc: unicorn.Uc) -> Callable[[int], int] | None:
        """`overrun(count)`: the instructions the engine's last emu_start of `count` ran past it, read
        from its own counter (an IT block the count ran out in runs to its end: rawcount.py); the run
        loop adds them to the slice. None: the counter cannot be read (slices may then miscount)."""
        got = counter(uc)
        if got is None:
            return None
        ctr = got

        def overrun(count: int) -> int:
            return int(ctr.value) - 1 - count

        return overrun

    # -- interrupts -------------------------------------------------------------------

    def interrupts_enabled(self, uc: BatchUc) -> bool:
        """PRIMASK clear and thread mode: the caller may sleep (an active handler may not)."""
        primask, ipsr = read_batch(uc, _STATE_REGS)
        return not primask & 1 and not ipsr & 0x1FF

    def pending_enable(self, uc: unicorn.Uc) -> tuple[bool, bool]:
        """(SysTick can pend, NVIC IRQ 0 (the interrupt controller's line) is enabled)."""
        return self.scs.timer_enabled(), bool(self.scs.enabled & 1)

    def enter_interrupt(self, uc: BatchUc, cause: int) -> int:
        """Exception entry (isa/armv7m_exc.py): the handler address, 0 when it failed (reported)."""
        return exc.enter(uc, self.scs, cause)

    def next_exception(self) -> tuple[int, bool]:
        """(the pending exception that pre-empts now or 0, True when one waits for the priority)."""
        return self.scs.pick()

    def exception_return(self, uc: BatchUc) -> bool:
        """From the interrupt hook (intno `return_intno`): check and perform the exception return
        (B1.5.8). An illegal one is reported (a cpu-fault at the EXC_RETURN; the run ends) and
        True is returned: the hook has nothing more to do."""
        exc_return = (self.pc(uc) | 1) & 0xFFFF_FFFF
        why = exc.unstack(uc, self.scs, exc_return)
        if why is not None:
            self.scs.report(f"illegal exception return: EXC_RETURN {exc_return:#010x} {why}")
        return True

    # -- traps ---------------------------------------------------------------------------

    def syscall_args(self, uc: BatchUc) -> tuple[int, int, int]:
        """(number, arg0, arg1) of an svc: r12, r0, r1."""
        r12, r0, r1 = read_batch(uc, _SVC_REGS)
        return r12, r0, r1

    def fault_name(self, intno: int) -> str:
        return INTR_NAMES.get(intno, f"exception {intno}")

    # -- instructions ---------------------------------------------------------------------

    def insn_size(self, code: bytes) -> int:
        return insn_size(code)

    def disassemble(self, pc: int, code: bytes) -> str:
        return self.decoder.disassemble(pc, code)

    def memory_operand(self, read: ReadCode, pc: int, regs: dict[str, int]) -> tuple[int, int] | None:
        """(address, width) of the data transfer at pc (isa/armv7m_decode.py), or None."""
        return self.decoder.memory_operand(read, pc, regs)

    def scan_code(self, ranges: Sequence[tuple[int, bytes]]) -> CodeScan:
        return self.decoder.scan_code(ranges)

    def scan_returns(self, ranges: Sequence[tuple[int, bytes]]) -> list[int]:
        """None: an exception return reaches the interrupt hook (`return_intno`)."""
        return []

    def idle_sled(self, base: int, length: int) -> bytes:
        return idle_sled(base, length)

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
