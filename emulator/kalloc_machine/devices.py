"""MMIO devices of the machine: UART, CLINT timer, interrupt controller, and the
test-interrupt injector (the DMA engine, the one device that moves memory, is
dmaengine.py; its registers are listed here with the others).

Two kinds of code live in each device, and they must not mix:

    read(offset, size) / write(offset, size, value)
        run inside Unicorn's MMIO callbacks, in the middle of a slice. They only
        change the device's own registers and queue work. They never touch time, the
        CPU or the emulator (a stopped store replays on resume; docs/architecture.md).
    deadline() / service(now)
        run at slice boundaries. `deadline()` is the next instruction count at which
        the device needs `service` (None: nothing scheduled); the machine ends each
        slice at the earliest deadline. `service(now)` completes what is due and raises
        interrupt lines.

Time is `Clock.now`: the instruction count at the start of the current slice (the only
time the machine knows inside a slice). The machine makes that exact where it matters:
it ends the slice at an `mtime` read (replayed at the boundary) and after a store that
sets `poked` (sled.py, "Cuts").

Register maps (offsets from the device's base; all registers 32-bit, little endian):

    UART   +0x0  TX data (W: the low byte is sent)   +0x4 status (R: bit 0 = TX ready,
                                                           always 1)
    CLINT  +0x0  msip (reads 0, writes ignored)      +0x4000 mtimecmp lo  +0x4004 hi
           +0xBFF8 mtime lo (R)  +0xBFFC mtime hi (R)     mtime = instructions executed
           timer pending = mtime >= mtimecmp (level; cleared by writing a later mtimecmp)
    INTC   +0x0  pending bitmap (R)   +0x4 enable bitmap (RW)
           +0x8  claim (R: the lowest pending and enabled line, whose pending bit it
                 clears; 0 = none) / complete (W: accepted, no effect)
           any line pending and enabled -> machine external interrupt (mcause 0x8000000b)
    DMA    +0x0 src  +0x4 dst  +0x8 len  +0xC ctrl (W bit 0 = start)
           +0x10 status (R: 0 idle, 1 busy, 2 done, 3 error)
           +0x800..+0x1000: the device buffer, a 2 KiB loopback peripheral the CPU can
           read and write, and the engine can copy to and from (bus addresses
           base+0x800...). A transfer copies len bytes src -> dst; either side may be
           RAM or the device buffer. It completes `len * cycles_per_byte` instructions
           after the start (at a boundary), is checked then, copies through PhysMem and
           raises the engine's line (done or error).

Invariants:
 1. MMIO callbacks change only device registers and queues (see above).
 2. Interrupt lines are raised only from `service`, at boundaries.
 3. A DMA transfer copies only after its check passed; a refused transfer copies
    nothing and ends with status 3 (error) and its interrupt.
 4. The injector's firing times depend only on its options and seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kalloc.errors import KallocError
from kalloc_machine.boardspec import DeviceSpec

ReportFn = Callable[[KallocError], None]
RaiseFn = Callable[[int], None]


@dataclass(slots=True)
class Clock:
    """Machine time: instructions executed (plus idle time skipped in wfi)."""

    now: int = 0


def merge_bytes(old: int, offset: int, size: int, value: int) -> int:
    """Store `size` bytes of value at byte `offset & 3` of a 32-bit register."""
    shift = (offset & 3) * 8
    mask = ((1 << (8 * size)) - 1) << shift
    return ((old & ~mask) | ((value << shift) & mask)) & 0xFFFF_FFFF


def extract_bytes(reg: int, offset: int, size: int) -> int:
    return (reg >> ((offset & 3) * 8)) & ((1 << (8 * size)) - 1)


class Device:
    """Base class: an MMIO window with a name and an optional interrupt line."""

    # True: `service(now)` changes nothing while now < deadline() (runloop.py, read_boundary)
    due_only = False

    def __init__(self, spec: DeviceSpec, clock: Clock) -> None:
        self.name = spec.name
        self.type = spec.type
        self.base = spec.base
        self.size = spec.size
        self.irq = spec.irq
        self.clock = clock
        # Set by write() when the store may have moved deadline() earlier (an mtimecmp
        # write, a DMA start): the machine then ends the slice right after the store.
        self.poked = False

    def stamp(self, now: int) -> None:
        """Called after a slice cut at a store that poked: `now` is the store's exact time."""

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass

    def deadline(self) -> int | None:
        return None

    def service(self, now: int) -> None:
        pass


# -- UART ---------------------------------------------------------------------------------


class Uart(Device):
    """A transmit-only UART: every byte stored to TX is appended to `output`."""

    TX = 0x0
    STATUS = 0x4
    MAX_OUTPUT = 16 << 20  # a runaway print loop must not eat the host's memory

    def __init__(self, spec: DeviceSpec, clock: Clock) -> None:
        super().__init__(spec, clock)
        self.output = bytearray()
        self.dropped = 0

    def read(self, offset: int, size: int) -> int:
        return 1 if offset == self.STATUS else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == self.TX:
            self.send(bytes([value & 0xFF]))

    def send(self, data: bytes) -> None:
        """Append bytes to the output (also the CONSOLE_WRITE hypercall's path)."""
        room = self.MAX_OUTPUT - len(self.output)
        self.output += data[:room]
        self.dropped += max(0, len(data) - room)

    def text(self) -> str:
        out = self.output.decode("utf-8", "replace")
        return out + (f"\n[uart: {self.dropped} bytes dropped]\n" if self.dropped else "")


# -- CLINT -----------------------------------------------------------------------------------


