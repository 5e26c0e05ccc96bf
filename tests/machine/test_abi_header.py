"""firmware/include/kalloc.h against the Python tables it repeats.

The header is the C compiler's copy of emulator/abi.py (services, argument
block, ecalls, bootinfo), emulator/memlayout.py (address map) and kalloc/gfp.py
(GFP bits). These tests parse it — no cross toolchain needed — so a number
changed on one side only fails here instead of inside a firmware run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from kalloc_machine import memlayout
from kalloc_machine.bridge import abi

from kalloc import gfp

HEADER = Path(__file__).resolve().parents[2] / "firmware" / "include" / "kalloc.h"

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(?!\()\s+(.*?)\s*(?:/\*.*)?$")
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load,
            ast.BitOr, ast.BitAnd, ast.LShift, ast.RShift, ast.Add, ast.Sub, ast.Mult,
            ast.Invert, ast.USub)  # fmt: skip


def _text() -> str:
    return HEADER.read_text(encoding="utf-8")


def _defines(text: str) -> dict[str, str]:
    """Object-like macros: name -> replacement text (comments stripped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line)
        if m and m.group(2):
            out[m.group(1)] = m.group(2)
    return out


def _evaluate(name: str, defs: dict[str, str], seen: frozenset[str] = frozenset()) -> int:
    """The integer value of a macro: literals, other macros, | & << >> + - * ~ ( )."""
    if name in seen:
        raise ValueError(f"{name} is defined in terms of itself")
    expr = _INT_SUFFIX.sub(r"\1", defs[name])
    tree = ast.parse(expr, mode="eval")
    env: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ValueError(f"{name}: cannot evaluate {defs[name]!r}")
        if isinstance(node, ast.Name):
            env[node.id] = _evaluate(node.id, defs, seen | {name})
    return int(eval(compile(tree, HEADER.name, "eval"), {"__builtins__": {}}, env))  # nodes vetted above


@pytest.fixture(scope="module")
def defs() -> dict[str, str]:
    return _defines(_text())


def value(defs: dict[str, str], name: str) -> int:
    assert name in defs, f"kalloc.h does not define {name}"
    return _evaluate(name, defs)


# -- services -------------------------------------------------------------------------


def _service_region(text: str) -> str:
    m = re.search(r"BEGIN SERVICES.*?\n(.*?)/\* END SERVICES \*/", text, re.S)
    assert m, "kalloc.h lost its BEGIN SERVICES / END SERVICES markers"
    return m.group(1)


def test_every_service_is_in_the_header_with_its_number() -> None:
    header = {k: _evaluate(k, _defines(_service_region(_text()))) for k in _defines(_service_region(_text()))}
    python = {f"KH_{s.name}": s.number for s in abi.SERVICES}
    missing = sorted(set(python) - set(header))
    extra = sorted(set(header) - set(python))
    assert not missing, f"services in emulator/abi.py but not in kalloc.h: {missing}"
    assert not extra, f"services in kalloc.h but not in emulator/abi.py: {extra}"
    wrong = {k: (header[k], python[k]) for k in python if header[k] != python[k]}
    assert not wrong, f"service numbers differ (header, python): {wrong}"


def test_no_service_name_is_defined_outside_the_service_region(defs: dict[str, str]) -> None:
    text = _text()
    outside = _defines(text.replace(_service_region(text), ""))
    clash = sorted(f"KH_{s.name}" for s in abi.SERVICES if f"KH_{s.name}" in outside)
    assert not clash, f"service names defined outside the marked region: {clash}"


# -- transport, ecalls, stats, versioning -------------------------------------------------

