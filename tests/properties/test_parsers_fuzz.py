"""Fuzzing of every parser of user input (issue 12): no traceback, no hang, one-line errors.

Each parser gets random and mutated input and must either accept it or raise its
own one-line error — never another exception, never hang (a Hypothesis deadline per
example), never print a traceback:

    ELF loader   kalloc_machine.elf.load_firmware on truncated / byte-mutated real ELFs
    boards       kalloc_machine.board: random tables -> TOML text, mutated shipped boards
    traces       kalloc.replay.trace.parse: the three formats, random and mutated
    CLI values   `kalloc run` / `kalloc replay` option values through click's CliRunner:
                 exit 2 (usage) or 3 (bad input) with a one-line message

Bounded for CI: a few dozen to a few hundred examples each, well under a minute in all.
The machine is imported inside the tests: `pytest tests/properties` collects without
Unicorn (tests/checks/test_layering.py).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "emulator" / "kalloc_machine" / "boards"
TRACES = ROOT / "kalloc" / "replay" / "traces"
ELF = ROOT / "firmware" / "build" / "tests" / "hello.elf"  # a small C firmware with symbols and DWARF

FUZZ = settings(max_examples=200, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])  # fmt: skip
CLI = settings(FUZZ, max_examples=60)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kalloc-fuzz-") as d:
        yield Path(d)


def one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)


# -- the ELF loader ------------------------------------------------------------------------------------

ELF_BYTES = ELF.read_bytes()
# Mutations land in the headers (ELF header, program headers) more often than anywhere else.
offsets = st.one_of(st.integers(0, 0x34 + 0x20 * 4), st.integers(0, len(ELF_BYTES) - 1))
mutations = st.lists(st.tuples(offsets, st.integers(0, 255)), min_size=1, max_size=12)


def _load_elf(raw: bytes, scratch: Path) -> None:
    from kalloc_machine.board import load_board
    from kalloc_machine.elf import FirmwareError, load_firmware

    path = scratch / "fuzz.elf"
    path.write_bytes(raw)
    try:
        fw = load_firmware(path)
        fw.check_fits(load_board("default"))
    except FirmwareError as exc:
        one_line(str(exc))
        return
    for pc in (fw.entry, fw.segments[0].vaddr, 0, 0xFFFF_FFFF):
        fw.symbolize(pc)  # never raises (elf.py invariant 2)


@FUZZ
@given(mutations)
def test_elf_loader_survives_mutated_bytes(scratch: Path, muts: list[tuple[int, int]]) -> None:
    raw = bytearray(ELF_BYTES)
    for off, byte in muts:
        raw[off] = byte
    _load_elf(bytes(raw), scratch)


@settings(FUZZ, max_examples=80)
@given(st.integers(0, len(ELF_BYTES)))
@example(0)
@example(3)
@example(0x34)
def test_elf_loader_survives_truncation(scratch: Path, n: int) -> None:
    _load_elf(ELF_BYTES[:n], scratch)


# -- boards --------------------------------------------------------------------------------------------

KNOWN_KEYS = ["name", "description", "cpu", "ram", "device", "dma_master", "dma_engine", "isa", "quantum",
              "timer_hz", "base", "size", "attributes", "type", "irq", "test_irq", "windows", "master",
              "boundary", "cycles_per_byte", "attribute", "devices"]  # fmt: skip
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 31, 0x1000, 0x8000_0000, 0xC000_0000, 0xFFFF_F000, 2**32]),
    st.sampled_from(["4MiB", "0x1000", "1G", "uart", "clint", "intc", "dma", "rv32imac", "", "a\nb"]),
    st.text(max_size=12),
    st.booleans(),
    st.floats(allow_nan=True),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
tables = st.dictionaries(keys, values, max_size=6)
docs = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.just("fuzz"), values),
        "description": st.one_of(st.just("a fuzzed board"), values),
        "cpu": tables,
        "ram": st.lists(tables, max_size=5),
        "device": st.lists(tables, max_size=5),
        "dma_master": st.lists(tables, max_size=2),
        "dma_engine": tables,
    },
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string (or a TOML error, which is fine too)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def to_toml(doc: dict[str, Any]) -> str:
    """A small TOML writer for the fuzzed documents: scalars first, then tables and arrays of tables."""
    out = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list))
           or (isinstance(v, list) and not all(isinstance(t, dict) for t in v))]  # fmt: skip
    for k, v in doc.items():
        if isinstance(v, dict):
            out += [f"[{json.dumps(k)}]", *(f"{json.dumps(a)} = {_toml_value(b)}" for a, b in v.items())]
        elif isinstance(v, list) and v and all(isinstance(t, dict) for t in v):
            for t in v:
                out += [f"[[{json.dumps(k)}]]"]
                out += [f"{json.dumps(a)} = {_toml_value(b)}" for a, b in t.items()]
    return "\n".join(out) + "\n"


def _load_board_text(text: str | bytes, scratch: Path) -> None:
    from kalloc_machine.board import BoardError, load_board

    path = scratch / "fuzz.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)
    try:
        board = load_board(str(path))
    except BoardError as exc:
        one_line(str(exc))
        return
    assert re.fullmatch(r".+@sha256:[0-9a-f]{8}", board.label)


@FUZZ
@given(docs)
def test_board_parser_on_random_tables(scratch: Path, doc: dict[str, Any]) -> None:
    from kalloc_machine.board import BoardError, parse_board

    try:
        parse_board(doc, "fuzz.toml")
    except BoardError as exc:
        one_line(str(exc))
    _load_board_text(to_toml(doc), scratch)


SHIPPED = {p.stem: p.read_text() for p in sorted(BOARDS.glob("*.toml"))}
edit_ops = st.sampled_from(["delete", "duplicate", "number", "insert", "rename"])
edit_args = st.one_of(st.integers(-1, 2**40), st.text(max_size=10))
edits = st.lists(st.tuples(edit_ops, st.integers(0, 10**6), edit_args), min_size=1, max_size=4)


def mutate_lines(text: str, muts: list[tuple[str, int, Any]]) -> str:
    lines = text.splitlines()
    for op, where, arg in muts:
        if not lines:
            break
        i = where % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "number":
            lines[i] = re.sub(r"\b(0x[0-9a-fA-F_]+|[0-9]+)\b", str(arg), lines[i], count=1)
        elif op == "insert":
            lines.insert(i, str(arg))
        else:  # a typo in a key: drop, double or swap one letter
            key, sep, rest = lines[i].partition("=")
            if sep and len(key.strip()) > 1:
                k = key.strip()
                j = (arg if isinstance(arg, int) else len(arg)) % len(k)
                lines[i] = f"{k[:j]}{k[j + 1:]} ={rest}" if j % 2 else f"{k[:j]}{k[j]}{k[j:]} ={rest}"
    return "\n".join(lines) + "\n"


@FUZZ
@given(st.sampled_from(sorted(SHIPPED)), edits)
def test_board_loader_on_mutated_shipped_boards(scratch: Path, name: str, muts: list[Any]) -> None:
    _load_board_text(mutate_lines(SHIPPED[name], muts), scratch)


@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=200))
@example(b"a = " + b"[" * 5000)
@example(b"x = " + b"9" * 5000)
@example(b"\xff\xfe")
def test_board_loader_on_random_bytes(scratch: Path, raw: bytes) -> None:
    _load_board_text(raw, scratch)


# -- traces --------------------------------------------------------------------------------------------

TRACE_TEXT = {p.name: p.read_text(encoding="utf-8", errors="replace")[:3000] for p in sorted(TRACES.iterdir())
              if p.suffix in (".rep", ".trace", ".ktrace", ".txt")}  # fmt: skip
TRACE_TEXT["kalloc.ktrace"] = ("# kalloc trace v1\n# a comment\na 0 16 malloc\nc 1 4 8\nm 2 64 100\n"
                               "r 0 32\nf 0\nf 1\n")
tokens = st.sampled_from(["a", "c", "m", "r", "f", "Alloc(", "Free(", ")", ",", " ", "\n", "\r\n", "#",
                          "# kalloc trace v1\n", "0", "1", "7", "-1", "4294967296", "9" * 30, "²", "٣",
                          "0x10", "kmalloc", "\t", "\x00"])  # fmt: skip
trace_texts = st.one_of(
    st.lists(tokens, max_size=40).map("".join),
    st.text(max_size=120),
    st.tuples(st.sampled_from(sorted(TRACE_TEXT)), edits).map(lambda t: mutate_lines(TRACE_TEXT[t[0]], t[1])),
)


@FUZZ
@given(trace_texts)
@example("1\n2\n3\n" + "9" * 5000 + "\n")
@example("Alloc(" + "9" * 5000 + "),\n")
@example("²\n1\n1\n1\n")
@example("# kalloc trace v1\na 0 " + "9" * 5000 + "\n")
def test_trace_parser(text: str) -> None:
    from kalloc.replay.trace import Trace, TraceError, parse

    try:
        tr = parse(text, "fuzz.trace")
    except TraceError as exc:
        one_line(str(exc))
        return
    assert isinstance(tr, Trace)


@settings(FUZZ, max_examples=50)
@given(st.binary(max_size=200))
def test_trace_loader_on_random_bytes(scratch: Path, raw: bytes) -> None:
    from kalloc.replay.trace import TraceError, load

    path = scratch / "fuzz.trace"
    path.write_bytes(raw)
    try:
        load(path)
    except TraceError as exc:
        one_line(str(exc))


# -- CLI values ----------------------------------------------------------------------------------------

RUN_FLAGS = ["--quarantine", "--irq-at", "--irq-every", "--irq-jitter", "--fail-nth", "--fail-prob",
             "--fail-site", "--fail-cache", "--fail-context", "--timeout", "--max-instructions", "--quantum",
             "--seed", "--board", "--sanitize", "--heap"]  # fmt: skip
cli_values = st.one_of(
    st.sampled_from(["4MiB", "256KiB", "0x1000", "-1", "0", "nan", "inf", "-inf", "1e400", "1,2,3", "1,,2",
                     "0x10,0x20", ",", " ", "", "9" * 5000, "1" * 30, "²", "tiny", "nope", "x.toml",
                     "/nonexistent/x.toml", "a\nb", "-", "--json"]),
    st.text(max_size=16),
    st.integers(-(2**80), 2**80).map(str),
    st.lists(st.integers(-5, 2**40), max_size=4).map(lambda xs: ",".join(map(str, xs))),
)  # fmt: skip


def check_cli(args: list[str], allowed: set[int]) -> None:
    from click.testing import CliRunner

    from kalloc.cli import main

    res = CliRunner().invoke(main, args)
    text = res.output + (res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in allowed, (args, res.exit_code, text[-500:])
    if res.exit_code in (2, 3):
        errors = [ln for ln in text.splitlines() if ln.startswith(("Error:", "kalloc: error:"))]
        assert errors, text[-500:]


@CLI
@given(st.sampled_from(RUN_FLAGS), cli_values)
def test_run_option_values(scratch: Path, flag: str, value: str) -> None:
    # A firmware that does not exist: every value either is a usage error (2) or reaches
    # the firmware check (3); parsing is what is fuzzed here, not the run.
    check_cli(["run", str(scratch / "absent.elf"), flag, value], {2, 3})


@settings(CLI, max_examples=30)
@given(st.sampled_from(["--map-at", "--check-every", "--heap", "--board", "--sanitize"]), cli_values)
def test_replay_option_values(scratch: Path, flag: str, value: str) -> None:
    check_cli(["replay", str(scratch / "absent.trace"), flag, value], {2, 3})


@settings(FUZZ, max_examples=15, deadline=20_000)
@given(st.lists(st.tuples(st.integers(0x1000, len(ELF_BYTES) - 1), st.integers(0, 255)), min_size=1,
                max_size=16))  # fmt: skip
def test_run_of_a_mutated_elf_reports_and_never_crashes(scratch: Path, muts: list[tuple[int, int]]) -> None:
    # Mutations past the headers: the ELF mostly loads and its code or data is garbage.
    raw = bytearray(ELF_BYTES)
    for off, byte in muts:
        raw[off] = byte
    path = scratch / "run.elf"
    path.write_bytes(bytes(raw))
    documented = {*range(0, 64), 64, 65, 66, 2, 3}
    check_cli(["run", str(path), "-q", "--max-instructions", "2000000", "--timeout", "20"], documented)
