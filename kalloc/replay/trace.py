"""Allocation traces: the three formats `kalloc replay` reads, and the one `kalloc run --record` writes.

A trace is a list of `Op`s over object ids: allocate id (size bytes), resize id,
free id. Three text formats are read, detected from their first non-blank line:

    malloc-lab   CS:APP Malloc Lab (`*.rep`). A 4-line header of integers, then
                 one request per line. The 2002 header is <sugg_heapsize>
                 <num_ids> <num_ops> <weight>; the 2016 one is <weight 0..3>
                 <num_ids> <num_ops> <peak_bytes>. Either way lines 2 and 3
                 are the id and op counts, which are checked. Requests:
                 `a id size` (malloc), `r id size` (realloc), `f id` (free).
    wee_alloc    the real-program traces of rustwasm/wee_alloc
                 (../shared/traces/wee_alloc/NOTICE.md): `Alloc(N),` requests N
                 bytes, and its id is the number of Alloc lines before it
                 (from 0); `Free(K),` frees Alloc number K. A realloc appears
                 as a free and a new Alloc; `Alloc(0)` occurs.
    kalloc       our own, written by `kalloc run --record` (below).

CRLF line ends, blank lines and trailing blanks are tolerated in every format.

The kalloc format, version 1 (one event per line, fields separated by blanks):

    # kalloc trace v1                  first line, exactly (it names the format)
    # <free text>                      comments anywhere (the recorder notes the
                                       firmware, board and heap)
    a <id> <size> [<api>]              allocate <size> bytes as object <id>
    c <id> <n> <size> [<api>]          calloc(n, size): zeroed n*size bytes
    m <id> <align> <size> [<api>]      aligned_alloc(align, size)
    r <id> <size> [<api>]              resize object <id> (realloc); keeps its id
    f <id> [<api>]                     free object <id>

Any event may end with `@<tag>`: the tag the firmware allocated it under
(`kalloc_tag_push`); untagged events have none. Readers that predate tags see
`@<tag>` as a malformed line; the magic line stays v1 because nothing else changed.

<api> says which allocator entry point the firmware called (`malloc`,
`kmalloc`, `cache:<name>`, `pages`, ...); replay sends every request to the C
library face of the chosen --heap, so a trace recorded with one policy can be
replayed against another. Ids are decimal, assigned in allocation order and
never reused within a trace.

Invariants:
 1. Parsing never guesses silently: a line that fits no rule of its format
    raises TraceError with the file line number.
 2. `Op.id` values of one trace are allocated before they are resized or freed
    in a well-formed trace; replay counts (and skips) the requests that break
    this, it does not crash on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KALLOC_MAGIC = "# kalloc trace v1"

# Op kinds
ALLOC = "a"
CALLOC = "c"
MEMALIGN = "m"
REALLOC = "r"
FREE = "f"


class TraceError(ValueError):
    """A trace file that does not follow its format."""


@dataclass(frozen=True, slots=True)
class Op:
    """One request: `kind` (a c m r f), object `id`, `size` in bytes, `n` (calloc count) or alignment."""

    kind: str
    id: int
    size: int = 0
    arg: int = 0  # calloc: element count; aligned_alloc: alignment
    api: str = ""
    tag: str = ""  # the firmware's allocation tag (kalloc_tag_push), kalloc format only

    @property
    def nbytes(self) -> int:
        """Bytes the request asks for (calloc: n * size)."""
        return self.arg * self.size if self.kind == CALLOC else self.size


@dataclass(slots=True)
class Trace:
    """A parsed trace: its ops, the format it came in and a name for reports."""

    name: str
    format: str
    ops: list[Op]
    header: dict[str, int]


_WEE = re.compile(r"^(Alloc|Free)\(([0-9]+)\),?$")


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]


def parse(text: str, name: str = "trace") -> Trace:
    """Parse a trace in any of the three formats (detected from the first non-blank line)."""
    lines = _lines(text)
    if not lines:
        raise TraceError(f"{name}: the trace is empty")
    first = lines[0][1]
    if first == KALLOC_MAGIC:
        return _parse_kalloc(lines, name)
    if _WEE.match(first):
        return _parse_wee(lines, name)
    if first.isascii() and first.isdigit():  # "²".isdigit() too, and int() refuses it
        return _parse_malloc_lab(lines, name)
    raise TraceError(f"{name}:{lines[0][0]}: not a malloc-lab, wee_alloc or kalloc trace: {first[:40]!r}")


def load(path: str | Path) -> Trace:
    """Read and parse a trace file (its name, without directories, names the trace)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TraceError(f"{p.name}: {exc.strerror or exc}") from None
    return parse(text, p.name)


_U32_MAX = 0xFFFF_FFFF