ABI_CONSTANTS = {
    "KALLOC_ABI_VERSION": abi.ABI_VERSION,
    "KH_BLOCK_SIZE": abi.BLOCK_SIZE,
    "KH_BLOCK_OFF_RESULT": abi.OFF_RESULT,
    "KH_BLOCK_OFF_AUX": abi.OFF_AUX,
    "KH_BLOCK_OFF_RA": abi.OFF_RA,
    "KH_BLOCK_OFF_FP": abi.OFF_FP,
    "KH_BLOCK_OFF_CTX": abi.OFF_CTX,
    "KH_BLOCK_OFF_ARGS": abi.OFF_ARGS,
    "KH_MAX_ARGS": abi.MAX_ARGS,
    "KH_CTX_MIE": abi.CTX_MIE,
    "KH_CTX_DEPTH_SHIFT": abi.CTX_DEPTH_SHIFT,
    "KH_CTX_DEPTH_MASK": abi.CTX_DEPTH_MASK,
    "KH_ECALL_EXIT": abi.ECALL_EXIT,
    "KH_ECALL_PANIC": abi.ECALL_PANIC,
    "KH_STATS_BUDDYINFO": abi.STATS_BUDDYINFO,
    "KH_STATS_SLABINFO": abi.STATS_SLABINFO,
    "KH_STATS_ZONEINFO": abi.STATS_ZONEINFO,
    "KH_STATS_ALL": abi.STATS_ALL,
    "KH_BOOTINFO_MAGIC": abi.BOOTINFO_MAGIC,
    "KH_BOOTINFO_MAX_BANKS": abi.BOOTINFO_MAX_BANKS,
    "KH_BOOTINFO_SIZE": abi.BOOTINFO_SIZE,
    "KH_BANK_DMA": abi.BANK_DMA,
    "KH_ASAN_WRITE": abi.ASAN_WRITE,
    "KH_ASAN_RANGE": abi.ASAN_RANGE,
    "KH_KASAN_BANK_SIZE": abi.KASAN_BANK_SIZE,
}


@pytest.mark.parametrize("name", sorted(ABI_CONSTANTS))
def test_abi_constant(defs: dict[str, str], name: str) -> None:
    assert value(defs, name) == ABI_CONSTANTS[name], f"{name} differs from emulator/abi.py"


def test_stats_selectors_cover_every_python_one(defs: dict[str, str]) -> None:
    python = {n for n in vars(abi) if n.startswith("STATS_")}
    assert {f"KH_{n}" for n in python} <= set(defs)


# -- bootinfo -------------------------------------------------------------------------------


def _struct_fields(text: str, tag: str) -> list[tuple[str, str, str | None]]:
    """(type, name, array length or None) of each member of `struct tag`, in order."""
    m = re.search(r"struct\s+" + tag + r"\s*\{(.*?)\};", text, re.S)
    assert m, f"kalloc.h has no struct {tag}"
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    fields = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        fm = re.fullmatch(r"(.+?)\s+(\w+)\s*(?:\[\s*(\w+)\s*\])?", decl)
        assert fm, f"cannot parse member {decl!r} of struct {tag}"
        fields.append((" ".join(fm.group(1).split()), fm.group(2), fm.group(3)))
    return fields


def test_bootinfo_fields_follow_python_order(defs: dict[str, str]) -> None:
    text = _text()
    bank = _struct_fields(text, "kalloc_bank")
    assert all(t == "uint32_t" and n is None for t, _, n in bank), "struct kalloc_bank: u32 fields only"
    flat: list[str] = []
    for typ, name, count in _struct_fields(text, "kalloc_bootinfo"):
        if typ == "struct kalloc_bank":
            assert count is not None, "the banks are an array"
            n = value(defs, count) if not count.isdigit() else int(count)
            flat += [f"{name}{i}_{f}" for i in range(n) for _, f, _ in bank]
        else:
            assert typ == "uint32_t" and count is None, f"bootinfo member {name}: u32 fields only"
            flat.append(name)
    assert tuple(flat) == abi.BOOTINFO_FIELDS
    assert 4 * len(flat) == abi.BOOTINFO_SIZE


# -- GFP flags ------------------------------------------------------------------------------


def _gfp_names() -> dict[str, int]:
    return {n: v for n, v in vars(gfp).items() if re.fullmatch(r"(__)?GFP_[A-Z_]+", n) and isinstance(v, int)}


@pytest.mark.parametrize("name", sorted(_gfp_names()))
def test_gfp_flag(defs: dict[str, str], name: str) -> None:
    assert value(defs, name) == _gfp_names()[name], f"{name} differs from kalloc/gfp.py"


def test_no_gfp_flag_in_the_header_is_unknown_to_python(defs: dict[str, str]) -> None:
    header = {n for n in defs if re.fullmatch(r"(__)?GFP_[A-Z_]+", n)}
    extra = sorted(header - set(_gfp_names()))
    assert not extra, f"GFP names in kalloc.h but not in kalloc/gfp.py: {extra}"


