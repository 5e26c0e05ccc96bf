"""The fast path's window (issue 14, part 3): its layout, which is the contract with the blob's
source (firmware/fastpath/fastpath.S, its header comment), and what the machine writes into it
before the run: the header, the class table, the empty magazines, the blob, and the patches of
`malloc`, `free`, `kmalloc` and `kfree` with their trampolines. The ring's replay and the run's
events are kalloc_machine/fastpath.py's.

    window (WINDOW = 0xF402_0000)
    +0x0000  header words (fastpath.S's H_*), class table at +0x100, magazines at +0x200
    +0x1000  the blob; trampolines at +0x1800
    +0x2000  the ring: RING_CAP records of 128 bytes (fastpath.S's header comment)
    +0xE0000 (MAP) one byte per 8-byte granule of each heap bank: class + 1 | api << 4 of a live
             object the blob may free (0: not fast-freeable: the slow path decides)

A wrapper's first 8 bytes become `auipc t0; jalr x0` into the blob's jump table. The blob's
fallback for each is a trampoline in the window: the 8 displaced bytes verbatim, then a jump to
the wrapper + 8, so the slow path sees the registers (ra, s0, sp, arguments) it sees without
the fast path; only instructions that neither read the PC nor touch t0 may move (`displaced`).

Invariants:
 1. Every offset here is fastpath.S's: one changes with the other (and the blob is rebuilt).
 2. The wrappers are patched all or none (`patch_wrappers`); `unpatch_wrappers` restores their
    bytes, drops Unicorn's translations of the patch and clears the allowed word.
 3. The header's words from H_CAP up to MAGS are written once, before the run, by the machine
    only: `write_layout` returns them, and every drain checks them unchanged.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import capstone
import unicorn

from kalloc import gfp as G
from kalloc.percpu import SERVED_MAX, Magazines
from kalloc.physmem import anonymous_buffer
from kalloc_machine.sdk import sdk_dir

WINDOW = 0xF402_0000  # below the idle sled, above vmalloc space (memlayout); 0xF400_0000 shares
# a TLB index with the firmware's first text page (last session's finding)
H_ALLOWED, H_HEAD, H_CAP, H_STLO, H_STHI, H_LIMIT, H_MMAX, H_BADGFP, H_NCLASS = range(4, 40, 4)
H_RANGES, H_MAGS, H_TRAMP, CLASSTAB, MAGS = 0x28, 0x40, 0x80, 0x100, 0x200
CODE, TRAMPS, RING = 0x1000, 0x1800, 0x2000
MAP = 0xE_0000  # (issue 14, sixth session) not 0x8000 after the ring: Unicorn's TLB is direct-mapped
# by page number mod 256, and there the default board's map of its top MiB (the slab pages the
# churn's objects live in) shared indices with the header and ring pages: 0.45 fills per churn
# iteration; here it lands on indices 224..255, past the objects' own pages: 0.08 (TLSF 0.19)
RING_CAP = 192  # records: 24 KiB
RECORD = 128
MAX_LIMIT = (CODE - MAGS) // 4 // 11 - 1  # magazine entries that fit the header page
MAX_WINDOW = 0xF800_0000 - WINDOW  # the idle sled's window starts there
ENTRIES = ("malloc", "free", "kmalloc", "kfree")  # the blob's jump table, in this order
BAD_GFP = (~G.KNOWN_MASK | G.DMA | G.ZERO) & 0xFFFF_FFFF  # a kmalloc gfp the blob leaves to Python
WORD = struct.Struct("<I")
_PC_FREE = frozenset({"c.addi16sp", "c.addi", "c.swsp", "c.addi4spn", "addi", "sw", "c.sw", "c.mv", "mv",
                      "c.li", "nop", "c.nop"})  # what a prologue may move to a trampoline: no PC, no t0
_MEPC = unicorn.riscv_const.UC_RISCV_REG_MEPC  # the fast path is RV32 only (fastpath.why_off)
_PC = unicorn.riscv_const.UC_RISCV_REG_PC


def jump(pc: int, target: int) -> bytes:
    """auipc t0, hi; jalr x0, lo(t0): pc -> target, anywhere in 32 bits."""
    off = (target - pc) & 0xFFFF_FFFF
    hi = ((off + 0x800) >> 12) & 0xFFFFF
    lo = (off - (hi << 12)) & 0xFFF
    return struct.pack("<II", hi << 12 | 5 << 7 | 0x17, lo << 20 | 5 << 15 | 0x67)


def displaced(code: bytes) -> str | None:
    """Why the 8 bytes at a wrapper's entry cannot move to a trampoline (None: they can)."""
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
    size = 0
    for insn in md.disasm(code, 0):
        if insn.mnemonic not in _PC_FREE or "t0" in insn.op_str:
            return f"its prologue has `{insn.mnemonic} {insn.op_str}`"
        size += insn.size
        if size >= 8:
            break
    return None if size == 8 else "its prologue does not end on an instruction at 8 bytes"


