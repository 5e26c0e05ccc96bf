"""A Cortex-M page fault on a multi-register transfer names the words the instruction touched
(isa/armv7m_decode.py), not the page the fill hook learns (Unicorn's ARM fills 1 KiB pages).

firmware/arm/tests/armv7m_ldm_after_vfree.c copies a 16-byte struct out of a vmalloc area
after vfree(); GCC makes the copy one `ldm r1, {r0, r1, r2, r3}`. The previous decoder did
not know ldm: the report said "read at 0xc0000400" (the 1 KiB page) with no size.
"""

from __future__ import annotations

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def test_a_page_fault_on_ldm_names_the_struct_it_reads() -> None:
    elf = prebuilt("tests/armv7m_ldm_after_vfree", "armv7m")
    report = Session(RunOptions(firmware=str(elf), board="stm32f4")).run().report
    (err,) = report["errors"]
    assert err["kind"] == "page-fault"
    assert err["instruction"] == "ldm r1, {r0, r1, r2, r3}"
    ring_100 = 0xC000_0000 + 100 * 16  # &ring[100]: vmalloc's first area, 16-byte structs
    assert err["access"] == {"type": "read", "addr": ring_100, "size": 16}
    assert err["message"].startswith(f"page fault: read at {ring_100:#x}: a vmalloc area that was freed")
    assert err["addr"] == ring_100
