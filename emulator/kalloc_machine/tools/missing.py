"""Why a firmware has no function of a given name, in one line (`Target.call` on a missing name).

`why_missing(path, function, names)` reads the ELF's DWARF (pyelftools, only on this error
path) for a subprogram of that name and tells the three cases apart:

    dropped    the DWARF knows a definition whose code address is 0 or a tombstone:
               the linker's --gc-sections discarded it (nothing in the firmware calls it);
               or an external function inlined everywhere, whose copy it discarded
    inlined    the DWARF knows an inline-only (abstract) static definition and no code:
               the compiler inlined it into its callers and emitted no out-of-line copy
    sdk        an SDK function (declared in the SDK's kalloc.h) the firmware never calls:
               --gc-sections dropped it, and with it its file's debug info
    unknown    no symbol and no definition in the debug info: a typo, or a file none of
               whose code is called (its debug info goes too); close names are suggested

and says how to keep it: `__attribute__((used, retain))` on the definition (GCC 11+;
`used` alone does not survive --gc-sections), `-Wl,--undefined=NAME` at link time
(`EXTRA_LDFLAGS=` with the SDK's Makefile), or a `KEEP(*(.text.NAME))` in the linker script.

Invariants:
 1. `why_missing` never raises: unreadable DWARF degrades to the "unknown" sentence.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile

# What binutils writes for the address of a discarded function: 0 (ld up to 2.36 and today's
# default for .debug_info), or a tombstone (-1, or -2 in .debug_ranges/.debug_loc).
_TOMBSTONES = (0, 0xFFFF_FFFF, 0xFFFF_FFFE)


def why_missing(path: str | Path, function: str, names: Iterable[str]) -> str:
    """One line: `function` is not in the firmware at `path`, why, and how to keep it."""
    elf_name = Path(path).name
    try:
        found = _find_definition(Path(path), function)
    except Exception:  # a malformed or absent DWARF: say what the symbol table says
        found = None
    if found is not None:
        how, where = found
        at = f" ({where})" if where else ""
        if how == "inlined":
            return (f"{elf_name} has no code for {function}(){at}: the compiler inlined it into its callers "
                    f"and kept no out-of-line copy; keep one with __attribute__((used, retain)) "
                    f"on its definition")  # fmt: skip
        cause = "the linker's --gc-sections dropped it"
        if how == "inlined, then dropped":
            cause = "the compiler inlined it into its callers and the linker's --gc-sections dropped its copy"
        return (f"{elf_name} has no code for {function}(){at}: {cause} "
                f"(nothing in the firmware calls it); keep it with __attribute__((used, retain)) on its "
                f"definition, or link with -Wl,--undefined={function} (EXTRA_LDFLAGS= with the SDK's "
                f"Makefile) or KEEP(*(.text.{function})) in the linker script")  # fmt: skip
    if _sdk_declares(function):
        return (f"{elf_name} has no code for {function}(), an SDK function (kalloc.h) the firmware never "
                f"calls: the linker's --gc-sections dropped it; keep it by linking with "
                f"-Wl,--undefined={function} (EXTRA_LDFLAGS= with the SDK's Makefile), or use the "
                f"allocator from Python (Target.ka)")  # fmt: skip
    close = difflib.get_close_matches(function, sorted(set(names)), n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (
        f"{elf_name} has no function {function}() (no symbol, and its debug info defines none: a typo, "
        f"or a file none of whose code is called; __attribute__((used, retain)) keeps a function){hint}"
    )


def _sdk_declares(function: str) -> bool:
    """True when the SDK's public header declares `function` (a prototype `name(`)."""
    try:
        from kalloc_machine.sdk import sdk_dir

        header = (sdk_dir() / "include" / "kalloc.h").read_text(errors="replace")
    except OSError:
        return False
    return re.search(rf"[\s*]{re.escape(function)}\s*\(", header) is not None


def _find_definition(path: Path, function: str) -> tuple[str, str | None] | None:
    """("dropped" | "inlined", "file:line" or None) for a definition of `function` with no code."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        if not elf.has_dwarf_info():
            return None
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        for cu in dwarf.iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                if die.tag != "DW_TAG_subprogram" or _name(die) != function:
                    continue
                how = _how_missing(die)
                if how is not None:
                    return how, _decl_where(dwarf, cu, die)
    return None


def _name(die: Any) -> str | None:
    attr = die.attributes.get("DW_AT_name")
    if attr is None:
        return None
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _how_missing(die: Any) -> str | None:
    """How a definition DIE came to have no code, or None when it is no definition."""
    attrs = die.attributes
    if "DW_AT_declaration" in attrs:
        return None  # a prototype: defined elsewhere, or nowhere
    if "DW_AT_low_pc" in attrs:
        return "dropped" if attrs["DW_AT_low_pc"].value in _TOMBSTONES else None
    if "DW_AT_inline" in attrs:  # an external one had its out-of-line copy, which the linker dropped
        return "inlined, then dropped" if "DW_AT_external" in attrs else "inlined"
    if "DW_AT_ranges" in attrs:
        return "dropped"  # a definition in several pieces, none kept (its symbol is gone)
    return None


def _decl_where(dwarf: Any, cu: Any, die: Any) -> str | None:
    """The "file:line" of the definition (DW_AT_decl_file/decl_line), file without host directories."""
    attrs = die.attributes
    if "DW_AT_decl_file" not in attrs or "DW_AT_decl_line" not in attrs:
        return None
    try:
        prog = dwarf.line_program_for_CU(cu)
        files = prog.header["file_entry"]
        index = attrs["DW_AT_decl_file"].value
        entry = files[index if prog.header["version"] >= 5 else index - 1]
    except (IndexError, KeyError, AttributeError, TypeError):
        return None
    name = entry.name.decode("utf-8", "replace") if isinstance(entry.name, bytes) else str(entry.name)
    return f"{posixpath.basename(name)}:{attrs['DW_AT_decl_line'].value}"
