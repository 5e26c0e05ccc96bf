"""Where the firmware SDK and the prebuilt ELFs are: in a checkout or inside the wheel.

A checkout keeps them in `firmware/` beside the packages; a wheel carries the
same tree as `kalloc_machine/_firmware` (pyproject.toml force-includes it).

What a build system needs to compile and link against the SDK (flags, linker
script, library) is written once, in the pkg-config files `pkgconfig/kalloc.pc`
and `pkgconfig/kalloc-kasan.pc` of the SDK; `build_flags()` reads them, so
`kalloc sdk --cflags` and `pkg-config --cflags kalloc` never disagree.

Invariants:
 1. `sdk_dir()` always names a directory holding `include/kalloc.h` and `Makefile`.
 2. Every path `build_flags()` returns is absolute and normalized (no `..`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent

# The targets the SDK is built for; the first is the default (pkgconfig/kalloc[-ARCH][-kasan].pc each).
ARCHES = ("rv32imac", "armv7m")
# Where each ISA's shipped ELFs are, under build/ (`make -C firmware ARCH=armv7m` writes build/armv7m/).
ARCH_BUILD = {"rv32imac": "", "armv7m": "armv7m"}


def sdk_dir() -> Path:
    """The SDK root (the directory `make -C` builds in)."""
    for candidate in (_HERE / "_firmware", _HERE.parents[1] / "firmware"):
        if (candidate / "include" / "kalloc.h").is_file():
            return candidate
    raise FileNotFoundError("the kalloc firmware SDK is missing from this installation")


def prebuilt(name: str, isa: str | None = None) -> Path:
    """A shipped ELF by name: "demo" or "tests/hello" (for `isa`'s boards; default RV32)."""
    return sdk_dir() / "build" / ARCH_BUILD.get(isa or "", "") / f"{name}.elf"


def default_firmware(isa: str | None = None) -> Path:
    """The main job's demo firmware (the one built for `isa`)."""
    return prebuilt("demo", isa)


def resolve_firmware(firmware: str | Path | None, isa: str | None = None) -> Path:
    """The ELF a run loads, for every front end (`kalloc run`, the pytest plugin, the harness).

    The shipped demo when none is given; a path that exists wins; else a shipped ELF of that
    name ("demo", "tests/hello", ".elf" optional). FileNotFoundError with a one-line message
    naming where it looked when nothing matches. Shipped names are looked up among the ELFs
    built for `isa` (the board's: build/armv7m/ for a Cortex-M board).
    """
    if not firmware:
        return default_firmware(isa)
    path = Path(firmware)
    if path.exists():
        return path
    looked = [str(path.absolute())]
    stem = str(firmware).removesuffix(".elf")
    if not path.is_absolute() and ".." not in Path(stem).parts:
        try:
            shipped = prebuilt(stem, isa)
        except FileNotFoundError:  # no SDK in this installation: only the path was possible
            shipped = None
        if shipped is not None and shipped.is_file():
            return shipped
        if shipped is not None:
            looked.append(str(shipped))
    raise FileNotFoundError(f"{firmware}: no such file, and no shipped firmware of that name "
                            f"(looked for {' and '.join(looked)})")  # fmt: skip


def pkg_config_dir() -> Path:
    """The directory holding kalloc.pc and kalloc-kasan.pc (for PKG_CONFIG_PATH)."""
    return sdk_dir() / "pkgconfig"


@dataclass(frozen=True)
class BuildFlags:
    """What a build system needs, for one arch and variant (plain or compiled KASAN)."""

    prefix: Path
    include_dir: Path
    linker_script: Path
    library: Path
    cflags: str
    ldflags: str
    libs: str


def pc_name(arch: str = ARCHES[0], kasan: bool = False) -> str:
    """The pkg-config package name: kalloc, kalloc-kasan (another arch: kalloc-<arch>...)."""
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})")
    base = "kalloc" if arch == ARCHES[0] else f"kalloc-{arch}"
    return base + ("-kasan" if kasan else "")


_REF = re.compile(r"\$\{(\w+)\}")


def read_pc(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A .pc file's variables and fields, `${...}` expanded (`pcfiledir` = its directory)."""
    variables = {"pcfiledir": str(path.parent)}
    fields: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"([\w.]+)\s*([=:])\s*(.*)$", line)
        if not m:
            continue
        name, sep, value = m.groups()
        value = _REF.sub(lambda r: variables.get(r[1], ""), value)
        if sep == "=":
            variables[name] = os.path.normpath(value) if name == "prefix" else value
        else:
            fields[name] = value
    return variables, fields


def build_flags(arch: str = ARCHES[0], kasan: bool = False) -> BuildFlags:
    """The flags, paths and library of one arch and variant, from its .pc file."""
    variables, _fields = read_pc(pkg_config_dir() / f"{pc_name(arch, kasan)}.pc")
    lib = "libkalloc_sdk_kasan.a" if kasan else "libkalloc_sdk.a"
    return BuildFlags(
        prefix=Path(variables["prefix"]),
        include_dir=Path(variables["includedir"]),
        linker_script=Path(variables["linker_script"]),
        library=Path(variables["libdir"]) / lib,
        cflags=variables["cflags"],
        ldflags=variables["ldflags"],
        libs=variables["sdk_libs"],
    )
