"""Physical memory as the allocator sees it: RAM banks backed by host buffers.

A `PhysMem` is a sorted set of banks, each a `memoryview` over a host buffer
(a `bytearray` standalone, an `mmap` the emulator also maps into Unicorn with
`mem_map_ptr`). kalloc poisons, zeroes, copies and reads guest memory through
it; no Unicorn call is ever needed.

Invariants:
 1. Banks do not overlap and are sorted by base.
 2. `view(addr, n)` never spans two banks: a range that leaves its bank raises
    `BadAddress` (the allocator never hands out a block that spans banks).
"""

from __future__ import annotations

import bisect
import mmap
from dataclasses import dataclass

_PATTERN_SIZE = 1 << 20  # fill patterns are cached and copied in 1 MiB pieces: no per-call allocation
_patterns: dict[int, memoryview] = {}


class BadAddress(ValueError):
    """An address (range) that is not RAM."""


@dataclass(slots=True)
class RamBank:
    """One contiguous bank of RAM. `dma` is set when every DMA master reaches it."""

    name: str
    base: int
    size: int
    buf: memoryview
    dma: bool = False

    @property
    def end(self) -> int:
        return self.base + self.size


def anonymous_buffer(size: int) -> mmap.mmap:
    """A zero-filled host buffer whose pages the OS commits lazily (1 GiB boots fast)."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class PhysMem:
    """Byte access to physical addresses across RAM banks."""

    def __init__(self, banks: list[RamBank]) -> None:
        self.banks = sorted(banks, key=lambda b: b.base)
        for a, b in zip(self.banks, self.banks[1:], strict=False):
            if a.end > b.base:
                raise ValueError(f"RAM banks {a.name} and {b.name} overlap")
        self._bases = [b.base for b in self.banks]

    @classmethod
    def standalone(cls, base: int = 0x8000_0000, size: int = 16 << 20, dma_size: int = 4 << 20) -> PhysMem:
        """One bytearray split into a DMA bank and a NORMAL bank: the REPL setup."""
        banks = [RamBank("dma", base, dma_size, memoryview(bytearray(dma_size)), dma=True)]
        if size > dma_size:
            rest = size - dma_size
            banks.append(RamBank("normal", base + dma_size, rest, memoryview(bytearray(rest))))
        return cls(banks)

    def bank_of(self, addr: int) -> RamBank | None:
        """The bank holding addr, or None."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0 and addr < self.banks[i].end:
            return self.banks[i]
        return None

    def contains(self, addr: int, n: int = 1) -> bool:
        """True when [addr, addr+n) lies inside one bank."""
        b = self.bank_of(addr)
        return b is not None and addr + n <= b.end

    def view(self, addr: int, n: int) -> memoryview:
        """A writable view of [addr, addr+n) inside one bank (n == 0: an empty view)."""
        if n == 0:
            return memoryview(bytearray())
        b = self.bank_of(addr)
        if b is None or n < 0 or addr + n > b.end:
            raise BadAddress(f"{addr:#x}+{n} is not inside one RAM bank")
        off = addr - b.base
        return b.buf[off : off + n]

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.view(addr, n))

    def write(self, addr: int, data: bytes) -> None:
        self.view(addr, len(data))[:] = data

    def fill(self, addr: int, n: int, byte: int) -> None:
        """Set n bytes to `byte` (poisoning and zeroing: the hot bulk operation)."""
        if not n:
            return
        view = self.view(addr, n)
        pattern = _patterns.get(byte)
        if pattern is None:
            pattern = _patterns[byte] = memoryview(bytes([byte]) * _PATTERN_SIZE)
        if n <= _PATTERN_SIZE:
            view[:] = pattern[:n]
            return
        for off in range(0, n, _PATTERN_SIZE):
            chunk = min(_PATTERN_SIZE, n - off)
            view[off : off + chunk] = pattern[:chunk]

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.view(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.view(addr, 4)[:] = (value & 0xFFFF_FFFF).to_bytes(4, "little")

    def read_cstr(self, addr: int, limit: int = 256) -> bytes:
        """A NUL-terminated string of at most `limit` bytes (no NUL in range: BadAddress)."""
        b = self.bank_of(addr)
        if b is None:
            raise BadAddress(f"string pointer {addr:#x} is not in RAM")
        n = min(limit, b.end - addr)
        raw = bytes(self.view(addr, n))
        end = raw.find(b"\0")
        if end < 0:
            raise BadAddress(f"string at {addr:#x} has no NUL within {n} bytes")
        return raw[:end]
