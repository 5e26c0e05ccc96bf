"""Where the firmware SDK and the prebuilt ELFs are: in a checkout or inside the wheel.

A checkout keeps them in `firmware/` beside the packages; a wheel carries the
same tree as `kalloc_machine/_firmware` (pyproject.toml force-includes it).

Invariants:
 1. `sdk_dir()` always names a directory holding `include/kalloc.h` and `Makefile`.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def sdk_dir() -> Path:
    """The SDK root (the directory `make -C` builds in)."""
    for candidate in (_HERE / "_firmware", _HERE.parents[1] / "firmware"):
        if (candidate / "include" / "kalloc.h").is_file():
            return candidate
    raise FileNotFoundError("the kalloc firmware SDK is missing from this installation")


def prebuilt(name: str) -> Path:
    """A shipped ELF by name: "demo" or "tests/hello"."""
    return sdk_dir() / "build" / f"{name}.elf"


def default_firmware() -> Path:
    """The main job's demo firmware."""
    return prebuilt("demo")
