"""Firmware ELF files: loadable segments, symbols, the code scan; lines and disassembly.

`load_firmware(path, isa)` reads an executable for the ISA (default rv32imac,
isa/__init__.py) with pyelftools and keeps what the machine and the reports need, in
plain Python structures:

    segments   [Segment(vaddr, paddr, memsz, data, flags)]  PT_LOAD with memsz > 0;
               `data` is the file image (len <= memsz; the rest is bss, zeroed)
    symtab     SymbolTable: two parallel lists sorted by address: addrs[i] ->
               entries[i] = (addr, size, name); function and object symbols, plus
               untyped labels in loaded sections (hand-written assembly), never section
               or mapping symbols; `by_name` also knows absolute (linker script) symbols
    lines      LineTable (dwarf.py): file:line, parsed lazily one CU at a time
    wfi_pcs    every idle instruction (`wfi`) of the code, from `Isa.scan_code`, which
               also finds the counter reads the warnings name
    return_pcs every return from interrupt (`mret`) of the code, from `Isa.scan_returns`
               (irqstate.py marks each; none on Cortex-M, whose return traps by itself)
    isa        the Isa the file was read for: it disassembles for `disassemble`

Invariants:
 1. A `Firmware` only exists for an ET_EXEC file of the ISA's ELF class and machine
    (ELFCLASS32 EM_RISCV) with at least one loadable segment; every other input
    raises `FirmwareError` with a one-line message.
 2. `symbolize` never raises: unknown PCs give Location(None, 0, None, None).
 3. Loading stays cheap (the demo loads in well under 200 ms): DWARF is parsed lazily,
    one compilation unit at a time, on the first `symbolize` that needs it.
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS, SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from kalloc_machine.dwarf import LineTable
from kalloc_machine.isa import DEFAULT_ISA, Isa, isa_for
from kalloc_machine.memlayout import PAGE_SIZE

if TYPE_CHECKING:
    from kalloc_machine.boardspec import Board


class FirmwareError(ValueError):
    """A firmware file the machine cannot run. The message is one line."""


# An ELF that cannot run because it was not linked with the SDK (check_fits): what and how.
NOT_SDK = "this ELF was not linked with the kalloc SDK"
SDK_HOW = ('link it with `kalloc sdk --ldflags --libs`, kalloc.mk, CMake\'s kalloc::sdk or '
           '`make -C "$(kalloc sdk)" APP=...` (docs/user-guide.md, "Build with your own build system")')


@dataclass(frozen=True, slots=True)
class Segment:
    vaddr: int
    paddr: int
    memsz: int
    data: bytes = field(repr=False)
    flags: int = 0  # P_FLAGS bits (PF_X = 1, PF_W = 2, PF_R = 4)

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


@dataclass(frozen=True, slots=True)
class Location:
    """Where a PC is: symbol+offset and file:line (each None when unknown)."""

    symbol: str | None
    offset: int
    file: str | None
    line: int | None

    def __str__(self) -> str:
        sym = f"{self.symbol}+{self.offset:#x}" if self.symbol else "??"
        return f"{sym} ({self.file}:{self.line})" if self.file else sym


@dataclass(slots=True)
class SymbolTable:
    """Symbols by address and by name (module docstring, `symtab`)."""

    entries: list[tuple[int, int, str]] = field(default_factory=list)  # (addr, size, name) by addr
    addrs: list[int] = field(default_factory=list)  # entries' addresses, for bisect
    by_name: dict[str, int] = field(default_factory=dict)

    def at(self, pc: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol holding pc, or None."""
        syms = self.entries
        i = bisect.bisect_right(self.addrs, pc) - 1
        while i >= 0:
            addr, size, name = syms[i]
            if size == 0 or pc < addr + size:
                return name, pc - addr
            # a sized symbol that ends before pc: an enclosing one may still start earlier
            if i > 0 and syms[i - 1][0] == addr:
                i -= 1
                continue
            return None
        return None


