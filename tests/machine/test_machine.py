"""The machine end to end with the tiny programs of tests/data (prebuilt, see build.sh)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.board import load_board
from kalloc_machine.bridge import abi
from kalloc_machine.elf import load_firmware
from kalloc_machine.isa import ISAS, Isa, isa_for
from kalloc_machine.isa.rv32 import RiscV32, walk_frames
from kalloc_machine.machine import Machine, RunResult

from kalloc.errors import BadArgumentError, CpuFaultError, KallocError

DATA = Path(__file__).resolve().parents[1] / "data"


def machine(name: str, board: str = "default", **options: Any) -> Machine:
    options.setdefault("max_instructions", 20_000_000)
    return Machine(load_board(board), load_firmware(DATA / f"{name}.elf"), **options)


def run(name: str, board: str = "default", **options: Any) -> RunResult:
    return machine(name, board, **options).run()


def symbols(m: Machine, pcs: list[int]) -> list[str | None]:
    return [m.firmware.symbolize(pc).symbol for pc in pcs]


def test_exit_code_and_exact_instruction_count() -> None:
    r = run("exit")
    assert (r.reason, r.exit_code, r.errors) == ("exit", 7, [])
    # _start: la (2) + li + call; main: li + ret; li a7 + ecall
    assert r.instructions == 8 and r.exact


def test_uart_output() -> None:
    m = machine("uart")
    r = m.run()
    assert r.reason == "exit" and r.exit_code == 0
    assert r.uart == "hello from the uart\n" == m.uart_output()


@pytest.mark.parametrize("board", ["tiny", "big"])
def test_runs_on_every_board(board: str) -> None:
    start = time.perf_counter()
    r = run("uart", board)
    assert r.uart == "hello from the uart\n"
    assert time.perf_counter() - start < 2.0


def test_phys_is_the_memory_the_cpu_sees() -> None:
    m = machine("exit")
    main = m.firmware.symbol_addr("main")
    assert main is not None
    m.phys.write(main, (0x4555).to_bytes(2, "little"))  # c.li a0, 21
    r = m.run()
    assert r.exit_code == 21


def test_illegal_instruction_report() -> None:
    m = machine("illegal")
    r = m.run()
    assert r.reason == "fault" and r.exit_code is None
    (err,) = r.errors
    assert isinstance(err, CpuFaultError) and err.kind == "cpu-fault"
    assert err.message == "illegal instruction: c.unimp"
    f = err.fields
    assert f["instruction"] == "c.unimp"
    loc = m.firmware.symbolize(f["pc"])
    assert (loc.symbol, loc.file, loc.line) == ("inner", "illegal.c", 7)
    assert symbols(m, f["backtrace"]) == ["inner", "outer", "main", "_start"]
    assert f["registers"]["pc"] == f["pc"] and "sp" in f["registers"] and "a0" in f["registers"]


def test_illegal_rdtime_is_a_fault() -> None:
    m = machine("counters")
    r = m.run()
    assert r.reason == "fault"
    assert r.errors[0].fields["instruction"] == "rdtime t1"
    assert r.errors[0].fields["pc"] == m.firmware.symbol_addr("read_time")


def test_load_from_unmapped_address() -> None:
    m = machine("unmapped")
    r = m.run()
    # exact (issue 13): _start's 4 instructions, main's li and the faulting lw
    assert r.reason == "fault" and r.exact and r.instructions == 6
    (err,) = r.errors
    assert err.message == "read of 4 bytes at unmapped address 0x100"
    assert err.addr == 0x100
    assert err.fields["access"] == {"type": "read", "addr": 0x100, "size": 4}
    assert err.fields["pc"] == m.firmware.symbol_addr("bad_load")
    assert err.fields["instruction"] == "lw a0, 0(t1)"
    assert symbols(m, err.fields["backtrace"])[:2] == ["bad_load", "_start"]


def test_jump_into_nowhere() -> None:
    m = machine("jump")
    r = m.run()
    assert r.reason == "fault"
    (err,) = r.errors
    assert err.message.startswith("instruction fetch from unmapped address 0x40000000: nothing is there")
    assert r.exact and r.instructions == 10  # _start's 4, main's 5 and the jalr; the fetch never ran
    assert err.fields["access"]["type"] == "fetch"
    assert symbols(m, err.fields["backtrace"][1:]) == ["wild_jump", "_start"]


def test_panic() -> None:
    m = machine("ecalls")
    r = m.run()
    assert r.reason == "panic"
    (err,) = r.errors
    assert err.kind == "cpu-fault" and err.message == "firmware panic: the sky is falling"
    assert err.fields["pc"] == m.firmware.symbol_addr("do_ecall")


def test_unknown_ecall_is_fatal() -> None:
    m = machine("ecalls")
    nr = m.firmware.symbol_addr("ecall_nr")
    assert nr is not None
    m.phys.write_u32(nr, 1234)
    r = m.run()
    assert r.reason == "fatal"
    (err,) = r.errors
    assert err.kind == "bad-hypercall" and err.message.startswith("ecall number 1234 does not exist")


def test_infinite_loop_hits_the_budget() -> None:
    m = machine("loop", max_instructions=300_000)
    r = m.run()
    assert r.reason == "budget" and r.instructions == 300_000
    (err,) = r.errors
    assert err.kind == "timeout" and err.message == "instruction budget exhausted (300000)"
    assert err.fields["pc"] == m.firmware.symbol_addr("spin")


def test_wall_clock_timeout() -> None:
    r = run("loop", max_instructions=10**12, timeout_s=0.05)
    assert r.reason == "timeout"
    assert r.errors[0].kind == "timeout" and "wall-clock" in r.errors[0].message


def test_timer_interrupt_reaches_the_mtvec_handler() -> None:
    r = run("timer")
    assert (r.reason, r.exit_code) == ("exit", 0)  # the firmware checked mcause and the count
    assert r.irq_counts == {0: 1}


def test_wfi_fast_forwards_to_the_timer() -> None:
    start = time.perf_counter()
    r = run("wfi")
    assert (r.reason, r.exit_code) == ("exit", 0)
    assert r.instructions > 1_000_000 and r.idle > 990_000
    assert time.perf_counter() - start < 1.0


def test_wfi_with_nothing_to_wake_it() -> None:
    m = machine("wfi_dead")
    r = m.run()
    assert r.reason == "wfi"
    (err,) = r.errors
    assert err.kind == "timeout" and err.message.startswith("wfi with nothing to wake it")
    assert err.fields["pc"] == m.firmware.symbol_addr("sleep_forever")


def dma_run(
    dst: int | None = None, length: int | None = None, check: Any = None
) -> tuple[Machine, RunResult]:
    m = machine("dma")
    for sym, value in (("dma_dst", dst), ("dma_len", length)):
        addr = m.firmware.symbol_addr(sym)
        assert addr is not None
        if value is not None:
            m.phys.write_u32(addr, value)
    if check is not None:
        assert m.dma is not None
        m.dma.check = check
    return m, m.run()


def test_dma_copy_and_completion_interrupt() -> None:
    """Three transfers, each waited for with the SDK's idle loop (wfi; csrsi; csrci): the
    pending interrupt must get in through a window of one instruction."""
    m, r = dma_run()
    assert (r.reason, r.exit_code, r.errors) == ("exit", 0, [])  # firmware verified the data
    assert r.irq_counts == {1: 3} and r.irq_raised == {1: 3}
    assert len(r.dma_transfers) == 3
    for t in r.dma_transfers:
        assert t["status"] == "done" and t["len"] == 256 and t["done"] - t["started"] == 256
    assert m.phys.read_u32(0x8020_0000) == 0xA500_0000
    assert m.phys.read_u32(0x8020_00FC) == 0xA500_003F


def test_dma_to_unreachable_memory() -> None:
    m, r = dma_run(dst=0x9000_0000)
    assert r.exit_code == 3  # the engine's status said error
    (err,) = r.errors
    assert err.kind == "dma-unreachable" and err.addr == 0x9000_0000
    assert err.fields["direction"] == "write" and err.fields["length"] == 256
    assert m.phys.read_u32(0x9000_0000) == 0  # nothing was copied


def test_dma_across_a_64k_boundary() -> None:
    _m, r = dma_run(dst=0x8000_FF80)
    assert r.exit_code == 3
    (err,) = r.errors
    assert err.kind == "dma-boundary" and err.fields["crossing"] == 0x8001_0000


def test_dma_check_hook_is_pluggable() -> None:
    seen: list[tuple[int, int, bool]] = []

    def refuse(addr: int, length: int, is_write: bool) -> bool:
        seen.append((addr, length, is_write))
        return False

    _m, r = dma_run(check=refuse)
    assert r.exit_code == 3 and r.errors == []  # the composer's hook reports, not the engine
    assert seen == [(0x8020_0000, 256, True)]  # the device-buffer side is not RAM: not asked


def test_doorbell_reaches_on_hypercall() -> None:
    m = machine("doorbell")
    calls: list[tuple[int, int]] = []

    def handler(service: int, block: int) -> None:
        calls.append((service, block))
        assert m.phys.read_u32(block + abi.OFF_ARGS) == 1234
        m.phys.write_u32(block + abi.OFF_RESULT, 42)

    m.on_hypercall = handler
    r = m.run()
    assert (r.reason, r.exit_code) == ("exit", 42)
    ((service, block),) = calls
    assert service == 5 and m.phys.contains(block, abi.BLOCK_SIZE)


def test_doorbell_without_a_handler_is_reported() -> None:
    r = run("doorbell")
    assert r.reason == "exit"
    assert [e.message for e in r.errors] == [r.errors[0].message]
    assert "no hypercall handler" in r.errors[0].message


def test_fatal_from_a_hypercall_ends_the_run() -> None:
    m = machine("doorbell")
    m.on_hypercall = lambda service, block: m.fatal(BadArgumentError("bad block", addr=block))
    r = m.run()
    assert r.reason == "fatal" and r.exit_code is None and r.exact  # ends through the sled (issue 13)
    assert [e.message for e in r.errors] == ["bad block"]


def test_injected_interrupts_are_deterministic_under_a_seed() -> None:
    def fired(seed: int) -> tuple[list[int], RunResult]:
        m = machine("irqcount", irq_every=20_000, irq_jitter=5_000, seed=seed)
        r = m.run()
        assert m.injector is not None
        return m.injector.fired, r

    a, ra = fired(1)
    b, _ = fired(1)
    c, _ = fired(2)
    assert a == b and a != c
    assert ra.exit_code == len(a) == ra.irq_counts[31]  # the firmware counted every one
    assert 10 <= len(a) <= 15
    assert all(k * 20_000 <= t <= k * 20_000 + 5_000 for k, t in enumerate(a, 1))


def test_irq_at() -> None:
    m = machine("irqcount", irq_at=[1000, 50_000, 50_000, 10**9])
    r = m.run()
    assert r.exit_code == 2 and m.injector is not None and m.injector.fired == [1000, 50_000]


def comparable(r: RunResult) -> tuple[Any, ...]:
    def err(e: KallocError) -> tuple[Any, ...]:
        return (e.kind, e.message, e.addr, repr(sorted(e.fields.items())))

    return (r.exit_code, r.reason, r.instructions, r.uart, [err(e) for e in r.errors], r.irq_counts,
            r.idle, r.exact, r.irq_raised, r.dma_transfers)  # fmt: skip


@pytest.mark.parametrize("name", ["timer", "dma", "illegal", "irqcount"])
def test_determinism(name: str) -> None:
    opts: dict[str, Any] = {"irq_every": 7_000, "irq_jitter": 3_000, "seed": 5} if name == "irqcount" else {}
    assert comparable(run(name, **opts)) == comparable(run(name, **opts))


def test_a_machine_runs_once() -> None:
    m = machine("exit")
    m.run()
    with pytest.raises(RuntimeError):
        m.run()


def test_interrupt_entry_follows_the_spec() -> None:
    m = machine("exit")
    isa, uc = m.isa, m.uc
    from unicorn import riscv_const as rc

    uc.reg_write(rc.UC_RISCV_REG_MTVEC, 0x8000_0101)  # vectored
    uc.reg_write(rc.UC_RISCV_REG_MSTATUS, 0x8)
    target = isa.enter_interrupt(uc, 0x8000_0007)
    assert target == 0x8000_0100 + 4 * 7 == isa.pc(uc)
    csrs = isa.read_csrs(uc)
    assert csrs["mepc"] == 0x8000_0000 and csrs["mcause"] == 0x8000_0007
    assert csrs["mstatus"] & 0x8 == 0 and csrs["mstatus"] & 0x80 and csrs["mstatus"] & 0x1800 == 0x1800


def test_backtrace_walk_stops_on_garbage() -> None:
    mem = {0x1000 - 4: 0x8000_0010, 0x1000 - 8: 0x2000, 0x2000 - 4: 0x8000_0020, 0x2000 - 8: 0x1800}

    def read(addr: int) -> int:
        if addr not in mem:
            raise ValueError("not RAM")
        return mem[addr]

    assert walk_frames(read, 0x8000_0000, 0, 0x1000) == [0x8000_0000, 0x8000_0010, 0x8000_0020]
    assert walk_frames(read, 0x8000_0000, 0x8000_0044, 0) == [0x8000_0000, 0x8000_0044]
    assert walk_frames(read, 0x8000_0000, 0, 0x1002) == [0x8000_0000]
    assert len(walk_frames(read, 1, 0, 0x1000, depth=2)) == 2
    # the interface method takes the registers by name (ra, s0 on RISC-V)
    isa: Isa = RiscV32()
    frames = isa.backtrace(read, 0x8000_0000, {"ra": 0, "s0": 0x1000})
    assert frames == [0x8000_0000, 0x8000_0010, 0x8000_0020]


def test_isa_for_picks_the_board_isa() -> None:
    assert list(ISAS) == ["rv32imac", "armv7m"] and isinstance(isa_for("rv32imac"), RiscV32)
    assert isa_for() is not isa_for()  # one instance per machine: patching one leaves the others
    with pytest.raises(ValueError, match="not supported"):
        isa_for("cortex-m0")


def test_rv32_encodings() -> None:
    isa = RiscV32()
    sled = isa.idle_sled(0x1000, 4)
    assert isa.disassemble(0x1000, sled[:4]) == "addi t6, t6, 1"  # the lap counter (sled.py)
    assert sled[4:12] == (0x0000_0013).to_bytes(4, "little") * 2
    assert sled[12:] == (0xFF5F_F06F).to_bytes(4, "little")  # jal x0, -12
    assert isa.disassemble(0, isa.idle_mark).startswith(".word")  # the wfi mark is no instruction
    assert isa.insn_size(b"\x13\x00") == 4 and isa.insn_size(b"\x01\x00") == 2
    assert isa.disassemble(0, (0x0000_0073).to_bytes(4, "little")) == "ecall"
    regs = {"a0": 0x8000_0000}
    code = (0x19052503).to_bytes(4, "little")  # lw a0, 0x190(a0)
    assert isa.memory_operand(lambda a, n: code[a : a + n], 0, regs) == (0x8000_0190, 4)
    wfi, rdtime = (0x1050_0073).to_bytes(4, "little"), (0xC0102573).to_bytes(4, "little")
    idle, hazards = isa.scan_code([(0x100, wfi + rdtime)])
    assert idle == [0x100] and hazards == [(0x104, "rdtime", "is illegal on this machine")]
