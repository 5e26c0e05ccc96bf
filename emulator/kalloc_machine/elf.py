"""Firmware ELF files: loadable segments, symbols, DWARF lines and disassembly.

`load_firmware(path)` reads a 32-bit RISC-V executable with pyelftools and keeps what
the machine and the reports need, in plain Python structures:

    segments   [Segment(vaddr, paddr, memsz, data, flags)]  PT_LOAD with memsz > 0;
               `data` is the file image (len <= memsz; the rest is bss, zeroed)
    symbols    two parallel lists sorted by address: _sym_addrs[i] -> _syms[i] =
               (addr, size, name); function and object symbols, plus untyped labels
               in loaded sections (hand-written assembly), never section or mapping
               symbols; `symbol_addr` also knows absolute (linker script) symbols
    lines      built on first use, one compilation unit at a time: CU address ranges
               (from .debug_aranges) sorted, then per CU sorted row addresses ->
               (file, line), or None for the gap after an end_sequence; two bisects
               per lookup

File names in `Location.file` are the DWARF names made relative: a directory that is
absolute is dropped (keeping the base name), so reports never carry host paths.

Invariants:
 1. A `Firmware` only exists for an ELFCLASS32 EM_RISCV ET_EXEC file with at least one
    loadable segment; every other input raises `FirmwareError` with a one-line message.
 2. `symbolize` never raises: unknown PCs give Location(None, 0, None, None).
 3. Loading stays cheap (the demo loads in well under 200 ms): DWARF is parsed lazily,
    one compilation unit at a time, on the first `symbolize` that needs it.
"""

from __future__ import annotations

import bisect
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS, SH_FLAGS
from elftools.elf.elffile import ELFFile

from kalloc_machine.isa import RiscV32
from kalloc_machine.memlayout import PAGE_SIZE

if TYPE_CHECKING:
    from kalloc_machine.board import Board

# CSR reads whose values are not deterministic or not available on this machine
# (DESIGN.md): rdcycle/rdinstret read host counters, rdtime is illegal.
_COUNTER_CSRS = {0xC00: "rdcycle", 0xC01: "rdtime", 0xC02: "rdinstret",
                 0xC80: "rdcycleh", 0xC81: "rdtimeh", 0xC82: "rdinstreth"}  # fmt: skip


