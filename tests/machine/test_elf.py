"""Firmware ELF loading: symbols, DWARF lines, disassembly, warnings, bad inputs."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from kalloc_machine.board import load_board
from kalloc_machine.elf import FirmwareError, load_firmware


def test_load_basic_facts(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "illegal.elf")
    assert fw.entry == 0x8000_0000
    assert fw.segments and all(s.paddr >= 0x8000_0000 for s in fw.segments)
    assert fw.image_end % 4096 == 0 and fw.image_end >= max(s.end for s in fw.segments)
    assert fw.warnings == []
    fw.check_fits(load_board("default"))


def test_symbols_and_lookup(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "illegal.elf")
    names = {name for _addr, _size, name in fw.symbols}
    assert {"_start", "main", "outer", "inner", "depth_reached"} <= names
    outer = fw.symbol_addr("outer")
    assert outer is not None
    assert fw.symbol_at(outer + 2) == ("outer", 2)
    assert fw.symbol_addr("no_such_symbol") is None


def test_symbolize_gives_function_file_and_line(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "illegal.elf")
    inner = fw.symbol_addr("inner")
    assert inner is not None
    # the c.unimp of line 7 is the only 16-bit zero in inner
    code = b"".join(s.data for s in fw.segments)
    pc = next(inner + i for i in range(0, 40, 2) if code[inner - 0x8000_0000 + i :][:2] == b"\0\0")
    loc = fw.symbolize(pc)
    assert (loc.symbol, loc.file, loc.line) == ("inner", "illegal.c", 7)
    assert str(loc).startswith("inner+0x")


def test_symbolize_the_first_row_of_a_sequence(tests_data: Path) -> None:
    """main is linked first but its line sequence comes last: its end_sequence row shares
    the address of inner's first row, which must still be found."""
    fw = load_firmware(tests_data / "illegal.elf")
    inner, main = fw.symbol_addr("inner"), fw.symbol_addr("main")
    assert inner is not None and main is not None and main < inner
    loc = fw.symbolize(inner)
    assert (loc.symbol, loc.offset, loc.file, loc.line) == ("inner", 0, "illegal.c", 5)


def test_symbolize_assembly_and_unknown_pcs(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "timer.elf")
    trap = fw.symbol_addr("trap")
    assert trap is not None
    loc = fw.symbolize(trap)
    assert loc.symbol == "trap" and loc.file == "timer.S" and loc.line is not None
    nowhere = fw.symbolize(0x1234)
    assert (nowhere.symbol, nowhere.file, nowhere.line) == (None, None, None)


def test_no_host_paths_in_file_names(tests_data: Path) -> None:
    for elf in tests_data.glob("*.elf"):
        fw = load_firmware(elf)
        for addr, _size, _name in fw.symbols:
            loc = fw.symbolize(addr)
            assert loc.file is None or not loc.file.startswith("/"), (elf.name, loc)


def test_disassemble(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "illegal.elf")
    assert fw.disassemble(0x8000_0000, b"\0\0") == "c.unimp"
    assert fw.disassemble(0x8000_0000, (0x0000_0073).to_bytes(4, "little")) == "ecall"
    assert fw.disassemble(0x8000_0000, b"\xff\xff\xff\xff").startswith(".word")


def test_wfi_sites_are_found(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "wfi.elf")
    assert fw.wfi_pcs == [fw.symbol_addr("sleep")]


def test_counter_csr_warnings(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "counters.elf")
    assert len(fw.warnings) == 2
    assert "rdcycle at main+0x0 reads a host counter" in fw.warnings[0]
    assert "rdtime at read_time+0x0 is illegal on this machine" in fw.warnings[1]


def test_load_is_fast(tests_data: Path) -> None:
    start = time.perf_counter()
    for _ in range(10):
        fw = load_firmware(tests_data / "illegal.elf")
        fw.symbolize(fw.entry)
    assert (time.perf_counter() - start) / 10 < 0.2


# -- bad inputs: one-line FirmwareError ---------------------------------------------------------


def error_of(path: Path | str) -> str:
    with pytest.raises(FirmwareError) as info:
        load_firmware(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_not_a_file(tmp_path: Path) -> None:
    assert error_of(tmp_path).endswith(": not a file")
    assert error_of(tmp_path / "absent.elf").endswith(": not a file")


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    assert error_of(p) == "notes.txt: not an ELF file"


def test_other_architecture(tmp_path: Path) -> None:
    ls = shutil.which("ls")
    assert ls is not None
    msg = error_of(ls)
    assert "not 32-bit RISC-V" in msg and "x64" in msg


@pytest.mark.parametrize("cut", [20, 60, 300, 1000])
def test_truncated_file(tests_data: Path, tmp_path: Path, cut: int) -> None:
    p = tmp_path / "cut.elf"
    p.write_bytes((tests_data / "illegal.elf").read_bytes()[:cut])
    msg = error_of(p)
    assert msg.startswith("cut.elf: ") and ("truncated" in msg or "malformed" in msg or "segments" in msg)


def test_not_an_executable(tests_data: Path, tmp_path: Path) -> None:
    raw = bytearray((tests_data / "exit.elf").read_bytes())
    raw[16:18] = (1).to_bytes(2, "little")  # e_type = ET_REL
    p = tmp_path / "obj.o"
    p.write_bytes(raw)
    assert error_of(p) == "obj.o: not an executable (e_type ET_REL)"


def test_no_loadable_segments(tests_data: Path, tmp_path: Path) -> None:
    raw = bytearray((tests_data / "exit.elf").read_bytes())
    raw[44:46] = (0).to_bytes(2, "little")  # e_phnum = 0
    p = tmp_path / "empty.elf"
    p.write_bytes(raw)
    assert error_of(p) == "empty.elf: no loadable segments"


def test_segment_outside_ram(tests_data: Path, tmp_path: Path) -> None:
    raw = bytearray((tests_data / "exit.elf").read_bytes())
    phoff = int.from_bytes(raw[28:32], "little")
    raw[phoff + 8 : phoff + 16] = (0x4000_0000).to_bytes(4, "little") * 2  # p_vaddr, p_paddr
    p = tmp_path / "low.elf"
    p.write_bytes(raw)
    fw = load_firmware(p)
    with pytest.raises(FirmwareError) as info:
        fw.check_fits(load_board("default"))
    # exit.elf is bare assembly, no SDK: the message says so, and still names the segment
    msg = str(info.value)
    assert msg.startswith("low.elf: this ELF was not linked with the kalloc SDK: no `__kalloc_api_start`")
    assert "(segment [0x40000000, 0x400" in msg
    assert ") is outside RAM of board 'default'); link it with `kalloc sdk --ldflags --libs`" in msg


def test_a_firmware_runs_only_on_a_board_of_its_isa(tests_data: Path) -> None:
    fw = load_firmware(tests_data / "illegal.elf")
    assert fw.isa.name == "rv32imac"
    board = load_board("default")
    other = dataclasses.replace(board, cpu=dataclasses.replace(board.cpu, isa="cortex-m0"))
    with pytest.raises(FirmwareError, match=r"illegal\.elf: read for rv32imac, board 'default' is cortex-m0"):
        fw.check_fits(other)
