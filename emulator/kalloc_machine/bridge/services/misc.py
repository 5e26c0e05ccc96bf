"""The `misc` service family: boot information, the console, statistics, markers.

NOP, BOOTINFO, CONSOLE_WRITE, STATS_DUMP, NOT_LEAK, MARK and NR_FREE_PAGES
(kalloc_machine.bridge.abi). `bootinfo_bytes()` builds what BOOTINFO copies out:
struct kalloc_bootinfo for a board and its RAM banks, u32 fields in
abi.BOOTINFO_FIELDS order.

Invariants:
 1. These services allocate nothing; only BOOTINFO writes guest RAM, and only
    inside the buffer it was given.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from kalloc import Caller
from kalloc.errors import BadArgumentError
from kalloc_machine.bridge import abi
from kalloc_machine.bridge.callsite import reads_no_caller

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc.physmem import PhysMem
    from kalloc_machine.board import Board

CONSOLE_MAX = 1 << 20  # one CONSOLE_WRITE: more is a garbage length


class MiscServices:
    """Handlers of the `misc` family (module docstring)."""

    def __init__(self, ka: Kalloc, *, console: Callable[[bytes], None], bootinfo: bytes = b"") -> None:
        self.ka = ka
        self.phys = ka.phys
        self.console = console  # the UART's input side (Machine.console_write)
        self.bootinfo = bootinfo

    @reads_no_caller  # no call-site walk (bridge/doorbell.py, invariant 6)
    def svc_nop(self, caller: Caller, *args: int) -> tuple[int, int]:
        return 0, 0

    @reads_no_caller  # no call-site walk (bridge/doorbell.py, invariant 6)
    def svc_bootinfo(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        data = self.bootinfo[: min(length, len(self.bootinfo))]
        if not self.phys.contains(buf, max(len(data), 1)):
            raise BadArgumentError(f"BOOTINFO buffer {buf:#x}+{length} is not RAM", addr=buf)
        self.phys.write(buf, data)
        return len(data), 0

    def svc_console_write(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        if length > CONSOLE_MAX or not self.phys.contains(buf, max(length, 1)):
            raise BadArgumentError(f"CONSOLE_WRITE buffer {buf:#x}+{length} is not RAM", addr=buf)
        self.console(self.phys.read(buf, length))
        return length, 0

    @reads_no_caller  # no call-site walk (bridge/doorbell.py, invariant 6)
    def svc_stats_dump(self, caller: Caller, what: int, *args: int) -> tuple[int, int]:
        ka = self.ka
        parts = []
        if what & abi.STATS_BUDDYINFO:
            parts.append(ka.buddyinfo())
        if what & abi.STATS_ZONEINFO:
            parts.append(ka.zoneinfo())
        if what & abi.STATS_SLABINFO:
            parts.append(ka.slabinfo())
        text = "\n".join(p.rstrip("\n") for p in parts) + "\n"
        self.console(text.encode())
        return 0, 0

    def svc_not_leak(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self.ka.not_leak(ptr)
        return 0, 0

    def svc_mark(self, caller: Caller, ident: int, *args: int) -> tuple[int, int]:
        return 0, 0

    @reads_no_caller  # no call-site walk (bridge/doorbell.py, invariant 6)
    def svc_nr_free_pages(self, caller: Caller, *args: int) -> tuple[int, int]:
        return self.ka.buddy.free_pages, 0


def bootinfo_bytes(board: Board, phys: PhysMem) -> bytes:
    """struct kalloc_bootinfo for `board` with RAM `phys` (docs/abi.md, "Boot information")."""
    values: dict[str, int] = {
        "magic": abi.BOOTINFO_MAGIC,
        "abi_version": abi.ABI_VERSION,
        "ram_base": min(b.base for b in phys.banks),
        "ram_end": max(b.end for b in phys.banks),
    }
    for dev_type, key in (("uart", "uart_base"), ("clint", "clint_base"), ("intc", "intc_base"),
                          ("dma", "dma_base")):  # fmt: skip
        dev = board.device(dev_type)
        values[key] = dev.base if dev else 0
    dma = board.device("dma")
    values["dma_irq"] = dma.irq if dma and dma.irq else 0
    values["timer_irq"] = 0  # the CLINT timer is not an INTC line: mcause 7
    values["test_irq"] = board.test_irq or 0
    banks = phys.banks[: abi.BOOTINFO_MAX_BANKS]
    values["nbanks"] = len(banks)
    for i, bank in enumerate(banks):
        values[f"bank{i}_base"] = bank.base
        values[f"bank{i}_size"] = bank.size
        values[f"bank{i}_flags"] = abi.BANK_DMA if bank.dma else 0
    return struct.pack(f"<{len(abi.BOOTINFO_FIELDS)}I", *(values.get(f, 0) for f in abi.BOOTINFO_FIELDS))
