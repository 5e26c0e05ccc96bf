"""The DMA engine: a one-channel memory-to-memory copier with a 2 KiB device buffer.

Registers (offsets from the device's base; devices.py lists every device's map):

    +0x0 src  +0x4 dst  +0x8 len  +0xC ctrl (W bit 0 = start)
    +0x10 status (R: 0 idle, 1 busy, 2 done, 3 error)
    +0x800..+0x1000: the device buffer, a loopback peripheral the CPU can read and
    write, and the engine can copy to and from (bus addresses base+0x800...)

A start (`write` to ctrl) records a `Transfer` due `len * cycles_per_byte`
instructions later and sets `poked` (the machine cuts the slice there, so the
transfer is timed from the exact store and `stamp` moves its start to that time).
`service(now)` completes what is due: the transfer is checked (`check`, replaceable
by the composer: bridge/dmacheck.py), copies through PhysMem or the buffer, and
raises the engine's line (done or error). A start while busy is ignored and counted.
`transfers` keeps the first TRANSFERS_KEPT transfers; `count`, `completed` and
`bytes_done` count them all (a DMA loop must not grow the host's memory).

Invariants:
 1. MMIO callbacks change only the engine's registers and queue (devices.py, 1).
 2. A transfer copies only after its check passed; a refused transfer copies
    nothing and ends with status 3 (error) and its interrupt.
 3. The interrupt line is raised only from `service`, at a boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kalloc.errors import DmaBoundaryError, DmaUnreachableError
from kalloc.physmem import BadAddress, PhysMem
from kalloc_machine.boardspec import Board, DeviceSpec, DmaMaster
from kalloc_machine.devices import Clock, Device, RaiseFn, ReportFn, extract_bytes, merge_bytes

DMA_IDLE, DMA_BUSY, DMA_DONE, DMA_ERROR = 0, 1, 2, 3
CheckFn = Callable[[int, int, bool], bool]


@dataclass(slots=True)
class Transfer:
    """One DMA transfer, as started and as it ended."""

    src: int
    dst: int
    length: int
    started: int
    due: int
    status: int = DMA_BUSY
    errors: list[str] = field(default_factory=list)
    pc: int | None = None  # the firmware store that started it (set by the machine's cut)
    backtrace: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "len": self.length, "started": self.started,
                "done": self.due, "status": ("idle", "busy", "done", "error")[self.status],
                "pc": self.pc}  # fmt: skip


class DmaEngine(Device):
    """A one-channel memory-to-memory DMA engine with a 2 KiB device buffer.

    `check(addr, length, is_write) -> bool` is called for each RAM side of a transfer
    before it copies (is_write: the engine writes there). The composer may replace it to
    report with allocation sites; the default, `default_check`, applies the board's
    windows and boundary rule and reports `DmaUnreachableError` / `DmaBoundaryError`.
    """

    SRC, DST, LEN, CTRL, STATUS = 0x0, 0x4, 0x8, 0xC, 0x10
    BUF_OFFSET = 0x800
    BUF_SIZE = 0x800
    CTRL_START = 1
    due_only = True  # a transfer completes at its deadline only (Device.due_only)
    TRANSFERS_KEPT = 64

    def __init__(
        self,
        spec: DeviceSpec,
        clock: Clock,
        board: Board,
        phys: PhysMem,
        raise_irq: RaiseFn,
        report: ReportFn,
    ) -> None:
        super().__init__(spec, clock)
        self.phys = phys
        self.raise_irq = raise_irq
        self.report = report
        self.master: DmaMaster | None = board.dma_master()
        self.boundary = board.dma_rules.boundary
        self.cycles_per_byte = board.dma_rules.cycles_per_byte
        self.buffer = bytearray(self.BUF_SIZE)
        self.buf_base = self.base + self.BUF_OFFSET
        self.regs = {self.SRC: 0, self.DST: 0, self.LEN: 0}
        self.status = DMA_IDLE
        self.current: Transfer | None = None
        self.transfers: list[Transfer] = []  # the first TRANSFERS_KEPT
        self.count = self.completed = self.bytes_done = 0  # every transfer ended
        self.ignored_starts = 0  # starts while busy: ignored, as on most simple engines
        self.completing: Transfer | None = None
        self.check: CheckFn = self.default_check

    # MMIO (record only)

    def read(self, offset: int, size: int) -> int:
        if offset >= self.BUF_OFFSET:
            i = offset - self.BUF_OFFSET
            return int.from_bytes(self.buffer[i : i + size], "little")
        if offset & ~3 in self.regs:
            return extract_bytes(self.regs[offset & ~3], offset, size)
        if offset & ~3 == self.STATUS:
            return self.status
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= self.BUF_OFFSET:
            i = offset - self.BUF_OFFSET
            n = min(size, self.BUF_SIZE - i)
            self.buffer[i : i + n] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")[:n]
        elif offset & ~3 in self.regs:
            self.regs[offset & ~3] = merge_bytes(self.regs[offset & ~3], offset, size, value)
        elif offset == self.CTRL and value & self.CTRL_START:
            self.start()

    def start(self) -> None:
        if self.current is not None:
            self.ignored_starts += 1
            return
        length = self.regs[self.LEN]
        now = self.clock.now
        t = Transfer(self.regs[self.SRC], self.regs[self.DST], length, now,
                     now + max(1, length * self.cycles_per_byte))  # fmt: skip
        self.current = t
        self.status = DMA_BUSY
        self.poked = True

    def stamp(self, now: int) -> None:
        """The start store ran at `now`, not at the slice start: re-base the transfer."""
        t = self.current
        if t is not None and t.started < now:
            t.due += now - t.started
            t.started = now

    # boundaries

    def deadline(self) -> int | None:
        return self.current.due if self.current is not None else None

    def service(self, now: int) -> None:
        t = self.current
        if t is None or now < t.due:
            return
        self.current = None
        self.completing = t  # for a composer's check: which transfer it is judging
        t.status = DMA_DONE if self._complete(t) else DMA_ERROR
        self.completing = None
        self.status = t.status
        if self.count < self.TRANSFERS_KEPT:
            self.transfers.append(t)
        self.count += 1
        if t.status == DMA_DONE:
            self.completed += 1
            self.bytes_done += t.length
        if self.irq is not None:
            self.raise_irq(self.irq)

    def _in_buffer(self, addr: int) -> bool:
        return self.buf_base <= addr < self.buf_base + self.BUF_SIZE

    def _side_ok(self, addr: int, length: int, is_write: bool) -> bool:
        if self._in_buffer(addr):
            if addr + length <= self.buf_base + self.BUF_SIZE:
                return True
            self.report(DmaUnreachableError(
                f"DMA {'write to' if is_write else 'read from'} {addr:#x}+{length} runs past the end of "
                f"the device buffer ({self.BUF_SIZE} bytes at {self.buf_base:#x})",
                addr=addr, length=length, direction="write" if is_write else "read",
            ))  # fmt: skip
            return False
        return self.check(addr, length, is_write)

    def _complete(self, t: Transfer) -> bool:
        if not t.length:
            return True
        if not (self._side_ok(t.src, t.length, False) and self._side_ok(t.dst, t.length, True)):
            return False
        try:
            data = self._read(t.src, t.length)
            self._write(t.dst, data)
        except BadAddress:
            self.report(DmaUnreachableError(
                f"DMA transfer {t.src:#x} -> {t.dst:#x} ({t.length} bytes) touches memory that is not RAM",
                addr=t.dst, length=t.length, src=t.src, dst=t.dst,
            ))  # fmt: skip
            return False
        return True

    def _read(self, addr: int, n: int) -> bytes:
        if self._in_buffer(addr):
            i = addr - self.buf_base
            return bytes(self.buffer[i : i + n])
        return self.phys.read(addr, n)

    def _write(self, addr: int, data: bytes) -> None:
        if self._in_buffer(addr):
            i = addr - self.buf_base
            self.buffer[i : i + len(data)] = data
        else:
            self.phys.write(addr, data)

    # the rules, reusable by a composer's check

    def reachable(self, addr: int, length: int) -> bool:
        """True when the engine's master can address [addr, addr+length) (RAM only)."""
        if self.master is None:
            return self.phys.contains(addr, length)
        return self.master.reaches(addr, length)

    def crossed_boundary(self, addr: int, length: int) -> int | None:
        """The boundary address the range crosses, or None (also None without a rule)."""
        b = self.boundary
        if not b or length <= 0:
            return None
        first = (addr // b + 1) * b
        return first if first < addr + length else None

    def default_check(self, addr: int, length: int, is_write: bool) -> bool:
        """The board's rules; reports dma-unreachable / dma-boundary and returns False."""
        direction = "write" if is_write else "read"
        verb = "write to" if is_write else "read from"
        if not self.reachable(addr, length):
            who = f"DMA master '{self.master.name}'" if self.master else "the DMA engine"
            windows = [[b, s] for b, s in self.master.windows] if self.master else []
            self.report(DmaUnreachableError(
                f"DMA {verb} {addr:#x}+{length}: outside the memory {who} can reach",
                addr=addr, length=length, direction=direction, windows=windows,
            ))  # fmt: skip
            return False
        cross = self.crossed_boundary(addr, length)
        if cross is not None:
            self.report(DmaBoundaryError(
                f"DMA {verb} {addr:#x}+{length} crosses a {self.boundary:#x}-byte boundary at {cross:#x}",
                addr=addr, length=length, direction=direction, boundary=self.boundary, crossing=cross,
            ))  # fmt: skip
            return False
        return True