class Clint(Device):
    """mtime (= machine time in instructions) and one hart's mtimecmp."""

    MSIP = 0x0
    MTIMECMP = 0x4000
    MTIME = 0xBFF8
    NEVER = (1 << 64) - 1

    def __init__(self, spec: DeviceSpec, clock: Clock) -> None:
        super().__init__(spec, clock)
        self.mtimecmp = self.NEVER

    def read(self, offset: int, size: int) -> int:
        if self.MTIME <= offset < self.MTIME + 8:
            return extract_bytes(self.clock.now >> (32 if offset >= self.MTIME + 4 else 0), offset, size)
        if self.MTIMECMP <= offset < self.MTIMECMP + 8:
            hi = offset >= self.MTIMECMP + 4
            return extract_bytes(self.mtimecmp >> (32 if hi else 0), offset, size)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if self.MTIMECMP <= offset < self.MTIMECMP + 8:
            hi = offset >= self.MTIMECMP + 4
            word = (self.mtimecmp >> 32) if hi else (self.mtimecmp & 0xFFFF_FFFF)
            word = merge_bytes(word, offset, size, value)
            if hi:
                self.mtimecmp = (word << 32) | (self.mtimecmp & 0xFFFF_FFFF)
            else:
                self.mtimecmp = (self.mtimecmp & ~0xFFFF_FFFF) | word
            self.poked = True

    def is_mtime(self, offset: int) -> bool:
        return self.MTIME <= offset < self.MTIME + 8

    def pending(self, now: int) -> bool:
        """mip.MTIP: the timer interrupt is asserted (level)."""
        return now >= self.mtimecmp

    def deadline(self) -> int | None:
        return self.mtimecmp if self.mtimecmp != self.NEVER else None


# -- interrupt controller ------------------------------------------------------------------


class Intc(Device):
    """A PLIC-lite for lines 1..31: pending, enable, claim/complete."""

    PENDING = 0x0
    ENABLE = 0x4
    CLAIM = 0x8

    def __init__(self, spec: DeviceSpec, clock: Clock) -> None:
        super().__init__(spec, clock)
        self.pending = 0
        self.enable = 0
        self.ever_enabled = 0  # every line enabled at some time (kalloc explore: is the test line handled?)
        self.raised: dict[int, int] = {}  # line -> times raised
        self.claimed: dict[int, int] = {}  # line -> times claimed (taken by a handler)
        self.last_claimed = 0  # the line the running external-interrupt handler claimed

    def read(self, offset: int, size: int) -> int:
        if offset & ~3 == self.PENDING:
            return extract_bytes(self.pending, offset, size)
        if offset & ~3 == self.ENABLE:
            return extract_bytes(self.enable, offset, size)
        if offset == self.CLAIM:
            return self.claim()
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset & ~3 == self.ENABLE:
            self.enable = merge_bytes(self.enable, offset, size, value) & ~1  # line 0 does not exist
            self.ever_enabled |= self.enable

    def raise_line(self, line: int) -> None:
        """Set a line pending. Called at boundaries only (module invariant 2)."""
        self.pending |= 1 << line
        self.raised[line] = self.raised.get(line, 0) + 1

    def claim(self) -> int:
        """The lowest pending enabled line (its pending bit cleared), or 0."""
        active = self.pending & self.enable
        if not active:
            return 0
        line = (active & -active).bit_length() - 1
        self.pending &= ~(1 << line)
        self.last_claimed = line
        self.claimed[line] = self.claimed.get(line, 0) + 1
        return line

    def asserted(self) -> bool:
        """mip.MEIP: some line is pending and enabled."""
        return bool(self.pending & self.enable)


# -- the test-interrupt injector ---------------------------------------------------------------


class IrqInjector:
    """Raises the board's test line at chosen machine times (issue 4's injector).

    Firing times: every value of `irq_at`, and, when `irq_every` > 0, the k-th periodic
    time k*irq_every + j_k (k = 1, 2, ...) where j_k is drawn uniformly from
    [0, irq_jitter] by a `random.Random(seed)` of its own. Same options and seed, same times.
    `fired` keeps the first FIRED_KEPT times, `fired_count` counts them all (a run may
    inject hundreds of millions: the host's memory must not grow with them).
    """

    FIRED_KEPT = 64
    due_only = True  # fires at its deadlines only (Device.due_only)

    def __init__(self, line: int, raise_irq: RaiseFn, *, irq_at: Iterable[int] = (), irq_every: int = 0,
                 irq_jitter: int = 0, seed: int = 0) -> None:  # fmt: skip
        if irq_every < 0 or irq_jitter < 0 or any(t < 0 for t in irq_at):
            raise ValueError("interrupt injector times must be non-negative")
        self.line = line
        self.raise_irq = raise_irq
        self._at = sorted(set(irq_at), reverse=True)  # pop() gives the earliest
        self.every = irq_every
        self.jitter = irq_jitter
        self._rng = random.Random(seed)
        self._k = 0
        self._next_periodic: int | None = None
        self._advance_periodic()
        self.fired: list[int] = []
        self.fired_count = 0

    def _advance_periodic(self) -> None:
        if not self.every:
            return
        self._k += 1
        j = self._rng.randint(0, self.jitter) if self.jitter else 0
        self._next_periodic = self._k * self.every + j

    def deadline(self) -> int | None:
        cands = [t for t in (self._at[-1] if self._at else None, self._next_periodic) if t is not None]
        return min(cands) if cands else None

    def service(self, now: int) -> None:
        while self._at and self._at[-1] <= now:
            self._fire(self._at.pop())
        while self._next_periodic is not None and self._next_periodic <= now:
            self._fire(self._next_periodic)
            self._advance_periodic()

    def _fire(self, when: int) -> None:
        if self.fired_count < self.FIRED_KEPT:
            self.fired.append(when)
        self.fired_count += 1
        self.raise_irq(self.line)