class FirmwareError(ValueError):
    """A firmware file the machine cannot run. The message is one line."""


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
class Firmware:
    """A loaded firmware image and its debug information."""

    name: str
    entry: int
    segments: list[Segment]
    image_end: int
    warnings: list[str] = field(default_factory=list)
    wfi_pcs: list[int] = field(default_factory=list)  # every `wfi` in the code
    _syms: list[tuple[int, int, str]] = field(default_factory=list)
    _sym_addrs: list[int] = field(default_factory=list)
    _by_name: dict[str, int] = field(default_factory=dict)
    _raw: bytes = b""  # the file, kept for the lazy DWARF parse
    _dwarf: Any = None  # pyelftools DWARFInfo, opened on first use
    _cu_starts: list[int] | None = None  # sorted range starts -> _cu_ranges[i] = (start, end, cu)
    _cu_ranges: list[tuple[int, int, int]] = field(default_factory=list)
    _cu_lines: dict[int, tuple[list[int], list[tuple[str, int] | None]]] = field(default_factory=dict)
    _cs: Any = None

    # -- symbols ---------------------------------------------------------------------

    @property
    def symbols(self) -> list[tuple[int, int, str]]:
        """(addr, size, name), sorted by address."""
        return self._syms

    def symbol_addr(self, name: str) -> int | None:
        return self._by_name.get(name)

    def symbol_at(self, pc: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol holding pc, or None."""
        i = bisect.bisect_right(self._sym_addrs, pc) - 1
        while i >= 0:
            addr, size, name = self._syms[i]
            if size == 0 or pc < addr + size:
                return name, pc - addr
            # a sized symbol that ends before pc: an enclosing one may still start earlier
            if i > 0 and self._syms[i - 1][0] == addr:
                i -= 1
                continue
            return None
        return None

    def line_at(self, pc: int) -> tuple[str, int] | None:
        """(file, line) of pc from the DWARF line programs, or None."""
        if self._cu_starts is None:
            self._open_dwarf()
        assert self._cu_starts is not None
        i = bisect.bisect_right(self._cu_starts, pc) - 1
        if i < 0 or pc >= self._cu_ranges[i][1]:
            return None
        cu = self._cu_ranges[i][2]
        lines = self._cu_lines.get(cu)
        if lines is None:
            lines = self._cu_lines[cu] = self._parse_cu_lines(cu)
        addrs, rows = lines
        j = bisect.bisect_right(addrs, pc) - 1
        return rows[j] if j >= 0 else None

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
        """The one instruction at the start of `code` (read at pc), as text."""
        if self._cs is None:
            self._cs = capstone.Cs(RiscV32.cs_arch, RiscV32.cs_mode)
        for _addr, _size, mnemonic, op_str in self._cs.disasm_lite(code, pc, 1):
            return f"{mnemonic} {op_str}".strip()
        if len(code) >= 2 and code[0] & 3 != 3:
            return f".half {int.from_bytes(code[:2], 'little'):#06x}"
        if len(code) >= 4:
            return f".word {int.from_bytes(code[:4], 'little'):#010x}"
        return "??"

    def is_code(self, addr: int) -> bool:
        """True when addr lies in an executable loadable segment."""
        return any(s.vaddr <= addr < s.vaddr + s.memsz for s in self.segments if s.flags & P_FLAGS.PF_X)

    # -- placement -----------------------------------------------------------------------

    def check_fits(self, board: Board) -> None:
        """Raise FirmwareError unless every loadable segment lies inside one RAM bank."""
        for seg in self.segments:
            bank = board.bank_of(seg.paddr)
            if bank is None or seg.end > bank.end:
                raise FirmwareError(
                    f"{self.name}: segment [{seg.paddr:#x}, {seg.end:#x}) is outside RAM of board "
                    f"'{board.name}'"
                )
        if board.bank_of(self.entry) is None:
            raise FirmwareError(f"{self.name}: entry point {self.entry:#x} is outside RAM")

    # -- DWARF ---------------------------------------------------------------------------

    def _open_dwarf(self) -> None:
        """Index the compilation units by address (.debug_aranges, else each CU's ranges).

        Line programs are parsed one CU at a time, on the first PC that needs one: a
        picolibc-linked demo has ~20k line rows, ~0.25 s to parse all at once.
        """
        import io

        ranges: list[tuple[int, int, int]] = []
        try:
            elf = ELFFile(io.BytesIO(self._raw))
            if elf.has_dwarf_info():
                self._dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
                # Each CU's own DW_AT_low_pc/high_pc or DW_AT_ranges: .debug_aranges is
                # not trustworthy with --gc-sections (a discarded function leaves a (0, n)
                # entry that ends pyelftools' reading of that CU's set early).
                ranges = [(lo, hi, cu.cu_offset) for cu in self._dwarf.iter_CUs()
                          for lo, hi in _cu_pc_ranges(self._dwarf, cu)]  # fmt: skip
        except (ELFError, ValueError, KeyError, IndexError, AttributeError):
            ranges = []  # no usable line info: reports fall back to symbol+offset
        ranges = sorted(r for r in ranges if r[1] > r[0])
        self._cu_ranges = ranges
        self._cu_starts = [r[0] for r in ranges]

    def _parse_cu_lines(self, cu_offset: int) -> tuple[list[int], list[tuple[str, int] | None]]:
        rows: list[tuple[int, tuple[str, int] | None]] = []
        try:
            cu = self._dwarf.get_CU_at(cu_offset)
            prog = self._dwarf.line_program_for_CU(cu)
            if prog is not None:
                rows = _line_rows(prog)
        except (ELFError, ValueError, KeyError, IndexError, AttributeError):
            rows = []
        # An end_sequence row may share its address with the first row of the next
        # sequence (one per function with -ffunction-sections): the gap marker goes first
        # so the lookup lands on the real row; the stable sort keeps each sequence's order.
        rows.sort(key=lambda r: (r[0], r[1] is not None))
        return [r[0] for r in rows], [r[1] for r in rows]


def _cu_pc_ranges(dwarf: Any, cu: Any) -> list[tuple[int, int]]:
    """[low, high) address ranges of a CU: DW_AT_ranges if present, else low_pc/high_pc."""
    top_die = cu.get_top_DIE()
    top = top_die.attributes
    if "DW_AT_ranges" in top:
        rl = dwarf.range_lists()
        if rl is None:
            return []
        base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
        out = []
        if top["DW_AT_ranges"].form == "DW_FORM_rnglistx":
            return []  # not emitted by GCC for CUs; such a CU falls back to symbol+offset
        entries = rl.get_range_list_at_offset(top["DW_AT_ranges"].value, cu=cu)
        for entry in entries:
            kind = type(entry).__name__
            if kind == "BaseAddressEntry":
                base = entry.base_address
            elif hasattr(entry, "begin_offset"):
                lo, hi = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    lo, hi = lo + base, hi + base
                if lo and hi > lo:  # (0, n): a function --gc-sections discarded
                    out.append((lo, hi))
        return out
    if "DW_AT_low_pc" not in top or "DW_AT_high_pc" not in top:
        return []
    lo = top["DW_AT_low_pc"].value
    hi = top["DW_AT_high_pc"]
    return [(lo, hi.value if hi.form == "DW_FORM_addr" else lo + hi.value)]


def _relative(path: str) -> str:
    """A DWARF path made safe for reports: no absolute directory, no './'."""
    if path.startswith("/") or (len(path) > 2 and path[1] == ":"):
        return posixpath.basename(path.replace("\\", "/"))
    return posixpath.normpath(path)


def _line_rows(prog: Any) -> list[tuple[int, tuple[str, int] | None]]:
    header = prog.header
    version = header["version"]
    dirs = [d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d)
            for d in header["include_directory"]]  # fmt: skip
    files = header["file_entry"]

    def name_of(index: int) -> str:
        i = index if version >= 5 else index - 1
        if not 0 <= i < len(files):
            return "??"
        entry = files[i]
        name = entry.name.decode("utf-8", "replace") if isinstance(entry.name, bytes) else str(entry.name)
        d = entry.dir_index if version >= 5 else entry.dir_index - 1
        if not name.startswith("/") and 0 <= d < len(dirs) and not dirs[d].startswith("/"):
            name = posixpath.join(dirs[d], name)
        return _relative(name)

    names: dict[int, str] = {}
    out: list[tuple[int, tuple[str, int] | None]] = []
    for entry in prog.get_entries():
        state = entry.state
        if state is None:
            continue
        if state.end_sequence:
            out.append((state.address, None))
            continue
        f = names.get(state.file)
        if f is None:
            f = names[state.file] = name_of(state.file)
        out.append((state.address, (f, state.line)))
    return out


# -- loading ------------------------------------------------------------------------------


def load_firmware(path: str | Path) -> Firmware:
    """Read a firmware ELF. Raises FirmwareError (one line) for anything unrunnable."""
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
    import io

    try:
        return _parse(name, raw, io.BytesIO(raw))
    except FirmwareError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, AttributeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FirmwareError(f"{name}: malformed ELF ({first})") from None
    except Exception as e:
        raise FirmwareError(f"{name}: malformed or truncated ELF ({type(e).__name__})") from None


def _parse(name: str, raw: bytes, stream: BinaryIO) -> Firmware:
    elf = ELFFile(stream)
    if elf.elfclass != RiscV32.elf_class or elf["e_machine"] != RiscV32.elf_machine:
        raise FirmwareError(
            f"{name}: an ELF for {elf.get_machine_arch()} ({elf.elfclass}-bit), not 32-bit RISC-V"
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
        _raw=raw,
    )
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
    for sym in symtab.iter_symbols():
        name = sym.name
        st_type = sym["st_info"]["type"]
        if not name or name.startswith(("$", ".L")) or sym["st_shndx"] == "SHN_UNDEF":
            continue
        addr, size = sym["st_value"], sym["st_size"]
        if st_type in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
            fw._by_name.setdefault(name, addr)  # linker symbols (__stack_top, ...) included
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
    fw._syms = sorted((addr, v[1], v[2]) for addr, v in best.items())
    fw._sym_addrs = [s[0] for s in fw._syms]


def _scan_code(fw: Firmware, elf: ELFFile, segments: list[Segment]) -> None:
    """Find every `wfi` (the machine idles there) and warn about counter CSR reads."""
    ranges: list[tuple[int, bytes]] = [
        (s["sh_addr"], s.data()) for s in elf.iter_sections()
        if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s["sh_type"] == "SHT_PROGBITS"
    ]  # fmt: skip
    if not ranges:  # stripped of sections: sweep the executable segments instead
        ranges = [(s.vaddr, s.data) for s in segments if s.flags & P_FLAGS.PF_X]
    md = capstone.Cs(RiscV32.cs_arch, RiscV32.cs_mode)
    md.skipdata = True
    seen: dict[str, int] = {}
    wfi = RiscV32.wfi_encoding
    for base, code in ranges:
        for addr, size, mnemonic, _ops in md.disasm_lite(code, base):
            if size != 4:
                continue
            word = code[addr - base : addr - base + 4]
            if word == wfi:
                fw.wfi_pcs.append(addr)
            elif mnemonic.startswith(("csr", "rd")):
                insn = int.from_bytes(word, "little")
                csr, funct3 = insn >> 20, (insn >> 12) & 7
                if (insn & 0x7F) == 0x73 and funct3 in (2, 6) and csr in _COUNTER_CSRS:
                    seen.setdefault(_COUNTER_CSRS[csr], addr)
    for what, addr in sorted(seen.items(), key=lambda kv: kv[1]):
        loc = fw.symbol_at(addr)
        where = f"{loc[0]}+{loc[1]:#x}" if loc else f"{addr:#x}"
        why = "is illegal on this machine" if "time" in what else "reads a host counter (not deterministic)"
        fw.warnings.append(f"{fw.name}: {what} at {where} {why}; read mtime (kalloc_now()) instead")
