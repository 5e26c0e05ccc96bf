"""Checks that keep the layout true (issue 11), read from the source with `ast` (one probe collects tests).

1. Layers. No module under kalloc/ except kalloc/cli/ (the composition root of the
   command line) imports kalloc_machine, unicorn or capstone, at the top or lazily
   inside a function (`import x`, `from x import y`, `importlib.import_module("x")`).
   And `pytest tests/allocator tests/properties` collects without importing Unicorn or
   Capstone (the kalloc pytest plugin included): those tests need no machine.
2. Private names. No module reaches into another module's underscore names:
     - `from m import _x` (any module);
     - an attribute `expr._name` (not a dunder) where `_name` is not defined in the
       same module — as a def, a class, an assigned name or attribute
       (`self._name = …`), a class attribute or a parameter. This is a practical
       heuristic, not a type check: `self`, `cls`, `super()` and any other
       expression may use the module's own underscore names and no others.
   Underscore names of other projects that have no public spelling are listed in
   FOREIGN_PRIVATE with the reason they are unavoidable (e.g. NamedTuple's
   `_replace`, which is public API spelled with an underscore).
   The rule covers kalloc/ and emulator/kalloc_machine/, and tests/ as well: tests use
   the allocator's public (internal) interface, not underscore names. Reaches in
   tests that are not fixed yet are listed, one `path: .name` a line, in
   tests/checks/private_in_tests.txt; the test prints them as a warning (never
   silently) and fails on a reach that is not listed, or a listed one that is gone.
3. Sizes. In kalloc/ and emulator/kalloc_machine/ no module is over MODULE_LINES lines
   and no function (def line to last line, docstring included) over FUNCTION_LINES,
   except where a comment says why:
     - a function: a comment `# long: <reason>` on its def line (or on any line of its
       signature, when that spans lines);
     - a module: a comment line `# long-module: <reason>` anywhere in it.
   The reason must not be empty.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "kalloc", ROOT / "emulator" / "kalloc_machine"]
TESTS = ROOT / "tests"
TEST_EXCEPTIONS = Path(__file__).with_name("private_in_tests.txt")

MODULE_LINES = 400
FUNCTION_LINES = 60
FORBIDDEN_IN_KALLOC = ("kalloc_machine", "unicorn", "capstone", "emulator")
LONG_FUNCTION = re.compile(r"#[ \t]*long:[ \t]*\S")
LONG_MODULE = re.compile(r"^[ \t]*#[ \t]*long-module:[ \t]*\S", re.M)

# Underscore names of the standard library and third parties that have no public spelling.
FOREIGN_PRIVATE = {
    "_replace": "NamedTuple's documented API (typing.NamedTuple, collections.namedtuple)",
    "_asdict": "NamedTuple's documented API",
    "_fields": "NamedTuple's documented API",
    "_make": "NamedTuple's documented API",
    "_field_defaults": "NamedTuple's documented API",
    "_uch": "Unicorn binding's engine handle, no public spelling (rawmmio.py maps the doorbell raw)",
    "_hook_exception": "Unicorn binding's slot for a callback's exception (rawmmio.py's guard fills it)",
}


@dataclass(frozen=True)
class Source:
    path: Path
    text: str
    tree: ast.Module

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@cache
def parse(path: Path) -> Source:
    text = path.read_text()
    return Source(path, text, ast.parse(text, filename=str(path)))


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


# ---------------------------------------------------------------- 1. layers


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in the tree, nested ones and import_module("x") included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def layer_violations() -> list[str]:
    out = []
    for path in python_files(ROOT / "kalloc"):
        src = parse(path)
        if src.rel.startswith("kalloc/cli/"):
            continue
        for line, mod in imported_modules(src.tree):
            if mod.split(".")[0] in FORBIDDEN_IN_KALLOC:
                out.append(f"{src.rel}:{line}: imports {mod}")
    return out


def test_kalloc_imports_nothing_of_the_machine() -> None:
    bad = layer_violations()
    assert not bad, "kalloc/ (outside kalloc/cli/) must not import the machine:\n" + "\n".join(bad)


def test_the_layer_check_sees_lazy_imports() -> None:
    tree = ast.parse("def f():\n    import unicorn\n    from kalloc_machine.x import y\n"
                     "    importlib.import_module('capstone')\n")  # fmt: skip
    assert [m for _, m in imported_modules(tree)] == ["unicorn", "kalloc_machine.x", "capstone"]


def test_allocator_tests_run_without_the_machine() -> None:
    """`pytest tests/allocator tests/properties` imports neither Unicorn nor Capstone (plugin included)."""
    probe = (
        "import sys, pytest\n"
        "rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *sys.argv[1:]])\n"
        "print('PROBE', int(rc), sorted(m for m in ('unicorn', 'capstone') if m in sys.modules))\n"
    )
    argv = [sys.executable, "-c", probe, "tests/allocator", "tests/properties"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    last = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE")]
    assert last == ["PROBE 0 []"], out.stdout[-3000:] + out.stderr[-3000:]


# ---------------------------------------------------------------- 2. private names


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(tree: ast.AST) -> set[str]:
    """Every name the module itself defines or binds (defs, classes, assignments, attributes, args)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
    return names


