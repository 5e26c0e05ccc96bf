"""Board validation: every rule a board must satisfy before a machine is built from it.

`validate(board)` checks the invariants below, in this order, and raises the first
failure as a one-line `BoardError` that names the file and the table or entry at fault.

Invariants (each checked here):
 1. Banks do not overlap, are page-aligned with page-multiple sizes, lie in
    [RAM_BASE, VMALLOC_START), and one of them starts at RAM_BASE (firmware loads there).
 2. Device windows overlap neither RAM, nor each other, nor the hypercall doorbells, nor
    the idle sled; each type appears at most once and is big enough for its registers.
 3. Intc lines are unique, in 1..31, and need an intc on the board.
 4. A bank marked "dma" is reachable, whole, by every DMA master; `RamSpec.dma` is that
    flag, and it becomes `RamBank.dma` in the machine's PhysMem.
 5. `[cpu] isa` names a known ISA (isa/__init__.py ISAS), and the quantum is positive.
 6. No device window touches the null guard [0, NULL_GUARD) (a NULL dereference must
    fault) or the vmalloc/arena windows [VMALLOC_START, VMALLOC_END) (translated).
 7. The devices every SDK firmware drives are there: a clint (the timer), an intc
    (interrupt entry) and a uart (output); a dma device is optional. Their bases may
    move: the SDK reads them from bootinfo (docs/abi.md).
"""

from __future__ import annotations

import itertools

from kalloc_machine import memlayout as ml
from kalloc_machine.boardspec import DEVICE_TYPES, INTC_LINES, MAX_BANKS, Board, BoardError
from kalloc_machine.isa import ISAS

NULL_GUARD = 0x1_0000  # the low 64 KiB stay unmapped: NULL and small offsets from it fault
SDK_DEVICES = ("clint", "intc", "uart")  # invariant 7


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
        ("the null guard", 0, NULL_GUARD),
        ("the hypercall doorbells", ml.DOORBELL_BASE, ml.DOORBELL_BASE + ml.DOORBELL_SIZE),
        ("the vmalloc/arena windows", ml.VMALLOC_START, ml.VMALLOC_END),
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
        for bank in board.ram:
            if _overlap(d.base, d.end, bank.base, bank.end):
                raise BoardError(f"{where}: window overlaps RAM bank '{bank.name}'")
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
    if rules.boundary < 0 or (rules.boundary and rules.boundary & (rules.boundary - 1)):
        raise BoardError(f"{src}: [dma_engine] boundary {rules.boundary} is not a power of two")
    for b in board.ram:
        for m in board.dma_masters:
            if b.dma and not m.reaches(b.base, b.size):
                raise BoardError(
                    f"{src}: ram bank '{b.name}' is marked dma but DMA master '{m.name}' "
                    "cannot reach all of it"
                )


def _validate_sdk_devices(board: Board, src: str) -> None:
    for type_ in SDK_DEVICES:
        if board.device(type_) is None:
            raise BoardError(f"{src}: no {type_} device: every SDK firmware needs one "
                             f"(a [[device]] with type = \"{type_}\")")  # fmt: skip


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
    _validate_sdk_devices(board, src)
