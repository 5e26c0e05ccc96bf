"""Boards: the TOML files that describe one machine (RAM banks, devices, DMA reach).

A board is data, not code: the machine (machine.py) builds its memory map,
devices and DMA rules from a `Board`, and the allocator builds its zones from the
banks' `dma` flags. The shipped boards live in emulator/kalloc_machine/boards/*.toml (package data);
`--board` also takes a path to a user's own file.

Schema (every address and size is an int; sizes may also be strings "4MiB", "256KiB",
"1GiB", "4096"; TOML writes hex ints as 0x8000_0000):

    name = "default"                     # required
    description = "16 MiB SoC ..."       # required, one line

    [cpu]                                # optional; every field has a default
    isa = "rv32imac"                     # the only ISA so far (isa/__init__.py ISAS)
    quantum = 100000                     # instructions per slice (see runloop.py)
    timer_hz = 100000000                 # nominal instructions per second, for reports

    [[ram]]                              # 1..4 banks (bootinfo carries at most 4)
    name = "dma"
    base = 0x8000_0000                   # page-aligned, in [RAM_BASE, VMALLOC_START)
    size = "4MiB"                        # a multiple of the page size
    attributes = ["dma"]                 # optional; "dma" = every DMA master reaches it

    [[device]]
    name = "uart0"
    type = "uart"                        # uart | clint | intc | dma
    base = 0x1000_0000
    size = 0x1000
    irq = 1                              # optional; see "Interrupt lines" below
    test_irq = 31                        # intc only: the injector's line (default 31)

    [[dma_master]]                       # optional, any number
    name = "dma0"
    windows = [[0x8000_0000, 0x40_0000]] # [base, size] ranges the master can address

    [dma_engine]                         # optional; rules of the `dma` device
    master = "dma0"                      # whose windows apply (default: the first master)
    boundary = 65536                     # no transfer may cross a multiple of this (0: none)
    cycles_per_byte = 1                  # completion delay, in instructions per byte

Interrupt lines: the intc routes lines 1..31 to the CPU's machine external interrupt
(mcause 0x8000000b). The clint's timer is wired to the CPU directly (mcause 0x80000007);
its `irq` (0 by convention, never an intc line) is only the number firmware uses to
register the timer handler and reports use to count it.

Modules: the data model (Board, RamSpec, DeviceSpec, DmaMaster, DmaRules, CpuSpec,
BoardError) is boardspec.py, re-exported here; the checks are boardcheck.py; this
module reads TOML into the model (`parse_board`, `load_board`, `list_boards`).

Invariants:
 1. Every Board `parse_board` and `load_board` return passed `boardcheck.validate`
    (its invariants: boardcheck.py).
 2. Every unreadable, malformed or inconsistent file raises a one-line BoardError.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from kalloc_machine.boardcheck import validate
from kalloc_machine.boardspec import (
    DEVICE_TYPES,
    RAM_ATTRIBUTES,
    Board,
    BoardError,
    CpuSpec,
    DeviceSpec,
    DmaMaster,
    DmaRules,
    RamSpec,
)

__all__ = [
    "BOARDS_DIR", "Board", "BoardError", "CpuSpec", "DeviceSpec", "DmaMaster", "DmaRules", "RamSpec",
    "board_label", "board_path", "list_boards", "load_board", "parse_board", "parse_size",
]  # fmt: skip

BOARDS_DIR = Path(__file__).parent / "boards"
MAX_BOARD_BYTES = 1 << 20  # a board is a page of TOML; anything this big is not one (and is not read)


# -- parsing -------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(0x[0-9a-fA-F_]{1,20}|[0-9_]{1,24})\s*([KMG]i?B?)?\s*$", re.ASCII)
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(value: Any, what: str) -> int:
    """An int, or a string such as "4MiB", "256KiB", "1G", "0x1000" (units are binary)."""
    if isinstance(value, bool):
        raise BoardError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            n = int(m.group(1).replace("_", ""), 0)
            return n * (_UNITS[m.group(2)[0]] if m.group(2) else 1)
    raise BoardError(f'{what}: expected a size such as 4096 or "4MiB", got {value!r}')


# Every key a table may hold (anything else is a typo or a feature that does not exist).
_TOP_KEYS = ("name", "description", "cpu", "ram", "device", "dma_master", "dma_engine")
_CPU_KEYS = ("isa", "quantum", "timer_hz")
_RAM_KEYS = ("name", "base", "size", "attributes")
_DEVICE_KEYS = ("name", "type", "base", "size", "irq")
_DEVICE_OPTIONS = {"intc": ("test_irq",)}  # type-specific keys beside _DEVICE_KEYS
_MASTER_KEYS = ("name", "windows")
_ENGINE_KEYS = ("master", "boundary", "cycles_per_byte")


def _check_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """BoardError for the first key not in `known`, naming the closest known one (a typo)."""
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
        raise BoardError(f"{where}: unknown key {str(key)!r} ({hint})")


def _req(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise BoardError(f"{where}: missing field '{key}'")
    return table[key]


def _int(table: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = table.get(key, default) if default is not None else _req(table, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BoardError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
    return value


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = _req(table, key, where)
    if not isinstance(value, str) or not value:
        raise BoardError(f"{where}: '{key}' must be a non-empty string")
    if not value.isprintable():
        raise BoardError(f"{where}: '{key}' must be one line of printable text, got {value!r}")
    return value


def _tables(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise BoardError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return items


def _named(t: dict[str, Any], i: int, src: str, what: str, label: str) -> str:
    """How messages name the i-th [[what]] entry: by its name when it has one."""
    name = t.get("name")
    return f"{src}: {label} '{name}'" if isinstance(name, str) and name else f"{src}: {what}[{i}]"


def _parse_ram(t: dict[str, Any], i: int, src: str) -> RamSpec:
    _check_keys(t, _RAM_KEYS, _named(t, i, src, "ram", "ram bank"))
    where = f"{src}: ram[{i}]"
    name = _str(t, "name", where)
    where = f"{src}: ram bank '{name}'"
    attrs = t.get("attributes", [])
    if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
        raise BoardError(f"{where}: 'attributes' must be a list of strings")
    for a in attrs:
        if a not in RAM_ATTRIBUTES:
            raise BoardError(f"{where}: unknown attribute '{a}' (known: {', '.join(RAM_ATTRIBUTES)})")
    size = parse_size(_req(t, "size", where), f"{where}: size")
    return RamSpec(name, _int(t, "base", where), size, tuple(attrs))


def _parse_device(t: dict[str, Any], i: int, src: str) -> DeviceSpec:
    type_opts: tuple[str, ...] = _DEVICE_OPTIONS.get(str(t.get("type")), ())
    _check_keys(t, _DEVICE_KEYS + type_opts, _named(t, i, src, "device", "device"))
    name = _str(t, "name", f"{src}: device[{i}]")
    where = f"{src}: device '{name}'"
    type_ = _str(t, "type", where)
    if type_ not in DEVICE_TYPES:
        raise BoardError(f"{where}: unknown device type '{type_}' (known: {', '.join(DEVICE_TYPES)})")
    size = parse_size(_req(t, "size", where), f"{where}: size")
    irq = t.get("irq")
    if irq is not None and (isinstance(irq, bool) or not isinstance(irq, int)):
        raise BoardError(f"{where}: 'irq' must be an integer line number")
    options = {k: v for k, v in t.items() if k not in ("name", "type", "base", "size", "irq")}
    return DeviceSpec(name, type_, _int(t, "base", where), size, irq, options)


def _parse_master(t: dict[str, Any], i: int, src: str) -> DmaMaster:
    _check_keys(t, _MASTER_KEYS, _named(t, i, src, "dma_master", "dma master"))
    name = _str(t, "name", f"{src}: dma_master[{i}]")
    where = f"{src}: dma master '{name}'"
    raw = _req(t, "windows", where)
    windows = []
    if not isinstance(raw, list):
        raise BoardError(f"{where}: 'windows' must be a list of [base, size] pairs")
    for w in raw:
        if not isinstance(w, list) or len(w) != 2:
            raise BoardError(f"{where}: window {w!r} is not a [base, size] pair")
        base, size = w[0], parse_size(w[1], f"{where}: window size")
        if isinstance(base, bool) or not isinstance(base, int) or size <= 0:
            raise BoardError(f"{where}: window {w!r} needs an integer base and a positive size")
        windows.append((base, size))
    return DmaMaster(name, tuple(windows))


def parse_board(doc: dict[str, Any], src: str) -> Board:
    """Build a Board from a parsed TOML document, then validate it. Raises BoardError (one line)."""
    try:
        return _build(doc, src)
    except BoardError as e:
        msg = str(e)
        if "\n" not in msg and "\r" not in msg:
            raise
        raise BoardError(msg.replace("\r", "\\r").replace("\n", "\\n")) from None


def _build(doc: dict[str, Any], src: str) -> Board:  # long: one table after the other, in file order
    if not isinstance(doc, dict):
        raise BoardError(f"{src}: a board is a TOML document (a table)")
    _check_keys(doc, _TOP_KEYS, src)
    name = _str(doc, "name", src)
    description = _str(doc, "description", src)
    cpu_t = doc.get("cpu", {})
    if not isinstance(cpu_t, dict):
        raise BoardError(f"{src}: [cpu] must be a table")
    _check_keys(cpu_t, _CPU_KEYS, f"{src}: [cpu]")
    cpu = CpuSpec(
        isa=str(cpu_t.get("isa", "rv32imac")),
        quantum=_int(cpu_t, "quantum", f"{src}: [cpu]", 100_000),
        timer_hz=_int(cpu_t, "timer_hz", f"{src}: [cpu]", 100_000_000),
    )
    rules_t = doc.get("dma_engine", {})
    if not isinstance(rules_t, dict):
        raise BoardError(f"{src}: [dma_engine] must be a table")
    _check_keys(rules_t, _ENGINE_KEYS, f"{src}: [dma_engine]")
    master = rules_t.get("master")
    if master is not None and not isinstance(master, str):
        raise BoardError(f"{src}: [dma_engine]: 'master' must be a master's name")
    rules = DmaRules(
        master=master,
        boundary=parse_size(rules_t.get("boundary", 0), f"{src}: [dma_engine] boundary"),
        cycles_per_byte=_int(rules_t, "cycles_per_byte", f"{src}: [dma_engine]", 1),
    )
    board = Board(
        name=name,
        description=description,
        ram=tuple(_parse_ram(t, i, src) for i, t in enumerate(_tables(doc, "ram", src))),
        devices=tuple(_parse_device(t, i, src) for i, t in enumerate(_tables(doc, "device", src))),
        dma_masters=tuple(_parse_master(t, i, src) for i, t in enumerate(_tables(doc, "dma_master", src))),
        dma_rules=rules,
        cpu=cpu,
        source=src,
    )
    validate(board)
    return board


# -- loading -------------------------------------------------------------------------


def board_path(name_or_path: str) -> Path:
    """The file for a shipped board name, or the path itself when it names a file."""
    p = Path(name_or_path)
    if name_or_path.endswith(".toml") or p.parent != Path("."):
        return p
    return BOARDS_DIR / f"{name_or_path}.toml"


def load_board(name_or_path: str) -> Board:
    """Load and validate a shipped board by name ("default") or a TOML file by path.

    Raises:
        BoardError: unknown name, unreadable file, bad TOML, or a broken invariant.
    """
    path = board_path(name_or_path)
    shipped = path.parent == BOARDS_DIR
    shown = name_or_path if name_or_path.isprintable() else repr(name_or_path)  # messages are one line
    src = f"board '{shown}'" if shipped else shown
    if not _is_file(path):
        if shipped:
            known = ", ".join(n for n, _ in list_boards())
            raise BoardError(f"unknown board '{shown}' (shipped boards: {known})")
        raise BoardError(f"{src}: no such board file")
    try:
        size = path.stat().st_size
        raw = path.read_bytes() if size <= MAX_BOARD_BYTES else b""
        doc = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise BoardError(f"{src}: cannot read: {e.strerror}") from None
    except (ValueError, RecursionError) as e:  # TOMLDecodeError, UnicodeDecodeError, int() digit limits
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BoardError(f"{src}: bad TOML: {first}") from None
    if size > MAX_BOARD_BYTES:
        raise BoardError(f"{src}: {size} bytes; a board file is at most {MAX_BOARD_BYTES} (not read)")
    board = parse_board(doc, src)
    return replace(board, label=board_label(name_or_path, board.name, raw, shipped))


def board_label(name_or_path: str, name: str, content: bytes, shipped: bool) -> str:
    """How reports name a board (the JSON's options.board): a shipped board by the name typed,
    a board file by its name and a digest of its content ("mine@sha256:1a2b3c4d"), never a host path."""
    if shipped:
        return name_or_path
    return f"{name}@sha256:{hashlib.sha256(content).hexdigest()[:8]}"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def list_boards() -> list[tuple[str, str]]:
    """(name, description) of every shipped board, sorted by name."""
    out = []
    for p in sorted(BOARDS_DIR.glob("*.toml")):
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError):
            continue
        out.append((p.stem, str(doc.get("description", ""))))
    return out
