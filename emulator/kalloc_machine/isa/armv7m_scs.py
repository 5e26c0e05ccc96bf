"""The Cortex-M machine's System Control Space (0xE000_E000..0xE000_EFFF): NVIC, SysTick, SCB.

Part of the ARMv7-M architecture, not of a board: `ArmV7M.core_devices` makes one per
machine and the machine maps it like its other devices (an MMIO window, `deadline` and
`service` at slice boundaries). What is modelled (ARMv7-M ARM B3.2-B3.4, Cortex-M4 Generic
User Guide 4.2-4.5), everything else in the window is reported (`unmodelled`):

  NVIC    32 lines, IRQ 0..31 (exception 16 + n): ISER/ICER (0x100/0x180), ISPR/ICPR
          (0x200/0x280), IABR (0x300, read-only), IPR0-7 (0x400..0x41F, byte access, 4
          priority bits implemented as on STM32F4: the low nibble reads 0), STIR (0xF00).
          The board's interrupt controller (the INTC, lines 1..31 of the devices) is wired
          to IRQ 0: IRQ 0 is pending while the INTC asserts (a level: ICPR clears only a
          software pend), so the SDK claims the device's line as on RV32. IRQ 1..31 have no
          device: software pends them (ISPR, STIR). Words 1..7 of each bank read 0 and
          ignore writes (lines not implemented, as the architecture says).
  SysTick SYST_CSR/RVR/CVR/CALIB (0x010..0x01C), counting executed instructions (the
          machine's time): enabled with a current value c it reaches 0 after c
          instructions, then reloads RVR and reaches 0 every RVR + 1 instructions; each
          time it sets COUNTFLAG and, with TICKINT, pends SysTick (exception 15). A
          store that starts or moves the count ends its slice (sled.py, "Cuts"), so the
          count starts at the store's exact time; a CVR read sees the count at the start
          of the slice (exact in the slice after a cut). CALIB reads NOREF | SKEW, TENMS 0.
  SCB     CPUID (0xD00, Cortex-M4 r0p1), ICSR (0xD04: PENDSVSET/CLR, PENDSTSET/CLR,
          VECTACTIVE, VECTPENDING, ISRPENDING, RETTOBASE), VTOR (0xD08, bits 31:7),
          AIRCR (0xD0C: PRIGROUP with VECTKEY 0x05FA; reads VECTKEYSTAT), SCR (0xD10:
          reads 0, writes of 0 only), CCR (0xD14: reads STKALIGN, writes that keep it
          only), SHPR1-3 (0xD18..0xD23, byte access), ICTR (0x004: one 32-line bank).

Priorities (B1.5.4): an exception's group priority is its priority with the subpriority
bits (AIRCR.PRIGROUP) cleared; the execution priority is the lowest group priority of
the active exceptions (256 in thread mode with none active), boosted to 0 by PRIMASK and
to BASEPRI's group priority when BASEPRI is set (FAULTMASK: -1). A pending exception is
taken only when its group priority is lower than the execution priority; among those
pending, the lowest priority value wins, then the lowest exception number (`pick`).
Exceptions 1-13 (reset, NMI, the faults, SVCall, DebugMonitor) are never pended: the
machine reports faults itself and `svc` is its exit/panic call.

Not modelled, reported as a cpu-fault when firmware writes them: NMIPENDSET, AIRCR
SYSRESETREQ/VECTRESET/VECTCLRACTIVE and ENDIANNESS, SHCSR, the fault status and address
registers, CPACR and the FPU, the MPU, debug registers; reads of them return 0 and are
reported too. Misaligned or wider-than-the-register accesses are reported as well.

Invariants:
 1. MMIO callbacks (`read`, `write`) change only this device's registers; errors go to
    `report` (Machine.fatal, safe from a callback) and the access has no other effect.
 2. `service` runs at boundaries and is the only place SysTick pends from the count.
 3. `active` lists the exceptions taken and not returned from, innermost last: the
    machine's entries push, its exception returns pop (isa/armv7m.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kalloc_machine.boardspec import DeviceSpec
from kalloc_machine.devices import Clint, Clock, Device, Intc, extract_bytes
from kalloc_machine.memlayout import FIRMWARE_LOAD

SCS_BASE = 0xE000_E000
SCS_SIZE = 0x1000
EXC_PENDSV, EXC_SYSTICK, EXC_IRQ0 = 14, 15, 16
NR_IRQS = 32
PRIO_MASK = 0xF0  # 4 priority bits implemented (STM32F4)
THREAD = 256  # the execution priority of thread mode with nothing active or boosted
CPUID = 0x410F_C241  # Cortex-M4 r0p1
CALIB = 0xC000_0000  # NOREF | SKEW, TENMS unknown
STKALIGN = 1 << 9
VECTKEY = 0x05FA
CSR_ENABLE, CSR_TICKINT, CSR_CLKSOURCE, CSR_COUNTFLAG = 1, 2, 4, 1 << 16
ICSR_PENDSTCLR, ICSR_PENDSTSET, ICSR_PENDSVCLR, ICSR_PENDSVSET = 1 << 25, 1 << 26, 1 << 27, 1 << 28
ICSR_NMIPENDSET, ICSR_ISRPENDING, ICSR_RETTOBASE = 1 << 31, 1 << 22, 1 << 11

REGISTER_NAMES = {0x004: "ICTR", 0x010: "SYST_CSR", 0x014: "SYST_RVR", 0x018: "SYST_CVR",
                  0x01C: "SYST_CALIB", 0xD00: "CPUID", 0xD04: "ICSR", 0xD08: "VTOR", 0xD0C: "AIRCR",
                  0xD10: "SCR", 0xD14: "CCR", 0xD18: "SHPR1", 0xD1C: "SHPR2", 0xD20: "SHPR3", 0xD24: "SHCSR",
                  0xD28: "CFSR", 0xD2C: "HFSR", 0xD34: "MMFAR", 0xD38: "BFAR", 0xD88: "CPACR",
                  0xD90: "MPU_TYPE", 0xF00: "STIR", 0xF34: "FPCCR"}  # fmt: skip
BANKS = {0x100: "ISER", 0x180: "ICER", 0x200: "ISPR", 0x280: "ICPR", 0x300: "IABR"}
ReportFn = Callable[[str], None]  # an error's message: the ISA files it as a cpu-fault at the pc


def register_name(offset: int) -> str:
    """The architectural name of the register at offset (for reports)."""
    bank = BANKS.get(offset & ~0x7F) if 0x100 <= offset < 0x380 else None
    if bank is not None:
        return f"NVIC_{bank}{(offset & 0x7F) // 4}"
    if 0x400 <= offset < 0x5F0:
        return f"NVIC_IPR{(offset - 0x400) // 4}"
    return REGISTER_NAMES.get(offset & ~3, "a reserved word")


class Scs(Device):
    """NVIC, SysTick and SCB of one Cortex-M4 (module docstring)."""

    def __init__(self, clock: Clock, intc: Intc | None, clint: Clint | None, report: ReportFn) -> None:
        super().__init__(DeviceSpec("scs", "scs", SCS_BASE, SCS_SIZE), clock)
        self.intc, self.clint, self.report = intc, clint, report
        self.enabled = 0  # NVIC ISER0
        self.soft_pending = 0  # NVIC ISPR0 as software set it (IRQ 0 also follows the INTC)
        self.irq_prio = bytearray(NR_IRQS)
        self.shpr = bytearray(12)  # priorities of exceptions 4..15
        self.vtor = FIRMWARE_LOAD  # as the SDK's reset code leaves it: the image's vector table
        self.prigroup = 0
        self.pend_sv = self.pend_st = False
        self.active: list[int] = []
        self.table = (-1, 0)  # (address, entries) of the SDK's vector table, when the ELF has one
        # SysTick
        self.csr = 0
        self.rvr = 0
        self.cvr = 0  # the count while disabled
        self.zero_at: int | None = None  # enabled: the time the count next reaches 0
        self._unstamped = False  # a write started the count; `stamp` gives its exact time
        self.pc_of: Callable[[], int] = lambda: 0  # where the CPU is (reports); the ISA sets it
        self.read_masks: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)  # PRIMASK, BASEPRI, FAULTMASK

    # -- priorities (B1.5.4) ------------------------------------------------------------------

    def priority(self, exc: int) -> int:
        if exc >= EXC_IRQ0:
            return self.irq_prio[exc - EXC_IRQ0]
        return self.shpr[exc - 4] if exc >= 4 else exc - 4  # reset -3, NMI -2, HardFault -1

    def group(self, prio: int) -> int:
        """prio with the subpriority field (bits PRIGROUP:0) cleared."""
        return prio & ~((2 << self.prigroup) - 1) if prio >= 0 else prio

    def execution_priority(self, primask: int, basepri: int, faultmask: int = 0) -> int:
        running = min((self.group(self.priority(e)) for e in self.active), default=THREAD)
        boost = THREAD
        if basepri & PRIO_MASK:
            boost = self.group(basepri & PRIO_MASK)
        if primask & 1:
            boost = 0
        if faultmask & 1:
            boost = -1
        return min(running, boost)

    def pending(self) -> list[int]:
        """The exceptions pending and enabled now, by exception number."""
        out = [EXC_PENDSV] if self.pend_sv else []
        if self.pend_st or (self.clint is not None and self.clint.pending(self.clock.now)):
            out.append(EXC_SYSTICK)  # the CLINT compare too: ELFs of an SDK before SysTick
        lines = self.soft_pending | (1 if self.intc is not None and self.intc.asserted() else 0)
        lines &= self.enabled
        if lines:  # (every slice boundary asks: most have no line raised)
            active = self.active
            out += [EXC_IRQ0 + n for n in range(NR_IRQS) if lines >> n & 1 and EXC_IRQ0 + n not in active]
        return out

    def pick(self, wake: bool = False) -> tuple[int, bool]:
        """(the exception to take now or 0, True when one is pending but cannot pre-empt).
        wake: whether a wfi wakes (PRIMASK ignored, B1.5.19)."""
        pending = self.pending()
        if not pending:
            return 0, False
        best = min(pending, key=lambda e: (self.priority(e), e))
        primask, basepri, faultmask = self.read_masks()
        limit = self.execution_priority(0 if wake else primask, basepri, faultmask)
        if self.group(self.priority(best)) < limit:
            return best, False
        return 0, True

    def can_wake(self) -> bool:
        """A wfi wakes: an exception pending that would pre-empt were PRIMASK clear."""
        return self.pick(wake=True)[0] != 0

    def activate(self, exc: int) -> None:
        """The machine took exc: it is active, no longer pending (IRQ 0's level aside)."""
        self.active.append(exc)
        if exc == EXC_PENDSV:
            self.pend_sv = False
        elif exc == EXC_SYSTICK:
            self.pend_st = False
        elif exc >= EXC_IRQ0:
            self.soft_pending &= ~(1 << (exc - EXC_IRQ0))

    def timer_enabled(self) -> bool:
        """SysTick can pend (a wfi may wake for it)."""
        ticking = bool(self.csr & CSR_ENABLE and self.csr & CSR_TICKINT)
        return ticking or self.pend_st or self.clint is not None  # the CLINT: older SDKs' timer

    # -- SysTick ------------------------------------------------------------------------------

    def _count(self, now: int) -> int:
        if not self.csr & CSR_ENABLE:
            return self.cvr
        if self.zero_at is None:
            return 0
        return min(max(0, self.zero_at - now), 0xFF_FFFF)

    def _restart(self, now: int, current: int) -> None:
        """The count is `current` at `now` and runs: when does it next reach 0?"""
        if current:
            self.zero_at = now + current
        else:
            self.zero_at = now + 1 + self.rvr if self.rvr else None

    @property
    def unstamped(self) -> bool:
        """A store started the count and its exact time is not given yet (`stamp`)."""
        return self._unstamped

    def zero_after(self, now: int) -> int:
        """When the count started at `now` reaches 0 (a stamp's deadline; never: a huge time)."""
        return now + 1 + self.rvr if self.rvr else 1 << 64

    def stamp(self, now: int) -> None:
        if self._unstamped:
            self._unstamped = False
            self._restart(now, 0)

    def deadline(self) -> int | None:
        if self._unstamped:
            return self.clock.now  # before the slice's end: the store is cut, then stamped
        if self.csr & CSR_ENABLE and self.csr & CSR_TICKINT:
            return self.zero_at
        return None

    def service(self, now: int) -> None:
        self.stamp(now)  # a start no cut stamped (the slice was already stopping): now
        zero = self.zero_at
        if zero is None or zero > now or not self.csr & CSR_ENABLE:
            return
        self.csr |= CSR_COUNTFLAG
        if self.csr & CSR_TICKINT:
            self.pend_st = True
        period = self.rvr + 1
        self.zero_at = zero + ((now - zero) // period + 1) * period if self.rvr else None

    def _systick_write(self, reg: int, value: int) -> None:
        now = self.clock.now
        if reg == 0x010:
            was = self.csr & CSR_ENABLE
            self.csr = (self.csr & CSR_COUNTFLAG) | (value & (CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE))
            if was and not self.csr & CSR_ENABLE:
                self.cvr, self.zero_at = self._count(now), None
            elif not was and self.csr & CSR_ENABLE:
                if self.cvr:
                    self._restart(now, self.cvr)
                else:
                    self._unstamped = self.poked = True
            self.poked = self.poked or bool(self.csr & CSR_TICKINT and self.zero_at is not None)
        elif reg == 0x014:
            self.rvr = value & 0xFF_FFFF
            if self.csr & CSR_ENABLE and self.zero_at is None:
                self._unstamped = self.poked = True
        else:  # CVR: any write clears the count and COUNTFLAG
            self.cvr, self.csr = 0, self.csr & ~CSR_COUNTFLAG
            if self.csr & CSR_ENABLE:
                self._unstamped = self.poked = True

    # -- MMIO -------------------------------------------------------------------------------------

    def map_raw(self, machine: Any) -> list[Any]:
        """Map this window on the machine's engine with raw ctypes callbacks (isa/armv7m_scsport.py);
        the anchors the machine keeps as long as the engine."""
        from kalloc_machine.isa.armv7m_scsport import ScsPort

        return ScsPort(machine, self).map()

    def unmodelled(self, offset: int, what: str) -> None:
        self.report(f"{what} {register_name(offset)} ({SCS_BASE + offset:#010x}) in the System Control "
                    "Space: not modelled by this machine (docs/architecture.md, 'The Cortex-M machine')")

    def read(self, offset: int, size: int) -> int:
        word = offset & ~3
        value = self._read_word(word)
        if value is None or self._bad_width(offset, size):
            self.unmodelled(offset, f"a {size}-byte read of")
            return 0
        return extract_bytes(value, offset, size)

    def _bad_width(self, offset: int, size: int) -> bool:
        """Misaligned, or narrower than a word where the manual allows only words."""
        return bool(offset & (size - 1)) or (size != 4 and not self._bytewise(offset & ~3))

    def _bytewise(self, word: int) -> bool:
        return 0x400 <= word < 0x420 or 0xD18 <= word < 0xD24

    def _read_word(self, word: int) -> int | None:  # long: one branch per register, as the manual lists them
        if 0x100 <= word < 0x380:
            n = (word & 0x7F) // 4
            if n:
                return 0  # lines 32.. not implemented
            bank = word & ~0x7F
            pend = self.soft_pending | (1 if self.intc is not None and self.intc.asserted() else 0)
            active = sum(1 << (e - EXC_IRQ0) for e in self.active if e >= EXC_IRQ0)
            return {0x100: self.enabled, 0x180: self.enabled, 0x200: pend, 0x280: pend, 0x300: active}[bank]
        if 0x400 <= word < 0x5F0:
            i = word - 0x400
            return int.from_bytes(self.irq_prio[i : i + 4].ljust(4, b"\0"), "little") if i < NR_IRQS else 0
        if 0xD18 <= word < 0xD24:
            i = word - 0xD18
            return int.from_bytes(self.shpr[i : i + 4], "little")
        if word == 0x010:
            csr = self.csr
            self.service(self.clock.now)
            csr |= self.csr & CSR_COUNTFLAG
            self.csr &= ~CSR_COUNTFLAG  # a read clears COUNTFLAG
            return csr
        simple: dict[int, Any] = {
            0x004: 0, 0x014: self.rvr, 0x018: self._count(self.clock.now), 0x01C: CALIB, 0xD00: CPUID,
            0xD08: self.vtor, 0xD0C: 0xFA05 << 16 | self.prigroup << 8, 0xD10: 0, 0xD14: STKALIGN,
        }  # fmt: skip
        if word == 0xD04:
            return self._icsr()
        return simple.get(word)

    def _icsr(self) -> int:
        vect = self.active[-1] if self.active else 0
        pending = self.pending()
        first = min(pending, key=lambda e: (self.priority(e), e)) if pending else 0
        isr = any(e >= EXC_IRQ0 for e in pending)
        value = vect | first << 12 | (ICSR_ISRPENDING if isr else 0)
        value |= ICSR_RETTOBASE if len(self.active) <= 1 else 0
        return value | (ICSR_PENDSVSET if self.pend_sv else 0) | (ICSR_PENDSTSET if self.pend_st else 0)

    def write(self, offset: int, size: int, value: int) -> None:  # long: one branch per register
        word = offset & ~3
        if self._bad_width(offset, size):
            self.unmodelled(offset, f"a {size}-byte write to")
            return
        if 0x100 <= word < 0x380:
            if word & 0x7F:
                return  # lines 32..: not implemented, writes ignored
            bank = word & ~0x7F
            if bank == 0x100:
                self.enabled |= value
            elif bank == 0x180:
                self.enabled &= ~value
            elif bank == 0x200:
                self.soft_pending |= value
            elif bank == 0x280:
                self.soft_pending &= ~value
            self.enabled &= 0xFFFF_FFFF
            self.soft_pending &= 0xFFFF_FFFF
        elif 0x400 <= word < 0x420:
            for i in range(size):
                self.irq_prio[offset - 0x400 + i] = (value >> (8 * i)) & PRIO_MASK
        elif 0xD18 <= word < 0xD24:
            for i in range(size):
                self.shpr[offset - 0xD18 + i] = (value >> (8 * i)) & PRIO_MASK
        elif word in (0x010, 0x014, 0x018):
            self._systick_write(word, value)
        elif word == 0xF00:
            self.soft_pending |= 1 << (value & 0x1FF) if (value & 0x1FF) < NR_IRQS else 0
        elif not self._scb_write(word, value):
            self.unmodelled(offset, "a write to")

    def _scb_write(self, word: int, value: int) -> bool:
        """ICSR, VTOR, AIRCR, SCR, CCR; False for anything this machine does not model."""
        if word == 0xD04:
            if value & ICSR_NMIPENDSET:
                return False
            self.pend_sv = bool(value & ICSR_PENDSVSET) or (self.pend_sv and not value & ICSR_PENDSVCLR)
            self.pend_st = bool(value & ICSR_PENDSTSET) or (self.pend_st and not value & ICSR_PENDSTCLR)
            return True
        if word == 0xD08:
            self.vtor = value & 0xFFFF_FF80
            return True
        if word == 0xD0C:
            if value >> 16 != VECTKEY:
                return True  # no key: the write is ignored (B3.2.6)
            if value & 0xFFFF & ~0x700:
                return False  # SYSRESETREQ, VECTCLRACTIVE, VECTRESET, ENDIANNESS
            self.prigroup = value >> 8 & 7
            return True
        if word == 0xD10:
            return value == 0
        if word == 0xD14:
            return value & ~0x200 == 0 and bool(value & STKALIGN)
        return False
