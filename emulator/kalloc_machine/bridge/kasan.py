"""KASAN on the emulated machine: where the shadow lives, how accesses are checked, the reports.

`--sanitize=kasan` checks every firmware load and store to RAM against a shadow
(kalloc/shadow.py: one byte per 8, kept current from the allocator's events),
in one of two ways, chosen per ELF:

  compiled  the ELF defines `__asan_load4_noabort` (built with KASAN=1): its
            code calls the SDK's checks before every access, inside the
            emulated CPU. The shadow is guest RAM, reserved at boot under the
            label "shadow" at the top of the largest bank (RAM/8 bytes, whole
            pages); the SDK learns where through KH_KASAN_SHADOW and reports a
            bad access through KH_ASAN_REPORT. No Python runs on a good access.
  hook      any other ELF: ONE ranged Unicorn memory hook (reads and writes)
            from the end of the firmware image to the end of RAM, with the
            shadow in host bytearrays (one per bank). The hook only records:
            it never stops the emulator (docs/architecture.md), so the run goes on after a
            bad access, as Linux's KASAN does by default.

A bad write is reported once, here, at the access: its bytes are marked
(Sanitizer.mark_reported) and the allocator's red-zone and poison checks at free,
at a slab's discard and at exit leave them out (they still report damage no access
report covered).

Either way the report is the same: kind `out-of-bounds` or `use-after-free`
(decided from the allocator's state at the address, `Kalloc.describe`, not from
the shadow byte), the access (read/write, size, address), the object hit or the
nearest live one with its size and the offset, the allocation site and (for
use-after-free) the free site as `*_site` depot handles, the disassembled
instruction and a backtrace. Each (kind, instruction, object) is built once; a
repeat is filed again as the same error, so the run's ErrorLog counts it
(report/errorlog.py: identical errors kept once with a count, distinct ones
capped by --max-errors, the rest counted as suppressed).

Under every sanitize mode the two services are answered: without a shadow,
KASAN_SHADOW says 0 banks and the SDK checks nothing, so a KASAN=1 ELF also
runs under --sanitize=poison or off.

Invariants:
 1. The shadow is written only from allocator events and at attach; accesses
    never change it.
 2. No callback here stops the emulator; reports go to machine.report().
"""

from __future__ import annotations

import bisect
import struct
from typing import TYPE_CHECKING, Any

import unicorn

from kalloc.config import Caller
from kalloc.errors import KallocError, OutOfBoundsError, UseAfterFreeError
from kalloc.misuse import object_phrase
from kalloc.page import PAGE_SIZE
from kalloc.shadow import CODE_NAMES, GRANULE, Shadow, ShadowRegion
from kalloc_machine.bridge import abi
from kalloc_machine.bridge.kasan_site import AccessFinder

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc.physmem import PhysMem
    from kalloc_machine.bridge.doorbell import Bridge
    from kalloc_machine.elf import Firmware
    from kalloc_machine.machine import Machine

COMPILED_MARKER = "__asan_load4_noabort"
MAX_REPORTS = 1000  # (kind, pc, object) keys remembered to count a repeat cheaply; past it, built anew
SCAN_INSNS = 12  # instructions searched after an __asan_* call for the access it guarded
_FP_REGS = (2, 8)  # sp, s0: accesses through them are the frame's own (not instrumented)


def mode_for(sanitize: str, firmware: Any) -> str | None:
    """'compiled', 'hook', or None (no shadow) for a run."""
    if sanitize != "kasan":
        return None
    return "compiled" if firmware.symbol_addr(COMPILED_MARKER) is not None else "hook"


