"""A firmware built without the kalloc SDK (a forgotten flag) gets one clear line, never a confusing fault.

Built here with the cross toolchain (skipped without it): linking with the SDK's linker
script but without its library (`--ldflags` without `--libs`), or without --whole-archive,
stops at link time with one line (link.ld's check); a plain picolibc program (picolibc's
crt0 and memory map) or one linked with a linker script lacking that check, which used to
start at a data address and end in an illegal-instruction cpu-fault (status 65), is one
line from `kalloc run`, status 3.
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


LINK_MSG = "kalloc: this ELF was not linked with the kalloc SDK library, whole: link `kalloc sdk --libs`"


def link_fails(tmp_path: Path, *flags: str) -> str:
    src = tmp_path / "plain.c"
    src.write_text(PROGRAM)
    cmd = [GCC, *flags[:-1], "-O2", str(src), "-o", str(tmp_path / "x.elf"), flags[-1]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    return proc.stderr


@needs_gcc
def test_linking_without_the_sdk_library_stops_at_link_time_and_says_why(tmp_path):
    assert LINK_MSG in link_fails(tmp_path, *sdk("--cflags", "--ldflags"), "-lm")  # --libs forgotten


@needs_gcc
def test_linking_the_sdk_library_not_whole_stops_at_link_time_and_says_why(tmp_path):
    lib = sdk("--libs")[1]  # the archive without -Wl,--whole-archive around it
    assert LINK_MSG in link_fails(tmp_path, *sdk("--cflags", "--ldflags"), lib)


@needs_gcc
def test_linker_script_without_the_sdk_library_is_one_line_not_a_cpu_fault(tmp_path):
    """A linker script of the SDK's layout without the link-time check (an older SDK's or a
    project's own copy), and no SDK library: the run says what is missing."""
    script = tmp_path / "old_link.ld"
    script.write_text("".join(line for line in Path(sdk("--linker-script")[0]).read_text().splitlines(True)
                              if "DEFINED(stdout)" not in line))  # fmt: skip
    flags = sdk("--cflags", "--ldflags")
    flags[flags.index("-T") + 1] = str(script)
    elf = build(tmp_path, *flags)  # --libs forgotten
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