def private_reaches(src: Source) -> list[str]:
    """`path:line: <what>` for every reach into another module's underscore name."""
    allowed = own_names(src.tree) | FOREIGN_PRIVATE.keys()
    out = []
    for node in ast.walk(src.tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if is_private(a.name):
                    out.append(f"{src.rel}:{node.lineno}: from {node.module or '.'} import {a.name}")
        elif isinstance(node, ast.Attribute) and is_private(node.attr) and node.attr not in allowed:
            out.append(f"{src.rel}:{node.lineno}: .{node.attr}")
    return out


def test_no_module_reaches_into_another_modules_private_names() -> None:
    bad = [v for p in python_files(*PRODUCT) for v in private_reaches(parse(p))]
    assert not bad, f"{len(bad)} reaches into other modules' underscore names:\n" + "\n".join(bad)


def listed_test_reaches() -> set[str]:
    if not TEST_EXCEPTIONS.exists():
        return set()
    lines = (ln.split("#")[0].strip() for ln in TEST_EXCEPTIONS.read_text().splitlines())
    return {ln for ln in lines if ln}


def reaches_in_test_file(path: Path) -> set[str]:
    """`path: .name` (no line numbers: the list must not churn with every edit) of one test file."""
    return {f"{v.split(':')[0]}: {v.split(': ', 1)[1]}" for v in private_reaches(parse(path))}


def test_tests_use_public_names_only() -> None:
    found = {r for p in python_files(TESTS) for r in reaches_in_test_file(p)}
    listed = listed_test_reaches()
    new, gone = sorted(found - listed), sorted(listed - found)
    if found & listed:
        warnings.warn(
            f"{len(found & listed)} listed reaches into underscore names remain in tests/ "
            f"({TEST_EXCEPTIONS.relative_to(ROOT)}):\n" + "\n".join(sorted(found & listed)),
            stacklevel=1,
        )
    assert not new, "tests reach into underscore names (use the public interface):\n" + "\n".join(new)
    assert not gone, f"fixed, now remove from {TEST_EXCEPTIONS.name}:\n" + "\n".join(gone)


def test_the_private_check_allows_own_names_only() -> None:
    code = (
        "from m import _hidden\n"
        "class A:\n"
        "    _k = 1\n"
        "    def __init__(self, other):\n"
        "        self._mine = other._mine\n"
        "        self.x = other._theirs + self._k + self.__dict__ + super()._base\n"
        "        self.c = self.caller._replace(site=0)\n"
    )
    src = Source(ROOT / "kalloc" / "x.py", code, ast.parse(code))
    assert sorted(private_reaches(src)) == [
        "kalloc/x.py:1: from m import _hidden",
        "kalloc/x.py:6: ._base",
        "kalloc/x.py:6: ._theirs",
    ]


# ---------------------------------------------------------------- 3. sizes


def size_violations() -> list[str]:
    out = []
    for path in python_files(*PRODUCT):
        src = parse(path)
        lines = src.text.splitlines()
        if len(lines) > MODULE_LINES and not LONG_MODULE.search(src.text):
            out.append(f"{src.rel}: module of {len(lines)} lines (> {MODULE_LINES}, no '# long-module:')")
        for node in ast.walk(src.tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            signature = lines[node.lineno - 1 : node.body[0].lineno - 1] or [lines[node.lineno - 1]]
            if n > FUNCTION_LINES and not any(LONG_FUNCTION.search(s) for s in signature):
                why = f"(> {FUNCTION_LINES}, no '# long:')"
                out.append(f"{src.rel}:{node.lineno}: {node.name}() of {n} lines {why}")
    return out


def test_modules_and_functions_are_short_or_say_why() -> None:
    bad = size_violations()
    assert not bad, f"{len(bad)} modules/functions over the limits:\n" + "\n".join(bad)


@pytest.mark.parametrize("marker", ["# long-module: generated tables", "    # long-module: x"])
def test_the_module_marker_is_a_comment_line(marker: str) -> None:
    assert LONG_MODULE.search(f'"""doc"""\n{marker}\nX = 1\n')
    assert not LONG_MODULE.search('"""doc"""\n# long-module:\nX = 1\n')  # a reason is required
