"""A firmware built without the kalloc SDK (a forgotten flag) gets one clear line, never a confusing fault.

Two ways to get it wrong, both built here with the cross toolchain (skipped without it):
a plain picolibc program (picolibc's crt0 and memory map), and one linked with the SDK's
linker script but without its library (`kalloc sdk --ldflags` without `--libs`), which
used to start at a data address and end in an illegal-instruction cpu-fault (status 65).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.board import load_board
from kalloc_machine.elf import load_firmware

from kalloc.cli import main

GCC = "riscv64-unknown-elf-gcc"
DATA = Path(__file__).resolve().parents[1] / "data"
PROGRAM = "#include <stdlib.h>\nint main(void) { char *volatile p = malloc(10); free(p); return 0; }\n"


def sdk(*args: str) -> list[str]:
    return shlex.split(CliRunner().invoke(main, ["sdk", *args], catch_exceptions=False).output)


def build(tmp_path: Path, *flags: str) -> Path:
    src, elf = tmp_path / "plain.c", tmp_path / "plain.elf"
    src.write_text(PROGRAM)
    cmd = [GCC, *flags, "-O2", str(src), "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return elf


def run(elf: Path):
    return CliRunner().invoke(main, ["run", "-q", str(elf)])


needs_gcc = pytest.mark.skipif(shutil.which(GCC) is None, reason="cross toolchain not installed")


@needs_gcc
def test_plain_picolibc_elf_is_one_line_naming_the_missing_sdk(tmp_path):
    elf = build(tmp_path, "-march=rv32imac", "-mabi=ilp32", "--specs=picolibc.specs")
    res = run(elf)
    assert res.exit_code == 3
    [line] = res.output.strip().splitlines()
    assert "this ELF was not linked with the kalloc SDK: no `__kalloc_api_start`" in line
    assert "kalloc sdk --ldflags --libs" in line and "is outside RAM" in line


@needs_gcc
def test_linker_script_without_the_sdk_library_is_one_line_not_a_cpu_fault(tmp_path):
    elf = build(tmp_path, *sdk("--cflags", "--ldflags"))  # --libs forgotten
    res = run(elf)
    assert res.exit_code == 3  # was 65: an illegal instruction at 0x80000000
    [line] = res.output.strip().splitlines()
    assert "this ELF was not linked with the kalloc SDK library" in line
    assert "entry point 0x80000000 is not code" in line


@needs_gcc
def test_the_same_program_linked_with_the_sdk_runs(tmp_path):
    elf = build(tmp_path, *sdk("--cflags", "--ldflags", "--libs"))
    assert load_firmware(elf).sdk_missing() is None
    assert run(elf).exit_code == 0


def test_bare_metal_programs_without_the_sdk_still_load():
    """tests/data's assembler programs talk to the machine directly: no SDK, and that is fine."""
    board = load_board("default")
    for elf in sorted(DATA.glob("*.elf")):
        fw = load_firmware(elf)
        assert fw.sdk_missing() is not None
        fw.check_fits(board)  # no FirmwareError