def test_every_single_bit_flag_is_known() -> None:
    singles = [v for n, v in _gfp_names().items() if n.startswith("__") and v & (v - 1) == 0]
    assert sum(singles) & ~gfp.KNOWN_MASK == 0


# -- memory map -----------------------------------------------------------------------------


def _layout() -> dict[str, int]:
    return {n: v for n, v in vars(memlayout).items() if n.isupper() and isinstance(v, int)}


@pytest.mark.parametrize("name", sorted(_layout()))
def test_memory_map_constant(defs: dict[str, str], name: str) -> None:
    if name.startswith("IDLE_SLED_"):
        pytest.skip("the idle sled is the machine's own; firmware never touches it")
    assert value(defs, "KALLOC_" + name) == _layout()[name], f"KALLOC_{name} differs from memlayout"


def test_header_parser_sees_the_whole_header(defs: dict[str, str]) -> None:
    """Guards the parser: a define it silently skipped would hide a mismatch."""
    raw = [ln for ln in _text().splitlines() if re.match(r"\s*#\s*define\s+\w+\s+\S", ln)]
    assert len(raw) == len(defs)


# -- the committed firmware keeps the frame-pointer convention ---------------------------------

BUILD = HEADER.parents[1] / "build"


def _wrapper_prologues(elf_path: Path) -> dict[str, tuple[int, int | None, int | None, int | None]]:
    """name -> (frame size, sp offset of ra, of s0, n in `s0 = sp + n`) for each SDK wrapper."""
    capstone = pytest.importorskip("capstone")
    from elftools.elf.elffile import ELFFile

    with elf_path.open("rb") as fh:
        elf = ELFFile(fh)
        syms = list(elf.get_section_by_name(".symtab").iter_symbols())
        text = elf.get_section_by_name(".text")
        base, code = text["sh_addr"], text.data()
    by_name = {s.name: s["st_value"] for s in syms}
    lo, hi = by_name["__kalloc_api_start"], by_name["__kalloc_api_end"]
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
    out = {}
    for s in syms:
        if s["st_info"]["type"] != "STT_FUNC" or not lo <= s["st_value"] < hi:
            continue
        start = s["st_value"] - base
        frame = ra = s0 = fp = None
        for insn in md.disasm(code[start : start + s["st_size"]], s["st_value"]):
            op = insn.mnemonic.removeprefix("c.")
            args = [a.strip() for a in insn.op_str.split(",")]
            if frame is None and args[0] == "sp" and (op == "addi16sp" or (op == "addi" and args[1] == "sp")):
                frame = -int(args[-1], 0)  # the prologue's `addi sp, sp, -N`
            elif op in ("sw", "swsp") and args[0] in ("ra", "s0") and args[1].endswith("(sp)"):
                slot = int(args[1].removesuffix("(sp)"), 0)
                ra, s0 = (slot, s0) if args[0] == "ra" else (ra, slot)
            elif op in ("addi", "addi4spn") and args[:2] == ["s0", "sp"]:
                fp = int(args[-1], 0)
        out[s.name] = (frame or 0, ra, s0, fp)
    return out


@pytest.mark.parametrize("elf", ["demo.elf", "tests/mallocs.elf"])
def test_wrappers_keep_ra_at_fp_minus_4_and_fp_at_fp_minus_8(elf: str) -> None:
    """The bridge walks [fp-4] = return address, [fp-8] = caller's fp from block.fp.

    GCC gives a *leaf* function only an s0 slot (at fp-4); the wrappers must not
    be compiled that way, or every allocation site would be read one slot off.
    """
    prologues = _wrapper_prologues(BUILD / elf)
    assert "kmalloc" in prologues or "malloc" in prologues, "no SDK wrapper found between the api symbols"
    bad = {
        name: p
        for name, p in prologues.items()
        if not (p[0] and p[3] == p[0] and p[1] == p[0] - 4 and p[2] == p[0] - 8)
    }
    assert not bad, f"wrappers without the (ra @ fp-4, s0 @ fp-8) frame: {bad}"


def test_docs_list_every_error_kind_and_no_other() -> None:
    """docs/abi.md's "Error kinds" table is the closed set of kalloc.errors.KINDS."""
    from kalloc.errors import KINDS

    text = (HEADER.parents[2] / "docs" / "abi.md").read_text(encoding="utf-8")
    section = text.split("## Error kinds", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z-]+)` \|", section, re.M)
    assert documented == list(KINDS)