def map_ranges(banks: list[Any]) -> list[tuple[int, int, int]]:
    """Each heap bank's (base, end, window offset of its byte map), the banks' maps back to back."""
    return [(b.base, b.base + b.size, MAP + sum(x.size for x in banks[:i]) // 8) for i, b in enumerate(banks)]


def map_window(session: Any) -> memoryview | str:
    """The window mapped into the session's machine (host memory, `mem_map_ptr`: Python reads and
    writes it without Unicorn calls; the blob's page read-only), or why the board cannot have it."""
    m = session.machine
    banks = list(m.phys.banks)
    size = MAP + sum(b.size for b in banks) // 8
    size = (size + 0xFFFF) & ~0xFFFF
    if len(banks) > 2 or size > MAX_WINDOW:
        return "the board's RAM does not fit the fast path's map"
    taken = [(b.base, b.base + b.size) for b in banks] + [(d.base, d.base + d.size) for d in m.devices]
    if any(a < WINDOW + size and b > WINDOW for a, b in taken):
        return "the board has something in the fast path's window"
    raw = anonymous_buffer(size)
    anchor = ctypes.c_char.from_buffer(raw)
    m.host_buffers += [raw, anchor]
    rw, rx = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC
    for lo, hi, perms in ((0, CODE, rw), (CODE, RING, rx), (RING, size, rw)):  # the code: no writes
        m.uc.mem_map_ptr(WINDOW + lo, hi - lo, perms, ctypes.addressof(anchor) + lo)
        session.mmu.map_identity(WINDOW + lo, WINDOW + hi, perms)
    m.sled.uncover(WINDOW, WINDOW + size)  # mapped: no memory hook over its stores (sled._cover)
    return memoryview(raw)


def write_layout(buf: memoryview, mags: Magazines, ranges: list[tuple[int, int, int]], stack: Any
                 ) -> tuple[list[int], bytes]:  # fmt: skip
    """Write the header, class table, magazines (empty) and the blob; (each class's magazine
    offset, the header's machine-only words as written)."""
    blob = (sdk_dir() / "build" / "fastpath" / "fastpath.bin").read_bytes()
    buf[CODE : CODE + len(blob)] = blob
    words = {H_CAP: RING_CAP, H_STLO: stack.base + 8, H_STHI: stack.base + stack.size,
             H_LIMIT: mags.limit, H_MMAX: mags.malloc_max, H_BADGFP: BAD_GFP,
             H_NCLASS: len(mags.caches)}  # fmt: skip
    for i, (lo, hi, at) in enumerate(sorted(ranges, key=lambda r: r[0] - r[1])):  # the larger first
        at_i = H_RANGES + 12 * i
        words.update({at_i: lo, at_i + 4: hi, at_i + 8: WINDOW + at})
    for off, value in words.items():
        WORD.pack_into(buf, off, value)
    for size in range(1, SERVED_MAX + 1, 8):
        buf[CLASSTAB + (size - 1) // 8] = mags.class_of[size]
    mag_at = [MAGS + ci * 4 * (mags.limit + 1) for ci in range(len(mags.caches))]
    for ci, at in enumerate(mag_at):
        WORD.pack_into(buf, H_MAGS + 4 * ci, WINDOW + at)
    return mag_at, bytes(buf[H_CAP:MAGS])


def patch_wrappers(uc: unicorn.Uc, buf: memoryview, firmware: Any, patched: dict[int, bytes]) -> str | None:
    """Patch the wrappers the ELF links (all of them or none), each one's own bytes kept in
    `patched` by address; why not, or None when patched."""
    plan = []
    for i, name in enumerate(ENTRIES):
        addr = firmware.symbol_addr(name)
        if addr is None:  # --gc-sections dropped it: nothing calls it
            continue
        code = bytes(uc.mem_read(addr, 8))
        why = displaced(code)
        if why is not None:
            return f"`{name}`: {why}"
        tramp = TRAMPS + 16 * i
        buf[tramp : tramp + 16] = code + jump(WINDOW + tramp + 8, addr + 8)
        WORD.pack_into(buf, H_TRAMP + 4 * i, WINDOW + tramp)
        plan.append((addr, code, jump(addr, WINDOW + CODE + 4 * i)))
    if not plan:
        return "the ELF has none of malloc, free, kmalloc, kfree"
    for addr, code, patch in plan:
        uc.mem_write(addr, patch)
        patched[addr] = code
    return None


def unpatch_wrappers(uc: unicorn.Uc, buf: memoryview, patched: dict[int, bytes]) -> None:
    """The wrappers' own bytes back, and Unicorn's translations of the patch dropped: a block
    already translated from the patch would run again otherwise (a stale `auipc` at free+0).
    A task stopped between the patch's two instructions (the PC, or mepc under an interrupt,
    at entry + 4) is sent back to the entry: its own first instructions never ran, and the
    patch's `auipc` only clobbered t0, dead at a function's entry."""
    pc, mepc = uc.reg_read(_PC), uc.reg_read(_MEPC)
    for addr, code in patched.items():
        uc.mem_write(addr, code)
        uc.ctl_remove_cache(addr, addr + len(code))
        if pc == addr + 4:
            uc.reg_write(_PC, addr)
        if mepc == addr + 4:
            uc.reg_write(_MEPC, addr)
    patched.clear()
    WORD.pack_into(buf, H_ALLOWED, 0)
