"""Boards: the TOML files that describe one machine (RAM banks, devices, DMA reach).

A board is data, not code: the machine (emulator/machine.py) builds its memory map,
devices and DMA rules from a `Board`, and the allocator builds its zones from the
banks' `dma` flags. The shipped boards live in emulator/boards/*.toml (package data);
`--board` also takes a path to a user's own file.

Schema (every address and size is an int; sizes may also be strings "4MiB", "256KiB",
"1GiB", "4096"; TOML writes hex ints as 0x8000_0000):

    name = "default"                     # required
    description = "16 MiB SoC ..."       # required, one line

    [cpu]                                # optional; every field has a default
    isa = "rv32imac"                     # the only ISA so far (emulator/isa.py)
    quantum = 100000                     # instructions per slice (see machine.py)
    timer_hz = 100000000                 # nominal instructions per second, for reports

    [[ram]]                              # 1..4 banks (bootinfo carries at most 4)
    name = "dma"
    base = 0x8000_0000                   # page-aligned, in [RAM_BASE, VMALLOC_START)
    size = "4MiB"                        # a multiple of the page size
    attributes = ["dma"]                 # optional; "dma" = every DMA master reaches it

    [[device]]
    name = "uart0"
    type = "uart"                        # uart | clint | intc | dma
    base = 0x1000_0000
    size = 0x1000
    irq = 1                              # optional; see "Interrupt lines" below
    test_irq = 31                        # intc only: the injector's line (default 31)

    [[dma_master]]                       # optional, any number
    name = "dma0"
    windows = [[0x8000_0000, 0x40_0000]] # [base, size] ranges the master can address

    [dma_engine]                         # optional; rules of the `dma` device
    master = "dma0"                      # whose windows apply (default: the first master)
    boundary = 65536                     # no transfer may cross a multiple of this (0: none)
    cycles_per_byte = 1                  # completion delay, in instructions per byte

Interrupt lines: the intc routes lines 1..31 to the CPU's machine external interrupt
(mcause 0x8000000b). The clint's timer is wired to the CPU directly (mcause 0x80000007);
its `irq` (0 by convention, never an intc line) is only the number firmware uses to
register the timer handler and reports use to count it.

Invariants (each checked by `validate`, each failure a one-line `BoardError`):
 1. Banks do not overlap, are page-aligned with page-multiple sizes, lie in
    [RAM_BASE, VMALLOC_START), and one of them starts at RAM_BASE (firmware loads there).
 2. Device windows overlap neither RAM, nor each other, nor the hypercall doorbells, nor
    the idle sled; each type appears at most once and is big enough for its registers.
 3. Intc lines are unique, in 1..31, and need an intc on the board.
 4. A bank marked "dma" is reachable, whole, by every DMA master; `RamSpec.dma` is that
    flag, and it becomes `RamBank.dma` in the machine's PhysMem.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kalloc_machine import memlayout as ml

BOARDS_DIR = Path(__file__).parent / "boards"

DEVICE_TYPES: dict[str, int] = {  # type -> smallest window holding its registers
    "uart": 0x8,
    "clint": 0x1_0000,
    "intc": 0x10,
    "dma": 0x1000,
}
RAM_ATTRIBUTES: tuple[str, ...] = ("dma",)
INTC_LINES = range(1, 32)
ISAS: tuple[str, ...] = ("rv32imac",)
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


# -- parsing -------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(0x[0-9a-fA-F_]+|[0-9_]+)\s*([KMG]i?B?)?\s*$")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(value: Any, what: str) -> int:
    """An int, or a string such as "4MiB", "256KiB", "1G", "0x1000" (units are binary)."""
    if isinstance(value, bool):
        raise BoardError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            n = int(m.group(1).replace("_", ""), 0)
            return n * (_UNITS[m.group(2)[0]] if m.group(2) else 1)
    raise BoardError(f'{what}: expected a size such as 4096 or "4MiB", got {value!r}')


def _req(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise BoardError(f"{where}: missing field '{key}'")
    return table[key]


def _int(table: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = table.get(key, default) if default is not None else _req(table, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BoardError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
    return value


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = _req(table, key, where)
    if not isinstance(value, str) or not value:
        raise BoardError(f"{where}: '{key}' must be a non-empty string")
    return value


def _tables(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise BoardError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return items


def _parse_ram(t: dict[str, Any], i: int, src: str) -> RamSpec:
    where = f"{src}: ram[{i}]"
    name = _str(t, "name", where)
    where = f"{src}: ram bank '{name}'"
    attrs = t.get("attributes", [])
    if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
        raise BoardError(f"{where}: 'attributes' must be a list of strings")
    for a in attrs:
        if a not in RAM_ATTRIBUTES:
            raise BoardError(f"{where}: unknown attribute '{a}' (known: {', '.join(RAM_ATTRIBUTES)})")
    size = parse_size(_req(t, "size", where), f"{where}: size")
    return RamSpec(name, _int(t, "base", where), size, tuple(attrs))


def _parse_device(t: dict[str, Any], i: int, src: str) -> DeviceSpec:
    name = _str(t, "name", f"{src}: device[{i}]")
    where = f"{src}: device '{name}'"
    type_ = _str(t, "type", where)
    if type_ not in DEVICE_TYPES:
        raise BoardError(f"{where}: unknown device type '{type_}' (known: {', '.join(DEVICE_TYPES)})")
    size = parse_size(_req(t, "size", where), f"{where}: size")
    irq = t.get("irq")
    if irq is not None and (isinstance(irq, bool) or not isinstance(irq, int)):
        raise BoardError(f"{where}: 'irq' must be an integer line number")
    options = {k: v for k, v in t.items() if k not in ("name", "type", "base", "size", "irq")}
    return DeviceSpec(name, type_, _int(t, "base", where), size, irq, options)


def _parse_master(t: dict[str, Any], i: int, src: str) -> DmaMaster:
    name = _str(t, "name", f"{src}: dma_master[{i}]")
    where = f"{src}: dma master '{name}'"
    raw = _req(t, "windows", where)
    windows = []
    if not isinstance(raw, list):
        raise BoardError(f"{where}: 'windows' must be a list of [base, size] pairs")
    for w in raw:
        if not isinstance(w, list) or len(w) != 2:
            raise BoardError(f"{where}: window {w!r} is not a [base, size] pair")
        base, size = w[0], parse_size(w[1], f"{where}: window size")
        if isinstance(base, bool) or not isinstance(base, int) or size <= 0:
            raise BoardError(f"{where}: window {w!r} needs an integer base and a positive size")
        windows.append((base, size))
    return DmaMaster(name, tuple(windows))


def parse_board(doc: dict[str, Any], src: str) -> Board:
    """Build a Board from a parsed TOML document, then validate it. Raises BoardError."""
    name = _str(doc, "name", src)
    description = _str(doc, "description", src)
    cpu_t = doc.get("cpu", {})
    if not isinstance(cpu_t, dict):
        raise BoardError(f"{src}: [cpu] must be a table")
    cpu = CpuSpec(
        isa=str(cpu_t.get("isa", "rv32imac")),
        quantum=_int(cpu_t, "quantum", f"{src}: [cpu]", 100_000),
        timer_hz=_int(cpu_t, "timer_hz", f"{src}: [cpu]", 100_000_000),
    )
    rules_t = doc.get("dma_engine", {})
    if not isinstance(rules_t, dict):
        raise BoardError(f"{src}: [dma_engine] must be a table")
    master = rules_t.get("master")
    if master is not None and not isinstance(master, str):
        raise BoardError(f"{src}: [dma_engine]: 'master' must be a master's name")
    rules = DmaRules(
        master=master,
        boundary=parse_size(rules_t.get("boundary", 0), f"{src}: [dma_engine] boundary"),
        cycles_per_byte=_int(rules_t, "cycles_per_byte", f"{src}: [dma_engine]", 1),
    )
    board = Board(
        name=name,
        description=description,
        ram=tuple(_parse_ram(t, i, src) for i, t in enumerate(_tables(doc, "ram", src))),
        devices=tuple(_parse_device(t, i, src) for i, t in enumerate(_tables(doc, "device", src))),
        dma_masters=tuple(_parse_master(t, i, src) for i, t in enumerate(_tables(doc, "dma_master", src))),
        dma_rules=rules,
        cpu=cpu,
        source=src,
    )
    validate(board)
    return board


# -- validation ----------------------------------------------------------------------


def _overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def _validate_ram(board: Board, src: str) -> None:
    if not board.ram:
        raise BoardError(f"{src}: no [[ram]] bank")
    if len(board.ram) > MAX_BANKS:
        raise BoardError(f"{src}: {len(board.ram)} RAM banks; at most {MAX_BANKS} fit in bootinfo")
    for b in board.ram:
        where = f"{src}: ram bank '{b.name}'"
        if b.size <= 0 or b.size % ml.PAGE_SIZE:
            raise BoardError(f"{where}: size {b.size:#x} is not a positive multiple of the page size")
        if b.base % ml.PAGE_SIZE:
            raise BoardError(f"{where}: base {b.base:#x} is not page-aligned")
        if b.base < ml.RAM_BASE or b.end > ml.VMALLOC_START:
            raise BoardError(
                f"{where}: [{b.base:#x}, {b.end:#x}) is outside RAM space "
                f"[{ml.RAM_BASE:#x}, {ml.VMALLOC_START:#x})"
            )
    banks = sorted(board.ram, key=lambda b: b.base)
    for a, b in itertools.pairwise(banks):
        if a.end > b.base:
            raise BoardError(f"{src}: RAM banks '{a.name}' and '{b.name}' overlap")
    if banks[0].base != ml.RAM_BASE:
        raise BoardError(f"{src}: no RAM bank at RAM_BASE {ml.RAM_BASE:#x} (firmware loads there)")
    if len({b.name for b in banks}) != len(banks):
        raise BoardError(f"{src}: two RAM banks share a name")


def _validate_devices(board: Board, src: str) -> None:
    reserved = [
        ("the hypercall doorbells", ml.DOORBELL_BASE, ml.DOORBELL_BASE + ml.DOORBELL_SIZE),
        ("the idle sled", ml.IDLE_SLED_BASE, ml.IDLE_SLED_BASE + ml.IDLE_SLED_SIZE),
    ]
    seen_types: set[str] = set()
    for d in board.devices:
        where = f"{src}: device '{d.name}'"
        if d.type in seen_types:
            raise BoardError(f"{where}: a second device of type '{d.type}' (one of each is supported)")
        seen_types.add(d.type)
        if d.size < DEVICE_TYPES[d.type]:
            raise BoardError(
                f"{where}: size {d.size:#x} is too small for a {d.type} ({DEVICE_TYPES[d.type]:#x})"
            )
        if d.base % ml.PAGE_SIZE or d.size % ml.PAGE_SIZE:
            raise BoardError(f"{where}: window [{d.base:#x}, {d.end:#x}) is not page-aligned")
        if d.end > 1 << 32:
            raise BoardError(f"{where}: window ends past 4 GiB")
        for b in board.ram:
            if _overlap(d.base, d.end, b.base, b.end):
                raise BoardError(f"{where}: window overlaps RAM bank '{b.name}'")
        for what, lo, hi in reserved:
            if _overlap(d.base, d.end, lo, hi):
                raise BoardError(f"{where}: window overlaps {what} at {lo:#x}")
    devs = sorted(board.devices, key=lambda d: d.base)
    for a, b in itertools.pairwise(devs):
        if a.end > b.base:
            raise BoardError(f"{src}: devices '{a.name}' and '{b.name}' overlap")
    if len({d.name for d in devs}) != len(devs):
        raise BoardError(f"{src}: two devices share a name")


def _validate_irqs(board: Board, src: str) -> None:
    intc = board.device("intc")
    lines: dict[int, str] = {}
    if intc is not None:
        t = intc.options.get("test_irq", 31)
        if isinstance(t, bool) or not isinstance(t, int) or t not in INTC_LINES:
            raise BoardError(f"{src}: device '{intc.name}': test_irq {t!r} is not an intc line (1..31)")
        lines[t] = "the test line"
    for d in board.devices:
        if d.irq is None or d.type == "intc":
            continue
        where = f"{src}: device '{d.name}'"
        if d.type == "clint":
            if d.irq in INTC_LINES:
                raise BoardError(f"{where}: the timer's irq {d.irq} must not be an intc line (use 0)")
            continue
        if intc is None:
            raise BoardError(f"{where}: has irq {d.irq} but the board has no intc")
        if d.irq not in INTC_LINES:
            raise BoardError(f"{where}: irq {d.irq} is not an intc line (1..31)")
        if d.irq in lines:
            raise BoardError(f"{where}: irq {d.irq} is already {lines[d.irq]}")
        lines[d.irq] = f"used by '{d.name}'"


def _validate_dma(board: Board, src: str) -> None:
    names = [m.name for m in board.dma_masters]
    if len(set(names)) != len(names):
        raise BoardError(f"{src}: two DMA masters share a name")
    rules = board.dma_rules
    if rules.master is not None and rules.master not in names:
        raise BoardError(f"{src}: [dma_engine] master '{rules.master}' is not a [[dma_master]]")
    if rules.boundary and rules.boundary & (rules.boundary - 1):
        raise BoardError(f"{src}: [dma_engine] boundary {rules.boundary} is not a power of two")
    for b in board.ram:
        for m in board.dma_masters:
            if b.dma and not m.reaches(b.base, b.size):
                raise BoardError(
                    f"{src}: ram bank '{b.name}' is marked dma but DMA master '{m.name}' "
                    "cannot reach all of it"
                )


def validate(board: Board) -> None:
    """Check every invariant of the module docstring. Raises BoardError (one line)."""
    src = board.source or board.name
    if board.cpu.isa not in ISAS:
        raise BoardError(f"{src}: [cpu] isa '{board.cpu.isa}' is not supported (known: {', '.join(ISAS)})")
    if board.cpu.quantum <= 0:
        raise BoardError(f"{src}: [cpu] quantum must be positive")
    _validate_ram(board, src)
    _validate_devices(board, src)
    _validate_irqs(board, src)
    _validate_dma(board, src)


# -- loading -------------------------------------------------------------------------


def board_path(name_or_path: str) -> Path:
    """The file for a shipped board name, or the path itself when it names a file."""
    p = Path(name_or_path)
    if name_or_path.endswith(".toml") or p.parent != Path("."):
        return p
    return BOARDS_DIR / f"{name_or_path}.toml"


def load_board(name_or_path: str) -> Board:
    """Load and validate a shipped board by name ("default") or a TOML file by path.

    Raises:
        BoardError: unknown name, unreadable file, bad TOML, or a broken invariant.
    """
    path = board_path(name_or_path)
    shipped = path.parent == BOARDS_DIR
    src = f"board '{name_or_path}'" if shipped else str(name_or_path)
    if not path.is_file():
        if shipped:
            known = ", ".join(n for n, _ in list_boards())
            raise BoardError(f"unknown board '{name_or_path}' (shipped boards: {known})")
        raise BoardError(f"{src}: no such board file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BoardError(f"{src}: bad TOML: {e}") from None
    except OSError as e:
        raise BoardError(f"{src}: cannot read: {e.strerror}") from None
    return parse_board(doc, src)


def list_boards() -> list[tuple[str, str]]:
    """(name, description) of every shipped board, sorted by name."""
    out = []
    for p in sorted(BOARDS_DIR.glob("*.toml")):
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError):
            continue
        out.append((p.stem, str(doc.get("description", ""))))
    return out