def _number(text: str, lineno: int, name: str) -> int:
    """A decimal number of the file (int() refuses more than 4300 digits: a TraceError, not a crash)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise TraceError(f"{name}:{lineno}: {text[:40]!r} is not a usable number") from None
    if value > _U32_MAX:  # sizes are a 32-bit machine's size_t (issue 12)
        raise TraceError(f"{name}:{lineno}: {text[:40]} does not fit in 32 bits (a size_t of this machine)")
    return value


def _ints(fields: list[str], lineno: int, name: str, want: int) -> list[int]:
    if len(fields) != want:
        raise TraceError(f"{name}:{lineno}: expected {want} number(s), found {len(fields)}")
    try:
        vals = [int(f, 10) for f in fields]
    except ValueError:
        raise TraceError(f"{name}:{lineno}: {' '.join(fields)!r} is not a list of decimal numbers") from None
    if any(v < 0 for v in vals):
        raise TraceError(f"{name}:{lineno}: negative number")
    if any(v > _U32_MAX for v in vals):  # sizes are a 32-bit machine's size_t (issue 12)
        raise TraceError(f"{name}:{lineno}: {max(vals)} does not fit in 32 bits (a size_t of this machine)")
    return vals


def _parse_malloc_lab(lines: list[tuple[int, str]], name: str) -> Trace:
    if len(lines) < 4 or not all(s.isascii() and s.isdigit() for _, s in lines[:4]):
        raise TraceError(f"{name}: a malloc-lab trace starts with a 4-line header of numbers")
    h = [_number(s, lineno, name) for lineno, s in lines[:4]]
    # 2016: <weight 0..3> <ids> <ops> <peak bytes>; 2002: <heap size> <ids> <ops> <weight>.
    if h[0] <= 3:
        header = {"weight": h[0], "num_ids": h[1], "num_ops": h[2], "peak_bytes": h[3]}
        fmt = "malloc-lab-2016"
    else:
        header = {"sugg_heapsize": h[0], "num_ids": h[1], "num_ops": h[2], "weight": h[3]}
        fmt = "malloc-lab-2002"
    ops: list[Op] = []
    for lineno, line in lines[4:]:
        fields = line.split()
        kind = fields[0]
        if kind in (ALLOC, REALLOC):
            ident, size = _ints(fields[1:], lineno, name, 2)
            ops.append(Op(kind, ident, size))
        elif kind == FREE:
            (ident,) = _ints(fields[1:], lineno, name, 1)
            ops.append(Op(FREE, ident))
        else:
            raise TraceError(f"{name}:{lineno}: unknown malloc-lab request {kind!r} (a, r or f)")
    if len(ops) != header["num_ops"]:
        raise TraceError(
            f"{name}: the header announces {header['num_ops']} requests, the file has {len(ops)}"
        )
    ids = {op.id for op in ops}
    if ids and max(ids) >= header["num_ids"]:
        raise TraceError(f"{name}: id {max(ids)} is outside the header's {header['num_ids']} ids")
    return Trace(name, fmt, ops, header)


def _parse_wee(lines: list[tuple[int, str]], name: str) -> Trace:
    ops: list[Op] = []
    nalloc = 0
    for lineno, line in lines:
        m = _WEE.match(line)
        if m is None:
            raise TraceError(f"{name}:{lineno}: expected `Alloc(N),` or `Free(K),`, found {line[:40]!r}")
        n = _number(m.group(2), lineno, name)
        if m.group(1) == "Alloc":
            ops.append(Op(ALLOC, nalloc, n))
            nalloc += 1
        else:
            if n >= nalloc:
                raise TraceError(f"{name}:{lineno}: Free({n}) of an Alloc that has not happened yet")
            ops.append(Op(FREE, n))
    return Trace(name, "wee_alloc", ops, {"num_ids": nalloc, "num_ops": len(ops)})


_KALLOC_ARITY = {ALLOC: 2, CALLOC: 3, MEMALIGN: 3, REALLOC: 2, FREE: 1}


def _parse_kalloc(lines: list[tuple[int, str]], name: str) -> Trace:
    ops: list[Op] = []
    for lineno, line in lines[1:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        kind = fields[0]
        arity = _KALLOC_ARITY.get(kind)
        if arity is None:
            raise TraceError(f"{name}:{lineno}: unknown kalloc trace event {kind!r} (a c m r f)")
        api = tag = ""
        if len(fields) > 1 and fields[-1].startswith("@") and len(fields[-1]) > 1:
            tag = fields[-1][1:]
            fields = fields[:-1]
        if len(fields) == arity + 2:
            api = fields[-1]
            fields = fields[:-1]
        vals = _ints(fields[1:], lineno, name, arity)
        if kind in (ALLOC, REALLOC):
            ops.append(Op(kind, vals[0], vals[1], api=api, tag=tag))
        elif kind in (CALLOC, MEMALIGN):
            ops.append(Op(kind, vals[0], vals[2], vals[1], api=api, tag=tag))
        else:
            ops.append(Op(FREE, vals[0], api=api, tag=tag))
    ids = {op.id for op in ops if op.kind not in (REALLOC, FREE)}
    return Trace(name, "kalloc", ops, {"num_ids": len(ids), "num_ops": len(ops)})


def format_op(op: Op) -> str:
    """One line of the kalloc format for `op` (no newline)."""
    api = f" {op.api}" if op.api else ""
    if op.tag:
        api += f" @{op.tag}"
    if op.kind in (ALLOC, REALLOC):
        return f"{op.kind} {op.id} {op.size}{api}"
    if op.kind in (CALLOC, MEMALIGN):
        return f"{op.kind} {op.id} {op.arg} {op.size}{api}"
    return f"f {op.id}{api}"


def dumps(ops: list[Op], comments: tuple[str, ...] = ()) -> str:
    """A whole trace in the kalloc format."""
    out = [KALLOC_MAGIC, *(f"# {c}" for c in comments), *(format_op(op) for op in ops)]
    return "\n".join(out) + "\n"
