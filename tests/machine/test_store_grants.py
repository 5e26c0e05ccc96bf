"""Stores on the fast side of Unicorn (docs/performance.md, "Stores and the TLB"): the memory-fault
hook covers no RAM and no fast-path window, RAM pages the CPU never fetched from are granted to
data accesses without execute, and code written and run at run time stays exact."""

from __future__ import annotations

import unicorn
from kalloc_machine.fastpath import WINDOW
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.benchchurn import poke

from kalloc.page import PAGE_SHIFT


def churn(elf: str, **options: object) -> Session:
    s = Session(RunOptions(firmware=str(prebuilt(elf)), sanitize="off", **options))  # type: ignore[arg-type]
    poke(s, "churn_iters", 300)
    assert s.machine.run().exit_code == 0
    return s


def test_the_memory_fault_hook_leaves_ram_and_the_fast_path_window() -> None:
    s = churn("bench/churn_kalloc", fastpath="on")
    spans = s.machine.sled.fault_spans
    for bank in s.machine.phys.banks:
        assert not any(lo < bank.end and hi >= bank.base for lo, hi in spans), bank.name
    assert not any(lo <= WINDOW <= hi for lo, hi in spans)
    assert any(lo <= 0x1000 <= hi for lo, hi in spans)  # unmapped low memory is still watched
    assert list(spans)[-1][1] == 2**64 - 1


def test_a_page_the_cpu_never_fetched_from_is_granted_without_execute() -> None:
    s = churn("bench/churn_tlsf")
    mmu, code = s.mmu, s.firmware.symbol_addr("main")
    assert code is not None and code >> PAGE_SHIFT in mmu.code_pages  # the code page: fetched
    stack = s.machine.regs()["sp"] >> PAGE_SHIFT
    assert stack not in mmu.code_pages
    rw = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE
    assert mmu.grant(stack << PAGE_SHIFT, unicorn.UC_MEM_WRITE) == rw
    assert mmu.grant(code & ~0xFFF, unicorn.UC_MEM_WRITE) == unicorn.UC_PROT_ALL  # stores check the code
    assert mmu.grant(stack << PAGE_SHIFT, unicorn.UC_MEM_FETCH) == unicorn.UC_PROT_ALL
    assert stack in mmu.code_pages  # fetched from now: its data fills keep x too
    assert mmu.grant(stack << PAGE_SHIFT, unicorn.UC_MEM_WRITE) == unicorn.UC_PROT_ALL
