"""Boards: the shipped files load, and every broken invariant is a one-line BoardError."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine import memlayout as ml
from kalloc_machine.board import BOARDS_DIR, BoardError, list_boards, load_board, parse_board, parse_size


def default_doc() -> dict[str, Any]:
    return tomllib.loads((BOARDS_DIR / "default.toml").read_text())


def broken(mutate: Any) -> str:
    """The BoardError message for the default board after `mutate(doc)`."""
    doc = copy.deepcopy(default_doc())
    mutate(doc)
    with pytest.raises(BoardError) as info:
        parse_board(doc, "test.toml")
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def device(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(d for d in doc["device"] if d["type"] == type_)


# -- shipped boards ------------------------------------------------------------------------


def test_list_boards_names_the_shipped_boards() -> None:
    boards = dict(list_boards())
    assert {"default", "tiny", "big"} <= set(boards)
    assert all(boards.values())


@pytest.mark.parametrize("name", ["default", "tiny", "big"])
def test_shipped_boards_share_the_fixed_map(name: str) -> None:
    b = load_board(name)
    assert b.name == name
    assert any(bank.base == ml.RAM_BASE for bank in b.ram)
    assert any(bank.dma for bank in b.ram) and any(not bank.dma for bank in b.ram)
    places = {"uart": ml.UART_BASE, "clint": ml.CLINT_BASE, "intc": ml.INTC_BASE, "dma": ml.DMA_BASE}
    for type_, base in places.items():
        dev = b.device(type_)
        assert dev is not None and dev.base == base
    assert b.dma_rules.boundary == 65536
    assert b.test_irq == 31


def test_default_board_has_a_bank_the_dma_engine_cannot_reach() -> None:
    b = load_board("default")
    assert b.ram_size == 16 << 20
    master = b.dma_master()
    assert master is not None
    dma_bank = next(r for r in b.ram if r.dma)
    other = next(r for r in b.ram if not r.dma)
    assert dma_bank.base == ml.RAM_BASE and dma_bank.size == 4 << 20
    assert master.reaches(dma_bank.base, dma_bank.size)
    assert not master.reaches(other.base, 1)


def test_sizes_of_tiny_and_big() -> None:
    assert load_board("tiny").ram_size == 256 << 10
    big = load_board("big")
    assert big.ram_size == 1 << 30
    assert big.ram_end <= ml.VMALLOC_START


def test_load_board_by_path(tmp_path: Path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text((BOARDS_DIR / "tiny.toml").read_text().replace('name = "tiny"', 'name = "mine"'))
    assert load_board(str(p)).name == "mine"


def test_parse_size() -> None:
    assert parse_size("4MiB", "x") == 4 << 20
    assert parse_size("256KiB", "x") == 256 << 10
    assert parse_size("1G", "x") == 1 << 30
    assert parse_size("0x1000", "x") == 4096
    assert parse_size(12, "x") == 12
    with pytest.raises(BoardError, match="expected a size"):
        parse_size("lots", "x")


# -- file-level errors -----------------------------------------------------------------------


def test_unknown_board_name() -> None:
    shipped = "big, default, stm32f4, tiny"
    with pytest.raises(BoardError, match=rf"unknown board 'nope' \(shipped boards: {shipped}\)"):
        load_board("nope")


def test_missing_board_file(tmp_path: Path) -> None:
    with pytest.raises(BoardError, match="no such board file"):
        load_board(str(tmp_path / "absent.toml"))


def test_bad_toml(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("name = \n[[ram]\n")
    with pytest.raises(BoardError, match="bad TOML"):
        load_board(str(p))


# -- each invariant ------------------------------------------------------------------------------


def test_missing_field() -> None:
    assert broken(lambda d: d.pop("description")) == "test.toml: missing field 'description'"
    assert broken(lambda d: d["ram"][1].pop("size")) == "test.toml: ram bank 'ccm': missing field 'size'"
    msg = broken(lambda d: device(d, "uart").pop("base"))
    assert msg == "test.toml: device 'uart0': missing field 'base'"


def test_overlapping_banks() -> None:
    msg = broken(lambda d: d["ram"][1].update(base=0x8020_0000))
    assert msg == "test.toml: RAM banks 'dma' and 'ccm' overlap"


def test_bank_outside_ram_space() -> None:
    assert "is outside RAM space" in broken(lambda d: d["ram"][1].update(base=0x4000_0000))
    assert "is outside RAM space" in broken(lambda d: d["ram"][1].update(base=0xBFF0_0000))


def test_no_bank_at_ram_base() -> None:
    def move(d: dict[str, Any]) -> None:
        d["ram"][0]["base"] = 0x8800_0000
        d["dma_master"][0]["windows"] = [[0x8800_0000, "4MiB"]]

    assert broken(move) == "test.toml: no RAM bank at RAM_BASE 0x80000000 (firmware loads there)"


def test_bank_size_not_a_page_multiple() -> None:
    msg = broken(lambda d: d["ram"][1].update(size=5000))
    assert msg == "test.toml: ram bank 'ccm': size 0x1388 is not a positive multiple of the page size"


def test_bank_base_not_page_aligned() -> None:
    assert "is not page-aligned" in broken(lambda d: d["ram"][1].update(base=0x9000_0800))


def test_device_overlapping_ram() -> None:
    msg = broken(lambda d: device(d, "uart").update(base=0x8000_0000))
    assert msg == "test.toml: device 'uart0': window overlaps RAM bank 'dma'"


def test_devices_overlapping_each_other() -> None:
    msg = broken(lambda d: device(d, "dma").update(base=ml.UART_BASE))
    assert msg == "test.toml: devices 'uart0' and 'dma0' overlap"


def test_device_overlapping_the_doorbells() -> None:
    msg = broken(lambda d: device(d, "uart").update(base=ml.DOORBELL_BASE))
    assert "overlaps the hypercall doorbells" in msg


def test_unknown_device_type() -> None:
    msg = broken(lambda d: device(d, "uart").update(type="gpu"))
    assert msg.startswith("test.toml: device 'uart0': unknown device type 'gpu' (known: uart, clint")


def test_unknown_attribute() -> None:
    msg = broken(lambda d: d["ram"][1].update(attributes=["fast"]))
    assert msg == "test.toml: ram bank 'ccm': unknown attribute 'fast' (known: dma)"


def test_dma_bank_the_master_cannot_reach() -> None:
    msg = broken(lambda d: d["ram"][1].update(attributes=["dma"]))
    assert msg == "test.toml: ram bank 'ccm' is marked dma but DMA master 'dma0' cannot reach all of it"


def test_device_too_small() -> None:
    assert "too small for a dma" in broken(lambda d: device(d, "dma").update(size=0x0))


def test_irq_lines() -> None:
    assert "is not an intc line (1..31)" in broken(lambda d: device(d, "dma").update(irq=40))
    assert "is already the test line" in broken(lambda d: device(d, "dma").update(irq=31))
    assert "must not be an intc line" in broken(lambda d: device(d, "clint").update(irq=3))


def test_irq_needs_an_intc() -> None:
    def drop(d: dict[str, Any]) -> None:
        d["device"] = [x for x in d["device"] if x["type"] != "intc"]

    assert broken(drop) == "test.toml: device 'dma0': has irq 1 but the board has no intc"


def test_too_many_banks() -> None:
    def add(d: dict[str, Any]) -> None:
        d["ram"] += [{"name": f"x{i}", "base": 0xA000_0000 + i * 0x100_0000, "size": 4096} for i in range(3)]

    assert "at most 4 fit in bootinfo" in broken(add)


def test_boundary_must_be_a_power_of_two() -> None:
    assert "is not a power of two" in broken(lambda d: d["dma_engine"].update(boundary=1000))


def test_unknown_master() -> None:
    assert "is not a [[dma_master]]" in broken(lambda d: d["dma_engine"].update(master="nobody"))


def test_unknown_isa() -> None:
    assert "isa 'x86' is not supported" in broken(lambda d: d["cpu"].update(isa="x86"))
