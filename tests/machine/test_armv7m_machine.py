"""The Cortex-M4 machine (issue 16): board stm32f4, isa armv7m, firmware built with ARCH=armv7m.

Real firmware (committed ELFs in firmware/build/armv7m/tests/, built from the same C sources
as the RV32 ones) on the real machine: boot and hypercalls, a double free with the same report
kind and lines as on RV32, a SysTick handler allocating GFP_ATOMIC (exception entry and
EXC_RETURN exit at slice boundaries), a sleeping allocation in the handler (invalid-context), a
bad-address fault with its unwound backtrace, and exact instruction counts whatever the quantum.
The exception entry/return rules are checked on a bare engine against the Cortex-M4 Generic
User Guide (DUI 0553A, 2.3.7: the 8-word frame r0-r3, r12, lr, return address, xPSR from the
lowest address, 8-byte aligned with an aligner word; EXC_RETURN 0xFFFFFFF9 / 0xFFFFFFF1) and
the ARMv7-M ARM (B1.5.6-8: stacked xPSR bit 9 records the aligner).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import unicorn
from kalloc_machine.elf import FirmwareError, load_firmware
from kalloc_machine.isa import isa_for
from kalloc_machine.isa.armv7m_exc import EXC_RETURN_HANDLER, EXC_RETURN_THREAD, VTOR
from kalloc_machine.session import RunOptions, RunOutcome, Session
from unicorn import arm_const as ac

FW = Path(__file__).resolve().parents[2] / "firmware"
ARM_TESTS = FW / "build" / "armv7m" / "tests"


def run_arm(name: str, **options: Any) -> RunOutcome:
    return Session(RunOptions(firmware=str(ARM_TESTS / f"{name}.elf"), board="stm32f4", **options)).run()


def error_dicts(outcome: RunOutcome) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = outcome.report["errors"]
    return errors


def frames(err: dict[str, Any]) -> list[tuple[str | None, int | None]]:
    return [(f.get("symbol"), f.get("line")) for f in err["backtrace"]]


# -- firmware on the stm32f4 board ---------------------------------------------------------------


def test_hello_boots_calls_the_console_and_exits() -> None:
    out = run_arm("hello")
    assert out.result.reason == "exit" and out.result.exit_code == 0
    assert out.result.uart == "hello, world\n"
    assert out.result.exact and not out.result.errors
    assert out.report["isa"] == "armv7m" and out.report["board"] == "stm32f4"


def test_svc_exit_counts_exactly_whatever_the_quantum() -> None:
    counts = {q: run_arm("hello", quantum=q).result.instructions for q in (100, 1000, 100_000)}
    assert len(set(counts.values())) == 1, counts


def test_double_free_reports_the_same_kind_and_lines_as_rv32() -> None:
    out = run_arm("double_free")
    (err,) = error_dicts(out)
    assert err["kind"] == "double-free"
    assert (err["symbol"], err["location"]["line"]) == ("main", 16)
    assert err["alloc_site"]["location"]["line"] == 9
    assert err["free_site"]["location"]["line"] == 15
    rv32 = Session(RunOptions(firmware=str(FW / "build" / "tests" / "double_free.elf"))).run()
    (twin,) = error_dicts(rv32)
    for site in ("alloc_site", "free_site"):  # the whole stack: unwound from the CPU at the doorbell
        arm, rv = frames(err[site]), frames(twin[site])
        assert arm[0] == rv[0] == ("main", 9 if site == "alloc_site" else 15)
        assert [f[0] for f in arm] == [f[0] for f in rv] == ["main", "_start"]  # crt0 lines differ
    assert (twin["kind"], twin["location"], twin["alloc_site"]["location"]) == (
        err["kind"], err["location"], err["alloc_site"]["location"])  # fmt: skip


def test_systick_handler_allocates_atomic_and_returns_through_exc_return() -> None:
    out = run_arm("timer_atomic")
    r = out.result
    assert (r.reason, r.exit_code, r.errors) == ("exit", 3, [])
    # three exception entries, each handler ran in interrupt context, registers kept across them
    assert r.uart == "ticks 3 in_interrupt 3 regs kept\n"
    assert r.irq_counts == {0: 3}
    assert r.idle > 0  # kalloc_wait_until's wfi idled until SysTick (the bkpt mark ended the slice)


def test_sleeping_allocation_in_the_systick_handler_is_invalid_context() -> None:
    out = run_arm("irq_kernel")
    (err,) = error_dicts(out)
    assert err["kind"] == "invalid-context"
    assert (err["symbol"], err["location"]["line"]) == ("on_timer", 17)
    # unwound through the exception frame (trap.S's CFI: EXC_RETURN at cfa-4), split at the vector
    assert [f[0] for f in frames(err)] == ["on_timer", "__kalloc_trap", "kalloc_trap_vector"]
    assert err["handler"] == "on_timer" and err["interrupted"]["symbol"] == "main"
    assert [f["symbol"] for f in err["interrupted"]["backtrace"]] == ["main", "_start"]


def test_bad_address_fault_unwinds_through_every_frame() -> None:
    out = run_arm("null_deref")
    r = out.result
    assert r.reason == "fault" and r.exact
    (err,) = error_dicts(out)
    assert err["kind"] == "cpu-fault"
    assert err["access"] == {"type": "read", "addr": 0, "size": 4}
    assert err["instruction"].startswith("ldr")
    # Thumb r7 is no frame chain: the walk is the .debug_frame unwind (isa/armv7m_unwind.py)
    assert frames(err)[:3] == [("do_null_deref", 12), ("main", 21), ("_start", 71)]  # crt0.S: bl main
    assert out.exit_status == 65


def test_an_rv32_elf_is_refused_on_the_cortex_m_board() -> None:
    with pytest.raises(FirmwareError, match="not 32-bit ARM"):
        load_firmware(FW / "build" / "tests" / "hello.elf", "armv7m")


# -- exception entry and return on a bare engine (the manual's rules) ------------------------------

THREAD_PC = 0x8000_1000
HANDLER = 0x8000_2000
# handler: movs r0, #0x55; movs r1, #0x66; bx lr
HANDLER_CODE = bytes.fromhex("552066217047")


def bare_cpu(sp: int, ipsr: int = 0) -> tuple[Any, unicorn.Uc]:
    isa = isa_for("armv7m")
    uc = unicorn.Uc(isa.uc_arch, isa.uc_mode)
    isa.setup(uc)
    uc.mem_map(VTOR, 0x1_0000)
    uc.mem_write(VTOR + 4 * 15, struct.pack("<I", HANDLER | 1))
    uc.mem_write(HANDLER, HANDLER_CODE)
    uc.mem_write(THREAD_PC, bytes.fromhex("00bf" * 8))  # nops
    regs = [(getattr(ac, f"UC_ARM_REG_R{i}"), 0x1000 + i) for i in range(13)]
    uc.reg_write_batch([*regs, (ac.UC_ARM_REG_LR, 0x8000_3001), (ac.UC_ARM_REG_SP, sp)])  # type: ignore[attr-defined]
    uc.reg_write(ac.UC_ARM_REG_XPSR, 0x8100_0000)  # N set, Thumb
    uc.reg_write(ac.UC_ARM_REG_IPSR, ipsr)
    if ipsr:
        isa.scs.active.append(ipsr)  # as if the machine had taken it (returns are checked against it)
    isa.set_pc(uc, THREAD_PC)

    def on_intr(uc: unicorn.Uc, intno: int, _ud: Any) -> None:
        assert intno == isa.return_intno and isa.exception_return(uc)

    uc.hook_add(unicorn.UC_HOOK_INTR, on_intr)
    return isa, uc


@pytest.mark.parametrize("sp, aligner", [(0x8000_8000, False), (0x8000_8004, True)])
def test_exception_entry_stacks_the_frame_as_the_manual_says(sp: int, aligner: bool) -> None:
    isa, uc = bare_cpu(sp)
    assert isa.enter_interrupt(uc, 15) == HANDLER
    frame = sp - 32 - (4 if aligner else 0)
    assert uc.reg_read(ac.UC_ARM_REG_SP) == frame and frame % 8 == 0
    words = struct.unpack("<8I", uc.mem_read(frame, 32))
    assert words[:5] == (0x1000, 0x1001, 0x1002, 0x1003, 0x100C)  # r0-r3, r12
    assert words[5] == 0x8000_3001 and words[6] == THREAD_PC  # lr, return address
    assert words[7] & 0xF800_0000 == 0x8000_0000 and words[7] & (1 << 24)  # APSR flags, T
    assert bool(words[7] & (1 << 9)) == aligner  # the aligner is recorded in bit 9
    assert uc.reg_read(ac.UC_ARM_REG_LR) == EXC_RETURN_THREAD
    assert uc.reg_read(ac.UC_ARM_REG_IPSR) == 15
    assert isa.pc(uc) == HANDLER and not isa.interrupts_enabled(uc)  # handler mode masks the rest


@pytest.mark.parametrize("sp", [0x8000_8000, 0x8000_8004])
def test_exc_return_unstacks_and_resumes_the_interrupted_code(sp: int) -> None:
    isa, uc = bare_cpu(sp)
    isa.enter_interrupt(uc, 15)
    uc.emu_start(HANDLER | 1, 0xFFFF_FFFF, count=3)  # movs, movs, bx lr (EXC_RETURN)
    assert isa.pc(uc) == THREAD_PC
    assert uc.reg_read(ac.UC_ARM_REG_SP) == sp  # the aligner is taken off again
    assert (uc.reg_read(ac.UC_ARM_REG_R0), uc.reg_read(ac.UC_ARM_REG_R1)) == (0x1000, 0x1001)
    assert uc.reg_read(ac.UC_ARM_REG_LR) == 0x8000_3001
    assert uc.reg_read(ac.UC_ARM_REG_IPSR) == 0 and uc.reg_read(ac.UC_ARM_REG_XPSR) >> 31 == 1
    assert isa.interrupts_enabled(uc)
    uc.emu_start(isa.pc(uc) | 1, 0xFFFF_FFFF, count=2)  # and the thread runs on, in Thumb state
    assert isa.pc(uc) == THREAD_PC + 4


def test_an_exception_taken_in_handler_mode_returns_to_handler_mode() -> None:
    isa, uc = bare_cpu(0x8000_8000, ipsr=16)
    isa.enter_interrupt(uc, 15)
    assert uc.reg_read(ac.UC_ARM_REG_LR) == EXC_RETURN_HANDLER
    uc.emu_start(HANDLER | 1, 0xFFFF_FFFF, count=3)
    assert uc.reg_read(ac.UC_ARM_REG_IPSR) == 16 and isa.pc(uc) == THREAD_PC


# -- the build: same sources, ARCH=armv7m ----------------------------------------------------------


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="ARM toolchain not installed")
def test_arm_build_of_a_test_firmware_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "b"
    target = out / "tests" / "hello.elf"
    subprocess.run(["make", "-s", "-C", str(FW), "ARCH=armv7m", f"BUILD={out}", str(target)],
                   check=True, capture_output=True)  # fmt: skip
    assert target.read_bytes() == (ARM_TESTS / "hello.elf").read_bytes()


# -- decoding for reports ----------------------------------------------------------------------------

# (encoding, address the access touches, width) with r<i> = 0x1000 * (i + 1), sp = 0x8000, at 0x80000000
ACCESSES = [
    ("1c68", 0x4000, 4),  # ldr r4, [r3]
    ("8868", 0x2008, 4),  # ldr r0, [r1, #8]
    ("885c", 0x5000, 1),  # ldrb r0, [r1, r2]
    ("51f82200", 0xE000, 4),  # ldr.w r0, [r1, r2, lsl #2]
    ("0190", 0x8004, 4),  # str r0, [sp, #4]
    ("4888", 0x2002, 2),  # ldrh r0, [r1, #2]
    ("51f8040b", 0x2000, 4),  # ldr r0, [r1], #4 (post-indexed: the base itself)
    ("42e90201", 0x2FF8, 8),  # strd r0, r1, [r2, #-8]
    ("0248", 0x8000_000C, 4),  # ldr r0, [pc, #8]: from Align(pc + 4, 4)
]


@pytest.mark.parametrize("code, addr, width", ACCESSES)
def test_memory_operand_names_the_byte_a_thumb_access_touches(code: str, addr: int, width: int) -> None:
    isa = isa_for("armv7m")
    raw = bytes.fromhex(code) + b"\x00\xbf" * 2
    regs = {f"r{i}": 0x1000 * (i + 1) for i in range(13)} | {"sp": 0x8000, "lr": 0}
    assert isa.memory_operand(lambda a, n: raw[a - 0x8000_0000 : a - 0x8000_0000 + n], 0x8000_0000, regs) == (
        addr, width)  # fmt: skip


def test_wfi_is_found_in_code_and_not_in_literal_pools() -> None:
    fw = load_firmware(ARM_TESTS / "timer_atomic.elf", "armv7m")
    assert fw.wfi_pcs  # kalloc_wait_until's wfi
    for pc in fw.wfi_pcs:
        seg = next(s for s in fw.segments if s.vaddr <= pc < s.vaddr + len(s.data))
        assert seg.data[pc - seg.vaddr : pc - seg.vaddr + 2] == b"\x30\xbf"


# -- the command line picks the board's ELFs --------------------------------------------------------


def test_kalloc_run_on_the_cortex_m_board_runs_the_cortex_m_demo(cli_report: Any) -> None:
    status, report = cli_report("--board", "stm32f4")
    assert (status, report["isa"], report["firmware"]) == (0, "armv7m", "demo.elf")
    assert report["end"] == "exit" and not report["errors"]
    assert report["interrupts"]  # the timer and the DMA completion line, as SysTick and IRQ 0


def test_a_shipped_name_resolves_to_the_boards_isa(cli_report: Any) -> None:
    status, report = cli_report("--board", "stm32f4", "tests/double_free")
    assert status == 64 and report["isa"] == "armv7m"
    assert [e["kind"] for e in report["errors"]] == ["double-free"]


# -- CCM: RAM the DMA engine cannot reach ------------------------------------------------------------


def irq_dma(mode: int) -> dict[str, Any]:
    options = RunOptions(firmware=str(ARM_TESTS / "irq_dma.elf"), board="stm32f4", max_instructions=5_000_000)
    s = Session(options)
    addr = s.firmware.symbol_addr("irq_dma_mode")
    assert addr is not None
    s.machine.phys.write(addr, mode.to_bytes(4, "little"))
    report: dict[str, Any] = s.run().report
    return report


def test_dma_from_a_ccm_buffer_is_dma_unreachable() -> None:
    report = irq_dma(1)  # kmalloc(256, GFP_KERNEL): the NORMAL zone is the CCM bank
    (err,) = [e for e in report["errors"] if e["kind"] == "dma-unreachable"]
    assert 0x9000_0000 <= err["addr"] < 0x9001_0000  # in the CCM bank
    assert err["symbol"] == "dma_engine_start" and "GFP_DMA" in err["message"]
    assert err["alloc_site"]["location"]["file"] == "firmware/tests/irq_dma.c"


def test_dma_from_sram_round_trips_with_its_completion_interrupt() -> None:
    report = irq_dma(3)  # coherent, pool and GFP_DMA buffers: all in SRAM
    assert report["firmware_exit_code"] == 0 and not report["errors"]
    assert report["dma"]["failed"] == 0 and report["dma"]["transfers"]


# -- KASAN on Thumb: hook mode and compiled checks ------------------------------------------------


@pytest.mark.parametrize("elf, sanitize", [("uaf_read", "kasan"), ("kasan_uaf_read", "kasan")])
def test_use_after_free_names_the_thumb_function_and_line(elf: str, sanitize: str) -> None:
    out = run_arm(elf, sanitize=sanitize)
    (err,) = error_dicts(out)
    assert err["kind"] == "use-after-free"
    assert (err["symbol"], err["location"]["line"]) == ("read_after_free", 14)
    assert err["instruction"].startswith("ldr")  # capstone's Thumb disassembly
    assert (err["alloc_site"]["location"]["line"], err["free_site"]["location"]["line"]) == (18, 23)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="ARM toolchain not installed")
def test_an_out_of_tree_program_builds_for_the_cortex_m_and_runs(tmp_path: Path) -> None:
    app = tmp_path / "app.c"
    main = 'int main(void) { void *p = kmalloc(100, GFP_KERNEL); kfree(p); puts("app"); return 5; }\n'
    app.write_text('#include <stdio.h>\n#include "kalloc.h"\n' + main)
    elf = tmp_path / "app.elf"
    subprocess.run(["make", "-s", "-C", str(FW), "ARCH=armv7m", f"APP={app}", f"OUT={elf}"],
                   check=True, capture_output=True)  # fmt: skip
    out = Session(RunOptions(firmware=str(elf), board="stm32f4")).run()
    assert (out.result.exit_code, out.result.uart, out.result.errors) == (5, "app\n", [])
    assert load_firmware(elf, "armv7m").isa.name == "armv7m"


def test_the_machine_counts_exc_returns_for_the_interrupt_depth() -> None:
    s = Session(RunOptions(firmware=str(ARM_TESTS / "timer_atomic.elf"), board="stm32f4"))
    s.run()
    state = s.machine.irq_state.as_dict()
    assert (state["entries"], state["returns"], state["depth"], state["stray_returns"]) == (3, 3, 0, 0)
    assert not s.machine.irq_state.return_pcs  # no code hook: the return reaches the interrupt hook


def test_thumb_encodings_of_the_sled_and_the_wfi_mark() -> None:
    isa = isa_for("armv7m")
    sled = isa.idle_sled(0x7800_0000, 4)
    assert isa.disassemble(0x7800_0000, sled[:4]) == "add.w ip, ip, #1"  # the lap counter, r12
    assert isa.disassemble(0x7800_0004, sled[4:8]) == "nop.w"
    assert isa.disassemble(0x7800_000C, sled[12:]) == "b.w #0x78000000"
    assert isa.disassemble(0, isa.idle_mark) == "bkpt #0xab"
    assert isa.insn_size(sled[:4]) == 4 and isa.insn_size(b"\x30\xbf") == 2


def test_an_undefined_instruction_is_an_exact_fault_in_its_function() -> None:
    counts = set()
    for quantum in (100, 100_000):
        out = run_arm("illegal", quantum=quantum)
        assert out.result.reason == "fault" and out.result.exact  # through UC_HOOK_INSN_INVALID
        counts.add(out.result.instructions)
        (err,) = error_dicts(out)
        assert err["message"] == "undefined instruction: .word 0xffffffff"
        assert frames(err)[:2] == [("do_illegal", 7), ("main", 13)]
    assert len(counts) == 1


def test_a_runaway_recursion_hits_the_stack_guard() -> None:
    out = run_arm("hostile_stack_task")
    (err,) = error_dicts(out)
    assert err["kind"] == "stack-overflow" and err["symbol"] == "runaway"
    assert "16384-byte stack" in err["message"]  # arm/link.ld's default
    assert out.exit_status == 65


def test_the_cli_names_a_refused_elf_once() -> None:
    """`kalloc run` on the wrong board: one line, the file named once (the reader's message names it)."""
    from click.testing import CliRunner
    from kalloc_machine.sdk import prebuilt

    from kalloc.cli import main

    res = CliRunner().invoke(main, ["run", "--board", "stm32f4", str(prebuilt("demo"))])
    assert res.exit_code == 3
    assert "firmware demo.elf: an ELF for RISC-V (32-bit), not 32-bit ARM" in res.output
    assert res.output.count("demo.elf") == 1
