"""DWARF line tables of a firmware ELF: pc -> (file, line), parsed lazily.

`LineTable(raw)` keeps the ELF file's bytes and parses nothing until the first
`line_at`: then it indexes the compilation units by address range, and parses one
CU's line program the first time a pc inside it is looked up.

    ranges   sorted (start, end, cu_offset): each CU's DW_AT_low_pc/high_pc or
             DW_AT_ranges (not .debug_aranges: with --gc-sections a discarded function
             leaves a (0, n) entry that ends pyelftools' reading of that CU's set early)
    starts   the ranges' starts, for bisect
    lines    cu_offset -> (sorted row addresses, rows): (file, line), or None for the
             gap after an end_sequence; two bisects per lookup

File names are the DWARF names made relative: a directory that is absolute is dropped
(keeping the base name), so reports never carry host paths.

Invariants:
 1. Nothing is parsed before the first `line_at`; each CU's program at most once.
 2. Malformed or missing DWARF gives no lines (None), never an exception from the
    parse (`line_at` may still raise on a pyelftools bug; `Firmware.symbolize` guards).
"""

from __future__ import annotations

import bisect
import io
import posixpath
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

Rows = tuple[list[int], list[tuple[str, int] | None]]


class LineTable:
    """The DWARF line information of one ELF file (module docstring)."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw  # the file, kept for the lazy parse
        self._dwarf: Any = None  # pyelftools DWARFInfo, opened on first use
        self._starts: list[int] | None = None  # sorted range starts -> _ranges[i] = (start, end, cu)
        self._ranges: list[tuple[int, int, int]] = []
        self._lines: dict[int, Rows] = {}

    def line_at(self, pc: int) -> tuple[str, int] | None:
        """(file, line) of pc from the DWARF line programs, or None."""
        if self._starts is None:
            self._open_dwarf()
        assert self._starts is not None
        i = bisect.bisect_right(self._starts, pc) - 1
        if i < 0 or pc >= self._ranges[i][1]:
            return None
        cu = self._ranges[i][2]
        lines = self._lines.get(cu)
        if lines is None:
            lines = self._lines[cu] = self._parse_cu_lines(cu)
        addrs, rows = lines
        j = bisect.bisect_right(addrs, pc) - 1
        return rows[j] if j >= 0 else None

    def _open_dwarf(self) -> None:
        """Index the compilation units by address (.debug_aranges, else each CU's ranges).

        Line programs are parsed one CU at a time, on the first PC that needs one: a
        picolibc-linked demo has ~20k line rows, ~0.25 s to parse all at once.
        """
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
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def _parse_cu_lines(self, cu_offset: int) -> Rows:
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
