"""The ISA interface: everything the machine knows about its CPU, behind one Protocol.

The machine, the fault reports, the ELF loader and the MMU's page-fault report never
name a register, a CSR, an encoding or a Unicorn/capstone constant: they ask an `Isa`.
A board picks its ISA by name (`[cpu] isa`, default "rv32imac"); `isa_for(name)`
imports the module that implements it and returns a new instance (one per machine or
firmware, so a test may patch one instance's methods without touching another's).

    ISAS        name -> module           rv32imac -> kalloc_machine.isa.rv32
    Isa         the Protocol below        (a second ISA, e.g. Cortex-M, is a second
                                           module with a class `Cpu` implementing it,
                                           and one line in ISAS)

The interface, by what the machine does with it (rv32.py is the reference):

  identity      name; uc_arch, uc_mode (Unicorn); elf_class, elf_machine (pyelftools'
                e_machine string) and elf_description (for "not <description>" errors)
  registers     read_regs(uc) -> {"pc": .., name: ..} in one batch read, names in
                `reg_names` order (what fault reports show); read_csrs(uc) -> the trap
                state by name (RISC-V: mstatus mie mtvec mepc mcause); pc(uc),
                set_pc(uc, pc); link_reg (the return-address register's name, "ra");
                report_registers: the few registers the text report's one-line
                `registers:` shows, in order (RISC-V: ra sp s0 a0 a1 a2)
  interrupts    timer_cause, external_cause: the `cause` values of the two interrupt
                sources the machine has (the CLINT-style timer, the INTC's external
                line; RISC-V: their mcause values, Cortex-M would use its exception
                numbers); interrupts_enabled(uc): the global mask (mstatus.MIE /
                PRIMASK); pending_enable(uc) -> (timer enabled, external enabled), the
                per-source enables that also decide whether `wfi` wakes;
                enter_interrupt(uc, cause) -> handler address: the hardware's trap
                entry, performed by the machine at a slice boundary (RISC-V: mepc,
                mcause, mstatus, pc <- mtvec; Cortex-M: stack the frame, pc <- vector).
                Return from the handler (mret, exception return) is executed by the
                CPU itself: Unicorn emulates it.
  traps         Unicorn's UC_HOOK_INTR numbers: ecall_intno is the environment call
                (the machine's exit/panic interface), with PC already past it, by
                ecall_size bytes; syscall_args(uc) -> (number, arg0, arg1); any other
                number is a CPU fault: fault_name(intno) in words, at pc(uc) -
                fault_pc_adjust
  instructions  insn_size(code) from the first bytes at a pc (the machine resumes a
                cut store at pc + insn_size); disassemble(pc, code) -> text for reports
                (capstone, with a .half/.word fallback); memory_operand(read, pc, regs)
                -> (address, width) of the load/store at pc, or None (the MMU's page
                fault names the byte; a transfer of several words, Arm's ldrd/strd,
                push/pop, ldm/stm: its lowest address and whole width, which the
                module function `accesses` splits into the CPU's 4-byte words,
                ascending: the stack guard's first access); scan_code([(addr, bytes)]) -> (idle pcs, counter
                hazards [(addr, what, why)]): the idle instruction (wfi) is found in the
                ELF and marked (idle mark, below), idle_size is its length (the CPU resumes after it);
                scan_returns([(addr, bytes)]) -> every return-from-interrupt instruction
                (mret) of the code sections, at instruction starts: irqstate.py writes
                return_mark over each (it traps like the idle mark; no code hook)
  idle sled     idle_sled(base, n) -> n instructions of sled_step bytes each: one that adds
                1 to the register `sled_counter` (a Unicorn register id), n-2 nops, then
                a jump back to `base` at base + sled_step*(n-1) (the jump may be longer
                than a nop: Thumb's 16-bit `b` does not reach 2 KiB back), mapped
                execute-only (sled.py counts instructions from the counter and the PC's
                offset / sled_step; it saves and restores the firmware's register)
  idle mark     idle_mark: the bytes the machine writes over every idle instruction of
                the loaded image (idle_size bytes), an encoding that traps as
                `illegal_intno` through UC_HOOK_INTR: a wfi ends a slice without a code
                hook (each code hook costs every instruction of a counted slice)
  calls         backtrace(read_u32, pc, regs, depth, in_ram, is_code) -> [pc, return
                addresses...] by the ISA's frame-pointer convention, never raising;
                call_setup(uc, function, args, return_to) and return_value(uc): the
                calling convention the test harness uses to call a firmware function

  port hooks    setup(uc) right after the engine is made (Cortex-M: the CPU model);
                read_elf(elf) once per loaded ELF (pyelftools' ELFFile: Cortex-M reads
                its unwind table and data-in-code ranges) and bind(firmware_isa): the
                machine's own instance takes what the firmware's reading learned;
                sled_base: where the idle sled is mapped (memlayout.IDLE_SLED_BASE,
                or an executable address of the ISA's map: M-profile never executes
                above 0xE000_0000); code_bit: or-ed into every PC given to Unicorn
                (Thumb: 1); return_intno / exception_return(uc): a return from an
                interrupt the CPU does not perform itself reaches the interrupt hook
                as return_intno and the ISA performs it (Cortex-M's EXC_RETURN;
                RISC-V: a marked mret, which traps as an illegal instruction, intno 2,
                and False for any other); undefined_intno >= 0: undefined
                instructions reach UC_HOOK_INSN_INVALID instead of the interrupt hook
                (Cortex-M) and are reported as fault_name(undefined_intno);
                frame_chain: the hypercall block's fp heads a frame chain the bridge
                walks in RAM (RISC-V); else (Cortex-M, fp = 0) the bridge unwinds the
                allocation site's stack from the CPU at the doorbell (`backtrace`);
                core_devices(machine) -> the devices of the architecture itself, mapped
                and serviced like the board's (RISC-V: none; Cortex-M: the System Control
                Space, NVIC + SysTick + SCB, which also decides which exception the run
                loop takes: isa/armv7m_scs.py)

What stays ISA-neutral and a port must fit: the fixed address map (memlayout.py: RAM at
0x8000_0000, devices below it, the idle sled at 0xF800_0000), the kalloc devices (a
CLINT-style timer, the claim-based INTC whose lines all arrive as `external_cause`),
the doorbell hypercalls (a 32-bit store), the exit/panic numbers in the environment
call's `syscall_args` (bridge/abi.py), 32-bit registers and addresses, and a
`read_regs` dict that holds "pc" and `link_reg`. Known RISC-V names outside this
package: firmware/ (the text report takes its registers line from `report_registers`,
through the JSON report's `isa`).

Invariants:
 1. `isa_for` accepts exactly the names in ISAS (boardcheck.py validates `[cpu] isa`
    against it); importing this package imports no ISA module, so board handling
    never loads Unicorn. A firmware is read for an ISA (`load_firmware(path, isa)`)
    and only runs on a board of that ISA (`Firmware.check_fits`).
 2. Every method that takes `uc` is called only at a slice boundary or from a Unicorn
    hook, and reads registers in as few Unicorn calls as it can (each ~1-2 µs).
 3. `enter_interrupt` is only called at a slice boundary, never from a hook.
 4. `backtrace`, `disassemble` and `memory_operand` never raise on garbage (the last
    may raise ValueError from `read`, the caller's own reader).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from unicorn import Uc

ISAS: dict[str, str] = {  # board `[cpu] isa` -> the module whose `Cpu` implements it
    "rv32imac": "kalloc_machine.isa.rv32",
    "armv7m": "kalloc_machine.isa.armv7m",
}
DEFAULT_ISA = "rv32imac"

ReadU32 = Callable[[int], int]
ReadCode = Callable[[int, int], bytes]  # (addr, size) -> bytes; ValueError outside RAM
CodeScan = tuple[list[int], list[tuple[int, str, str]]]  # idle pcs, [(addr, what, why)]


class Isa(Protocol):
    """One CPU architecture as the machine drives it through Unicorn (module docstring)."""

    name: str
    uc_arch: int
    uc_mode: int
    elf_class: int
    elf_machine: str
    elf_description: str
    reg_names: tuple[str, ...]
    report_registers: tuple[str, ...]
    link_reg: str
    timer_cause: int
    external_cause: int
    ecall_intno: int
    ecall_size: int
    fault_pc_adjust: int
    idle_size: int
    idle_mark: bytes
    illegal_intno: int
    sled_step: int
    sled_counter: int
    sled_base: int
    return_intno: int
    return_mark: bytes  # written over each of scan_returns' instructions (b"": none to mark)
    undefined_intno: int
    frame_chain: bool
    code_bit: int
    it_blocks: bool  # a PC written from a hook can be lost (Thumb IT blocks): the sled asks redirect_lost

    # setup
    def setup(self, uc: Uc) -> None: ...
    def read_elf(self, elf: Any) -> None: ...
    def bind(self, other: Isa) -> None: ...
    def exception_return(self, uc: Uc) -> bool: ...
    def core_devices(self, machine: Any) -> list[Any]: ...

    # registers
    def read_regs(self, uc: Uc) -> dict[str, int]: ...
    def read_csrs(self, uc: Uc) -> dict[str, int]: ...
    def pc(self, uc: Uc) -> int: ...
    def set_pc(self, uc: Uc, pc: int) -> None: ...
    def redirect_lost(self, uc: Uc, synced: bool) -> bool: ...  # from a hook: would a PC written now be lost
    def hook_settler(self, uc: Uc) -> Callable[[], None] | None: ...  # a memory hook's last call (IT state)

    # interrupts
    def interrupts_enabled(self, uc: Uc) -> bool: ...
    def pending_enable(self, uc: Uc) -> tuple[bool, bool]: ...
    def enter_interrupt(self, uc: Uc, cause: int) -> int: ...

    # traps
    def syscall_args(self, uc: Uc) -> tuple[int, int, int]: ...
    def fault_name(self, intno: int) -> str: ...

    # instructions
    def insn_size(self, code: bytes) -> int: ...
    def disassemble(self, pc: int, code: bytes) -> str: ...
    def memory_operand(self, read: ReadCode, pc: int, regs: dict[str, int]) -> tuple[int, int] | None: ...
    def scan_code(self, ranges: Sequence[tuple[int, bytes]]) -> CodeScan: ...
    def scan_returns(self, ranges: Sequence[tuple[int, bytes]]) -> list[int]: ...
    def idle_sled(self, base: int, length: int) -> bytes: ...

    # calls
    def backtrace(
        self,
        read_u32: ReadU32,
        pc: int,
        regs: dict[str, int],
        depth: int = 16,
        in_ram: Callable[[int], bool] | None = None,
        is_code: Callable[[int], bool] | None = None,
    ) -> list[int]: ...
    def call_setup(self, uc: Uc, function: int, args: Sequence[int], return_to: int) -> None: ...
    def return_value(self, uc: Uc) -> int: ...


def accesses(isa: Isa, read: ReadCode, pc: int, regs: dict[str, int]) -> list[tuple[int, int]]:
    """The data accesses of the instruction at pc in the CPU's order, as a memory hook sees them:
    `memory_operand`'s one, or for a transfer wider than a word its 4-byte words in ascending
    order (the order Unicorn makes them: tests/machine/test_armv7m_access.py); [] for none or an
    instruction outside memory."""
    try:
        got = isa.memory_operand(read, pc, regs)
    except ValueError:
        return []
    if got is None:
        return []
    addr, width = got
    if width <= 4:
        return [got]
    return [((addr + at) & 0xFFFF_FFFF, 4) for at in range(0, width, 4)]


def isa_for(name: str = DEFAULT_ISA) -> Isa:
    """A new instance of the ISA a board names. Raises ValueError for an unknown name."""
    module = ISAS.get(name)
    if module is None:
        raise ValueError(f"ISA '{name}' is not supported (known: {', '.join(ISAS)})")
    cpu: Isa = importlib.import_module(module).Cpu()
    return cpu


def report_registers(name: str | None) -> tuple[str, ...]:
    """The registers a text report shows for the ISA a JSON report names (`isa`; older
    reports have none: the default ISA's)."""
    return isa_for(name if name in ISAS else DEFAULT_ISA).report_registers
