"""The board data model: what a validated board file describes (board.py reads it).

    Board        name, description, ram (RamSpec banks), devices (DeviceSpec windows),
                 dma_masters (DmaMaster: the windows each bus master reaches),
                 dma_rules (DmaRules: the engine's master, boundary, speed), cpu
                 (CpuSpec: isa, quantum, timer_hz), source (for messages)
    BoardError   the one exception of board handling, with a one-line message

Every object is frozen: a Board is shared by the machine, the allocator's zone setup
and the reports, and snapshots share it rather than copy it.

Invariants:
 1. A Board reaching the machine passed `boardcheck.validate` (board.py only returns
    validated boards); the accessors below rely on it (`dma_master` finds its master).
 2. DEVICE_TYPES lists every device type the machine builds, with the smallest window
    that holds its registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEVICE_TYPES: dict[str, int] = {  # type -> smallest window holding its registers
    "uart": 0x8,
    "clint": 0x1_0000,
    "intc": 0x10,
    "dma": 0x1000,
}
RAM_ATTRIBUTES: tuple[str, ...] = ("dma",)
INTC_LINES = range(1, 32)
MAX_BANKS = 4  # abi.BOOTINFO_MAX_BANKS: the firmware learns its banks from bootinfo


class BoardError(ValueError):
    """A board file that cannot describe a machine. The message is one line."""


@dataclass(frozen=True, slots=True)
class RamSpec:
    """One RAM bank of the board."""

    name: str
    base: int
    size: int
    attributes: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def dma(self) -> bool:
        return "dma" in self.attributes


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One MMIO device: its window, its interrupt line and type-specific options."""

    name: str
    type: str
    base: int
    size: int
    irq: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True, slots=True)
class DmaMaster:
    """A bus master and the physical windows [(base, size)] it can address."""

    name: str
    windows: tuple[tuple[int, int], ...]

    def reaches(self, addr: int, n: int) -> bool:
        """True when [addr, addr+n) lies inside one window."""
        return any(b <= addr and addr + n <= b + s for b, s in self.windows)


@dataclass(frozen=True, slots=True)
class DmaRules:
    """The DMA engine's transfer rules."""

    master: str | None = None
    boundary: int = 0  # 0: no boundary rule
    cycles_per_byte: int = 1


@dataclass(frozen=True, slots=True)
class CpuSpec:
    isa: str = "rv32imac"
    quantum: int = 100_000  # ~6x slower than free-running per slice, so slices stay long
    timer_hz: int = 100_000_000


@dataclass(frozen=True, slots=True)
class Board:
    """A validated board description."""

    name: str
    description: str
    ram: tuple[RamSpec, ...]
    devices: tuple[DeviceSpec, ...]
    dma_masters: tuple[DmaMaster, ...] = ()
    dma_rules: DmaRules = DmaRules()
    cpu: CpuSpec = CpuSpec()
    source: str = ""  # the file it came from (shipped name or user path), for messages
    label: str = ""  # how reports name it: shipped name, or "name@sha256:<8 hex>" of a file (board_label)

    @property
    def ram_size(self) -> int:
        return sum(b.size for b in self.ram)

    @property
    def ram_end(self) -> int:
        return max(b.end for b in self.ram)

    def device(self, type_: str) -> DeviceSpec | None:
        """The board's device of this type, or None."""
        return next((d for d in self.devices if d.type == type_), None)

    def bank_of(self, addr: int) -> RamSpec | None:
        return next((b for b in self.ram if b.base <= addr < b.end), None)

    def dma_master(self) -> DmaMaster | None:
        """The master whose windows the DMA engine obeys (None: it reaches all RAM)."""
        if self.dma_rules.master is not None:
            return next(m for m in self.dma_masters if m.name == self.dma_rules.master)
        return self.dma_masters[0] if self.dma_masters else None

    @property
    def test_irq(self) -> int | None:
        intc = self.device("intc")
        return None if intc is None else int(intc.options.get("test_irq", 31))