def shadow_bytes(phys: PhysMem) -> int:
    """Bytes of shadow for every bank, each rounded to granules, in whole pages."""
    total = sum(-(-b.size // GRANULE) for b in phys.banks)
    return -(-total // PAGE_SIZE) * PAGE_SIZE


def shadow_reservation(phys: PhysMem, image_end: int) -> tuple[int, int, str]:
    """(lo, hi, "shadow"): the top of the largest bank, for the compiled mode's guest shadow.

    Raises ValueError when no bank has room above the firmware image.
    """
    need = shadow_bytes(phys)
    for bank in sorted(phys.banks, key=lambda b: (-b.size, b.base)):
        hi = bank.end & ~(PAGE_SIZE - 1)
        lo = hi - need
        floor = max(bank.base, image_end if bank.base <= image_end <= bank.end else bank.base)
        if lo >= floor:
            return lo, hi, "shadow"
    raise ValueError(f"no RAM bank has room for the {need}-byte KASAN shadow")


# -- instructions ------------------------------------------------------------------------


def _decode_access(h: int, word: int) -> tuple[int, bool | None, int, int]:
    """(length, is_write or None, width, base register) of one RISC-V instruction."""
    if h & 3 == 3:
        op, f3, rs1 = word & 0x7F, (word >> 12) & 7, (word >> 15) & 31
        if op == 0x03:
            return 4, False, {0: 1, 1: 2, 2: 4, 4: 1, 5: 2}.get(f3, 0), rs1
        if op == 0x23:
            return 4, True, {0: 1, 1: 2, 2: 4}.get(f3, 0), rs1
        if op in (0x63, 0x67, 0x6F):  # branch, jalr, jal: the guarded access is not past here
            return 4, None, -1, 0
        return 4, None, 0, 0
    quad, f3 = h & 3, h >> 13
    if quad == 0 and f3 in (2, 6):  # c.lw, c.sw
        return 2, f3 == 6, 4, 8 + ((h >> 7) & 7)
    if quad == 2 and f3 in (2, 6):  # c.lwsp, c.swsp
        return 2, f3 == 6, 4, 2
    if (quad == 1 and f3 in (1, 5, 6, 7)) or (quad == 2 and f3 == 4 and (h >> 2) & 31 == 0):
        return 2, None, -1, 0  # c.jal, c.j, c.beqz, c.bnez, c.jr, c.jalr
    return 2, None, 0, 0


def find_access(read: Any, start: int, is_write: bool, size: int) -> int | None:
    """The load or store an __asan_* call at `start` (its return address) guarded.

    GCC emits the check, then the access a few instructions later, through a
    register that survived the call; frame accesses (sp, s0) in between are the
    epilogue's. Returns the first access of the right direction and width, else
    of the right direction, else None.
    """
    pc, fallback = start, None
    for _ in range(SCAN_INSNS):
        try:
            h = int.from_bytes(read(pc, 2), "little")
            word = int.from_bytes(read(pc, 4), "little") if h & 3 == 3 else h
        except ValueError:
            return fallback
        length, w, width, rs1 = _decode_access(h, word)
        if width < 0:
            break
        if w is is_write and rs1 not in _FP_REGS:
            if width == size:
                return pc
            fallback = fallback or pc
        pc += length
    return fallback


# -- the runtime -------------------------------------------------------------------------


class Kasan:
    """The shadow of one run, its checks (services or hook) and its reports."""

    def __init__(self, machine: Machine, ka: Kalloc, firmware: Firmware, mode: str,
                 reservation: tuple[int, int, str] | None) -> None:  # fmt: skip
        self.machine = machine
        self.ka = ka
        self.firmware = firmware
        self.mode = mode
        self.reported: dict[tuple[str, int, int], KallocError] = {}  # key -> the error filed for it
        phys = self.machine.phys
        accessible = [(seg.paddr, seg.paddr + seg.memsz) for seg in self.firmware.segments]
        accessible.append((phys.banks[0].base, self.firmware.image_end))
        regions = []
        self._guest: list[int] = []  # compiled mode: guest address of each region's shadow
        if mode == "compiled":
            assert reservation is not None
            lo = reservation[0]
            accessible.append((reservation[0], reservation[1]))
            for bank in phys.banks:
                n = -(-bank.size // GRANULE)
                regions.append(ShadowRegion(bank.base, bank.size, phys.view(lo, n)))
                self._guest.append(lo)
                lo += n
        else:
            for bank in phys.banks:
                regions.append(ShadowRegion(bank.base, bank.size, bytearray(-(-bank.size // GRANULE))))
        self.shadow = Shadow(regions)
        self.shadow.attach(self.ka, accessible)
        sym = self.firmware.symbol_addr
        api_lo, api_hi = sym("__kalloc_api_start"), sym("__kalloc_api_end")
        self._api = (api_lo or 0, api_hi or 0)
        isa: Any = getattr(machine, "isa", None)  # RV32's bits are decoded here; others: kasan_site.py
        by_text = getattr(isa, "frame_chain", True) is False
        self._finder = AccessFinder(isa, machine.phys.read) if by_text else None
        if mode == "hook":
            self._install_hook()

    # -- compiled mode: the services -------------------------------------------------------

    def svc_kasan_shadow(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        if self.mode != "compiled":
            return 0, 0
        table = b"".join(
            struct.pack("<III", r.base, r.size, g)
            for r, g in zip(self.shadow.regions, self._guest, strict=True)
        )
        n = min(len(self.shadow.regions), length // abi.KASAN_BANK_SIZE, abi.BOOTINFO_MAX_BANKS)
        if n and not self.machine.phys.contains(buf, n * abi.KASAN_BANK_SIZE):
            return 0, 0
        self.machine.phys.write(buf, table[: n * abi.KASAN_BANK_SIZE])
        return n, 0

    def svc_asan_report(
        self, caller: Caller, addr: int, size: int, flags: int, pc: int, *args: int
    ) -> tuple[int, int]:
        if self.mode != "compiled":
            return 0, 0
        is_write = bool(flags & abi.ASAN_WRITE)
        stack = list(self.ka.depot.get(caller.site))
        rest = stack[stack.index(pc) + 1 :] if pc in stack else [p for p in stack if not self._in_api(p)][1:]
        if flags & abi.ASAN_RANGE:
            at = self._call_before(pc) if self._finder is None else self._finder.call_before(pc)
            via = "a range-checked string function"
        else:
            found = (self._finder.find_access(pc, is_write, size) if self._finder
                     else find_access(self.machine.phys.read, pc, is_write, size))  # fmt: skip
            at = found or pc
            via = None
        self._report(addr, size, is_write, at, [at, *rest], via=via)
        return 0, 0

    def _in_api(self, pc: int) -> bool:
        return self._api[0] <= pc - 1 < self._api[1]

    def _call_before(self, ret: int) -> int:
        """The call instruction that returns to `ret` (auipc+jalr, jal or c.jal/c.jalr)."""
        read = self.machine.phys.read
        try:
            if ret >= 8 and read(ret - 4, 1)[0] & 3 == 3:
                word = int.from_bytes(read(ret - 4, 4), "little")
                if word & 0x7F == 0x67 and int.from_bytes(read(ret - 8, 4), "little") & 0x7F == 0x17:
                    return ret - 8  # auipc ra + jalr: the call starts at the auipc
                return ret - 4
            return ret - 2
        except ValueError:
            return ret

    # -- hook mode -------------------------------------------------------------------------

    def _install_hook(self) -> None:
        phys = self.machine.phys
        lo = max(self.firmware.image_end, phys.banks[0].base)
        hi = max(b.end for b in phys.banks)
        # (base, buf) per region, highest first: the hook picks the first base <= addr.
        self._rv = [(r.base, r.buf) for r in sorted(self.shadow.regions, key=lambda r: -r.base)]
        uc = self.machine.uc
        settle = self.machine.isa.hook_settler(uc)  # Cortex-M: IT state (armv7m_it.py); RV32: None
        check = self._on_access

        def settled(uc: Any, access: int, addr: int, size: int, value: int, ud: Any) -> None:
            check(uc, access, addr, size, value, ud)
            settle()  # type: ignore[misc]  # (installed only with one)

        hook = check if settle is None else settled
        uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, hook, None, lo, hi - 1)

    def _on_access(self, uc: Any, access: int, addr: int, size: int, value: int, _ud: Any) -> None:
        for base, buf in self._rv:
            if addr >= base:
                off = addr - base
                if off >> 3 >= len(buf):
                    return  # a gap between banks: Unicorn reports it as unmapped
                v = buf[off >> 3]
                if v == 0 and (off & 7) + size <= GRANULE:
                    return
                break
        else:
            return
        if self.shadow.check(addr, size) is None:
            return
        pc = self.machine.isa.pc(uc)
        self._report(addr, size, access == unicorn.UC_MEM_WRITE, pc, self.machine.backtrace(pc))

    # -- reports ---------------------------------------------------------------------------

    def _report(
        self, addr: int, size: int, is_write: bool, pc: int, backtrace: list[int], via: str | None = None
    ) -> None:
        bad = self.shadow.check(addr, size)
        at = bad if bad is not None else addr
        if is_write and addr + size > at:  # reported here: the red-zone and poison checks skip these bytes
            self.ka.sanitizer.mark_reported(at, addr + size - at)
        kind, info = self.classify(at)
        obj = info.get("object") or {}
        key = (kind, pc, obj.get("addr", at & ~(GRANULE - 1)))
        known = self.reported.get(key)
        if known is not None:  # a repeat: the ErrorLog counts it on the error kept (O(1))
            self.machine.report(known)
            return
        code = self.shadow.code(at)
        verb = "write" if is_write else "read"
        where = self._where(info)
        msg = f"{verb} of {size} byte(s) at {addr:#x}: {where}"
        if via:
            msg += f" (in {via})"
        fields: dict[str, Any] = {
            "pc": pc,
            "backtrace": backtrace,
            "access": {"type": verb, "addr": addr, "size": size},
            "instruction": self._instruction(pc),
            "shadow": {"addr": at, "value": code, "meaning": CODE_NAMES.get(code, "partial granule")},
            "sanitizer": f"kasan-{self.mode}",
        }
        if obj:
            fields["object"] = obj
            fields["offset"] = info["offset"]
            fields["alloc_site"] = info.get("alloc_site", 0)
            if kind == "use-after-free":
                fields["free_site"] = info.get("free_site", 0)
        err_cls = UseAfterFreeError if kind == "use-after-free" else OutOfBoundsError
        err = err_cls(msg, addr=addr, **fields)
        if len(self.reported) < MAX_REPORTS:
            self.reported[key] = err
        self.machine.report(err)

    def _instruction(self, pc: int) -> str:
        try:
            return self.firmware.disassemble(pc, self.machine.phys.read(pc, 4))
        except ValueError:
            return "??"

    @staticmethod
    def _where(info: dict[str, Any]) -> str:
        obj = info.get("object")
        if not obj:
            return "heap memory no object was ever given"
        off, size = info["offset"], obj["size"]
        state = info.get("state", "live")
        if state != "live" and 0 <= off < obj.get("usable", size):
            inside = "inside" if off < size else "into"
            return f"{off} bytes {inside} a freed {object_phrase(obj)}"
        if off < 0:
            rel = f"{-off} bytes before"
        elif off >= size:
            rel = f"{off - size} bytes after the end of"
        else:
            rel = f"{off} bytes inside"
        return f"{rel} a {'' if state == 'live' else state + ' '}{object_phrase(obj)}"

    def classify(self, addr: int) -> tuple[str, dict[str, Any]]:
        """(kind, info) for a bad access at addr, from the allocator's state (module docstring)."""
        d = self.ka.describe(addr)
        if d is not None:
            inside = 0 <= d["offset"] < d["object"].get("usable", d["object"]["size"])
            if d["state"] != "live" and inside and d.get("free_site"):
                return "use-after-free", d
            if d["state"] == "live":
                return "out-of-bounds", d
        near = self.nearest(addr)
        if near is not None:
            return "out-of-bounds", near
        return "out-of-bounds", d or {}

    def nearest(self, addr: int) -> dict[str, Any] | None:
        """The live object closest to addr (an overflow's victim is usually just below)."""
        live = self.ka.live_allocations()
        if not live:
            return None
        starts = [a.addr for a in live]
        i = bisect.bisect_right(starts, addr)
        cands = [live[j] for j in (i - 1, i) if 0 <= j < len(live)]
        best = min(cands, key=lambda a: min(abs(addr - a.addr), abs(addr - (a.addr + a.size))))
        return {
            "state": "live",
            "object": {"addr": best.addr, "size": best.size, "kind": best.kind},
            "offset": addr - best.addr,
            "alloc_site": best.site,
        }

    def summary(self) -> list[KallocError]:
        """Nothing to add at the end of a run (reports were made as accesses happened)."""
        return []


def _no_shadow(caller: Caller, *args: int) -> tuple[int, int]:
    return 0, 0


class NoKasan:
    """The `kasan` family without a shadow: KASAN_SHADOW says 0 banks, ASAN_REPORT is ignored."""

    svc_kasan_shadow = staticmethod(_no_shadow)
    svc_asan_report = staticmethod(_no_shadow)


def install(bridge: Bridge, machine: Machine, ka: Kalloc, firmware: Firmware, mode: str | None,
            reservation: tuple[int, int, str] | None) -> Kasan | None:  # fmt: skip
    """Build the run's KASAN runtime (None without one) and serve the `kasan` family either way."""
    kasan = Kasan(machine, ka, firmware, mode, reservation) if mode is not None else None
    bridge.serve("kasan", kasan if kasan is not None else NoKasan())
    return kasan