@dataclass(slots=True)
class Firmware:
    """A loaded firmware image and its debug information."""

    name: str
    entry: int
    segments: list[Segment]
    image_end: int
    isa: Isa
    lines: LineTable
    symtab: SymbolTable = field(default_factory=SymbolTable)
    warnings: list[str] = field(default_factory=list)
    wfi_pcs: list[int] = field(default_factory=list)  # every idle instruction (`wfi`) in the code
    return_pcs: list[int] = field(default_factory=list)  # every return from interrupt (`mret`) in the code

    # -- symbols ---------------------------------------------------------------------

    @property
    def symbols(self) -> list[tuple[int, int, str]]:
        """(addr, size, name), sorted by address."""
        return self.symtab.entries

    def symbol_addr(self, name: str) -> int | None:
        return self.symtab.by_name.get(name)

    def symbol_at(self, pc: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol holding pc, or None."""
        return self.symtab.at(pc)

    def line_at(self, pc: int) -> tuple[str, int] | None:
        """(file, line) of pc from the DWARF line programs, or None."""
        return self.lines.line_at(pc)

    def symbolize(self, pc: int) -> Location:
        """pc as symbol+offset and file:line; never raises."""
        sym = self.symbol_at(pc)
        try:
            line = self.line_at(pc)
        except Exception:
            line = None
        return Location(
            sym[0] if sym else None,
            sym[1] if sym else 0,
            line[0] if line else None,
            line[1] if line else None,
        )

    # -- disassembly -------------------------------------------------------------------

    def disassemble(self, pc: int, code: bytes) -> str:
        """The one instruction at the start of `code` (read at pc), as text (`Isa.disassemble`)."""
        return self.isa.disassemble(pc, code)

    def is_code(self, addr: int) -> bool:
        """True when addr lies in an executable loadable segment."""
        return any(s.vaddr <= addr < s.vaddr + s.memsz for s in self.segments if s.flags & P_FLAGS.PF_X)

    # -- placement -----------------------------------------------------------------------

    def check_fits(self, board: Board) -> None:
        """Raise FirmwareError unless it was read for the board's ISA and every loadable
        segment lies inside one RAM bank."""
        if board.cpu.isa != self.isa.name:
            isa = board.cpu.isa
            raise FirmwareError(f"{self.name}: read for {self.isa.name}, board '{board.name}' is {isa}")
        for seg in self.segments:
            bank = board.bank_of(seg.paddr)
            if bank is None or seg.end > bank.end:
                stack = self.symbol_addr("__kalloc_stack_size") or 0  # the SDK's stack: the usual culprit
                hint = f" (its stack is {stack >> 10} KiB: build with a smaller STACK_SIZE)" if stack else ""
                where = f"segment [{seg.paddr:#x}, {seg.end:#x}) is outside RAM of board '{board.name}'"
                if (missing := self.sdk_missing()) is not None:  # linked for another memory map (picolibc.ld)
                    raise FirmwareError(f"{self.name}: {missing} ({where}); {SDK_HOW}")
                raise FirmwareError(f"{self.name}: {where}{hint}")
        if board.bank_of(self.entry) is None:
            raise FirmwareError(f"{self.name}: entry point {self.entry:#x} is outside RAM")
        missing = self.sdk_missing()
        if missing is not None and not self.is_code(self.entry):  # no _start: the SDK library is missing
            entry = f"its entry point {self.entry:#x} is not code"
            raise FirmwareError(f"{self.name}: {missing} ({entry}); {SDK_HOW}")

    def sdk_missing(self) -> str | None:
        """Why the ELF was not linked with the kalloc SDK (None: it was): the SDK's hypercall
        wrappers, [__kalloc_api_start, __kalloc_api_end), are absent or empty."""
        lo, hi = self.symbol_addr("__kalloc_api_start"), self.symbol_addr("__kalloc_api_end")
        if lo is None:
            return f"{NOT_SDK}: no `__kalloc_api_start`"
        if hi is None or hi <= lo:
            return f"{NOT_SDK} library: `__kalloc_api_start` holds no hypercall wrapper (link.ld alone)"
        return None


# -- loading ------------------------------------------------------------------------------


def load_firmware(path: str | Path, isa: str = DEFAULT_ISA) -> Firmware:
    """Read a firmware ELF for `isa`. Raises FirmwareError (one line) for anything unrunnable."""
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise FirmwareError(f"{path}: not a file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise FirmwareError(f"{name}: cannot read: {e.strerror}") from None
    if raw[:4] != b"\x7fELF":
        raise FirmwareError(f"{name}: not an ELF file")
    try:
        return _parse(name, raw, io.BytesIO(raw), isa_for(isa))
    except FirmwareError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, AttributeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FirmwareError(f"{name}: malformed ELF ({first})") from None
    except Exception as e:
        raise FirmwareError(f"{name}: malformed or truncated ELF ({type(e).__name__})") from None


def _parse(name: str, raw: bytes, stream: BinaryIO, isa: Isa) -> Firmware:
    elf = ELFFile(stream)
    if elf.elfclass != isa.elf_class or elf["e_machine"] != isa.elf_machine:
        raise FirmwareError(
            f"{name}: an ELF for {elf.get_machine_arch()} ({elf.elfclass}-bit), not {isa.elf_description}"
        )
    if elf["e_type"] != "ET_EXEC":
        raise FirmwareError(f"{name}: not an executable (e_type {elf['e_type']})")
    segments = []
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        data = seg.data()
        if len(data) != seg["p_filesz"]:
            raise FirmwareError(f"{name}: truncated ELF (segment at {seg['p_vaddr']:#x} is cut short)")
        segments.append(Segment(seg["p_vaddr"], seg["p_paddr"], seg["p_memsz"], data, seg["p_flags"]))
    if not segments:
        raise FirmwareError(f"{name}: no loadable segments")
    end = max(s.end for s in segments)
    fw = Firmware(
        name=name,
        entry=elf["e_entry"],
        segments=segments,
        image_end=(end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1),
        isa=isa,
        lines=LineTable(raw),
    )
    isa.read_elf(elf)  # the ISA's own reading (Cortex-M: unwind table, data in code)
    _read_symbols(fw, elf)
    _scan_code(fw, elf, segments)
    if not elf.has_dwarf_info():
        fw.warnings.append(f"{name}: no DWARF line info: reports show symbols only (build with -g)")
    return fw


def _read_symbols(fw: Firmware, elf: ELFFile) -> None:
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        fw.warnings.append(f"{fw.name}: no symbol table: reports show raw addresses")
        return
    alloc = [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in elf.iter_sections()
             if s["sh_flags"] & SH_FLAGS.SHF_ALLOC]  # fmt: skip
    best: dict[int, tuple[int, int, str]] = {}  # addr -> (rank, size, name)
    for sym in cast(SymbolTableSection, symtab).iter_symbols():
        name = sym.name
        st_type = sym["st_info"]["type"]
        if not name or name.startswith(("$", ".L")) or sym["st_shndx"] == "SHN_UNDEF":
            continue
        addr, size = sym["st_value"], sym["st_size"]
        if st_type == "STT_FUNC":
            addr &= ~fw.isa.code_bit  # a Thumb function's value carries the Thumb bit
        if st_type in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
            fw.symtab.by_name.setdefault(name, addr)  # linker symbols (__stack_top, ...) included
        if st_type == "STT_FUNC":
            rank = 3
        elif st_type == "STT_OBJECT":
            rank = 2
        elif (
            st_type == "STT_NOTYPE"
            and sym["st_shndx"] != "SHN_ABS"
            and any(lo <= addr < hi for lo, hi in alloc)
        ):
            rank = 1  # a label in hand-written assembly
        else:
            continue
        old = best.get(addr)  # one name per address: the best-typed, then the largest
        if old is None or (rank, size) > (old[0], old[1]):
            best[addr] = (rank, size, name)
    entries = sorted((addr, v[1], v[2]) for addr, v in best.items())
    fw.symtab.entries = entries
    fw.symtab.addrs = [s[0] for s in entries]


def _scan_code(fw: Firmware, elf: ELFFile, segments: list[Segment]) -> None:
    """Find every idle instruction (the machine idles there) and warn about counter reads."""
    ranges: list[tuple[int, bytes]] = [
        (s["sh_addr"], s.data()) for s in elf.iter_sections()
        if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s["sh_type"] == "SHT_PROGBITS"
    ]  # fmt: skip
    if not ranges:  # stripped of sections: sweep the executable segments instead
        ranges = [(s.vaddr, s.data) for s in segments if s.flags & P_FLAGS.PF_X]
    idle, hazards = fw.isa.scan_code(ranges)
    fw.wfi_pcs.extend(idle)
    fw.return_pcs.extend(fw.isa.scan_returns(ranges))
    for addr, what, why in hazards:
        loc = fw.symbol_at(addr)
        where = f"{loc[0]}+{loc[1]:#x}" if loc else f"{addr:#x}"
        fw.warnings.append(f"{fw.name}: {what} at {where} {why}; read mtime (kalloc_now()) instead")
