"""vmalloc and the arena on the emulated machine (issue 6, part B end to end).

Translation through kalloc's page tables (emulator/mmu.py), page-fault reports,
the vmalloc hypercalls and the bridge's virtual pointers (emulator/vmbridge.py),
`--heap arena`, and commit accounting in the report (emulator/commit.py).
"""

from __future__ import annotations

import itertools
import re

import pytest
from kalloc_machine.isa.rv32 import effective_access
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import EXIT_FAULT, RunOptions, Session

from kalloc.vmalloc import ARENA_START, VMALLOC_START


def only_error(outcome, kind):
    errs = [e for e in outcome.report["errors"] if e["kind"] == kind]
    assert len(errs) == 1, outcome.report["errors"]
    return errs[0]


def test_guard_page_overflow_is_a_page_fault_naming_line_area_and_site(run_fw):
    out = run_fw("tests/vmalloc_overflow")
    assert out.exit_status == EXIT_FAULT == 65
    assert out.report["end"] == "fault"
    e = only_error(out, "page-fault")
    assert e["severity"] == "error"
    assert e["symbol"] == "fill_table"
    assert e["location"]["file"].endswith("vmalloc_overflow.c") and e["location"]["line"] == 13
    assert e["state"] == "guard"
    assert e["addr"] == VMALLOC_START + 2 * 4096  # the first byte past the 8 KiB area
    assert e["access"] == {"type": "write", "addr": e["addr"], "size": 1}
    assert e["area"] == {"addr": VMALLOC_START, "size": 8192, "kind": "vmalloc", "pages": 2}
    assert e["alloc_site"]["symbol"] == "main" and e["alloc_site"]["location"]["line"] == 18
    assert e["instruction"].startswith("sb")
    assert [f["symbol"] for f in e["backtrace"][:2]] == ["fill_table", "main"]
    assert "guard page" in e["describe"] and "registers" in e


def test_use_after_vfree_is_a_page_fault_with_both_sites(run_fw):
    out = run_fw("tests/vmalloc_uaf")
    assert out.exit_status == 65
    assert "before vfree: 42" in out.report["uart"] and "after vfree" not in out.report["uart"]
    e = only_error(out, "page-fault")
    assert e["state"] == "freed" and e["symbol"] == "read_after_vfree"
    assert e["addr"] == VMALLOC_START + 400 and e["access"]["type"] == "read"
    assert e["alloc_site"]["location"]["line"] == 16
    assert e["free_site"]["location"]["line"] == 20


def test_vmalloc_commits_every_page_at_once_and_data_spans_scattered_pages(run_fw):
    out = run_fw("tests/vmalloc_ok")
    assert out.exit_status == 0, out.report["errors"]
    uart = out.report["uart"]
    assert "vmalloc ok" in uart and "across a page boundary" in uart  # CONSOLE_WRITE of a vmalloc buffer
    m = re.search(r"committed (\d+) pages for 64 \(free (\d+) -> (\d+)\) before any touch", uart)
    assert m, uart
    # 64 data pages plus the root and one leaf page table, counted before the firmware
    # wrote a byte: the free-page count comes from the allocator inside the run.
    assert int(m.group(1)) == 66
    c = out.report["commit"]
    assert c["high_water_bytes"]["vmalloc"] >= 64 * 4096
    assert c["high_water_bytes"]["page_tables"] >= 2 * 4096
    assert c["bytes"]["vmalloc"] == 0
    assert out.report["vm"]["tlb_flushes"] >= 3  # vunmap, vfree, vfree


def test_scattered_pages_really_are_scattered():
    s = Session(RunOptions(firmware=str(prebuilt("tests/hello"))))
    ka, vm = s.ka, s.vm
    holes = [ka.alloc_pages(0x0CC0, 0) for _ in range(40)]
    for p in holes[::2]:
        ka.free_pages(p, 0)  # every other page free: the next vmalloc gets a scattered set
    addr = vm.vmalloc(10 * 4096)
    pfns = vm.areas[addr].pfns
    assert any(b != a + 1 for a, b in itertools.pairwise(pfns))
    data = bytes(range(256)) * 160
    vm.write(addr, data)
    assert vm.read(addr, len(data)) == data


def test_arena_heap_grows_and_shrinks_through_the_buddy_allocator(run_fw):
    out = run_fw("tests/arena_heap", heap="arena")
    assert out.exit_status == 0, out.report["errors"]
    uart = out.report["uart"]
    m = re.search(r"free pages: start (\d+), grown (\d+), shrunk (\d+), data ok", uart)
    assert m, uart
    start, grown, shrunk = map(int, m.groups())
    assert start - grown >= 18  # 24 x 3000 bytes committed page by page (+ page tables)
    assert shrunk >= start - 2  # trimmed back: only the page tables may stay
    assert re.search(r"arena says hi at 0x(e[0-9a-f]{7})", uart)
    assert out.report["commit"]["high_water_bytes"]["arena"] >= 18 * 4096
    assert out.report["vm"]["tlb_flushes"] >= 1


def test_kfree_of_a_vmalloc_address_is_an_invalid_free_naming_vfree():
    s = Session(RunOptions(firmware=str(prebuilt("tests/hello"))))
    ka = s.ka
    addr = s.vm.vmalloc(100)
    bridge = s.bridge
    handler = bridge.handler("KFREE")
    from kalloc import TASK

    with pytest.raises(Exception) as info:
        handler(TASK, addr)
    assert info.value.kind == "invalid-free" and "vfree()" in info.value.message
    free = bridge.handler("FREE")
    with pytest.raises(Exception) as info:
        free(TASK, addr + 8)
    assert info.value.kind == "invalid-free"
    assert ka.check() is None


def test_dma_to_a_vmalloc_address_is_dma_unreachable():
    s = Session(RunOptions(firmware=str(prebuilt("tests/hello"))))
    addr = s.vm.vmalloc(4096)
    check = s.machine.dma.check
    assert check(addr, 64, True) is False
    errs = [e for e in s.machine.dma.reported if e.kind == "dma-unreachable"] if hasattr(
        s.machine.dma, "reported") else s.machine.errors  # fmt: skip
    assert any(e.kind == "dma-unreachable" and "virtual address" in e.message for e in errs)


def test_effective_address_decoding():
    # sw a5, 8(a4) ; lw a0, 0x190(a0) ; c.lw a0, 4(a1)
    assert effective_access(0x00F72423 & 0xFFFF, 0x00F72423) == (14, 8, 4)
    assert effective_access(0x19052503 & 0xFFFF, 0x19052503) == (10, 0x190, 4)
    assert effective_access(0x41C8, 0x41C8) == (11, 4, 4)


@pytest.mark.parametrize("board", ["default", "tiny", "big"])
def test_demo_clean_with_commit_section(board):
    out = Session(RunOptions(board=board)).run()
    assert out.exit_status == 0, out.report["errors"]
    c = out.report["commit"]
    kinds = ("reserved", "page_tables", "slab", "large_kmalloc", "pages", "dma", "vmalloc", "arena", "heap")
    assert tuple(c["bytes"]) == kinds
    assert c["peak_committed_bytes"] >= max(c["high_water_bytes"].values())
    assert all("headroom_pages" in z for z in c["zones"])


def test_demo_under_arena_heap_is_clean_and_deterministic():
    a = Session(RunOptions(heap="arena")).run()
    b = Session(RunOptions(heap="arena")).run()
    assert a.exit_status == 0, a.report["errors"]
    assert dumps(a.report) == dumps(b.report)
    assert ARENA_START > VMALLOC_START
