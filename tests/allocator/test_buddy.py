"""Zones, the buddy allocator, watermarks, reclaim and the page API."""

from __future__ import annotations

import copy

import pytest

from kalloc import TASK, Caller, Config, Context, Kalloc, gfp
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidContextError,
    InvalidFreeError,
    InvariantError,
    OutOfMemoryError,
)
from kalloc.live import LiveRecord
from kalloc.page import PAGE_SIZE, get_order, pages_for
from kalloc.physmem import PhysMem, RamBank, anonymous_buffer
from kalloc.zone import ZONE_DMA, ZONE_NORMAL, default_min_free_kbytes

KERNEL = gfp.GFP_KERNEL
BASE = 0x8000_0000


def bank(name: str, base: int, size: int, dma: bool = False) -> RamBank:
    return RamBank(name, base, size, memoryview(bytearray(size)), dma=dma)


def free_area(ka: Kalloc) -> list[dict[int, None]]:
    return [copy.copy(d) for z in ka.buddy.zones for d in z.free_area]


def zone_of(ka: Kalloc, addr: int) -> str:
    z = ka.buddy.zone_of(addr // PAGE_SIZE)
    assert z is not None
    return z.name


# ---------------------------------------------------------------- boot and accounting


def test_boot_accounts_every_byte_of_ram() -> None:
    pm = PhysMem.standalone(size=16 << 20, dma_size=4 << 20)
    ka = Kalloc(
        pm,
        reserved=[(BASE, BASE + 0x12345, "firmware"), (BASE + (4 << 20) - 8192, BASE + (4 << 20), "stack")],
    )
    t = ka.stats()["totals"]
    assert t["reserved_bytes"]["firmware"] == pages_for(0x12345) * PAGE_SIZE
    assert t["reserved_bytes"]["stack"] == 8192
    npages = (16 << 20) // PAGE_SIZE
    assert t["reserved_bytes"]["memmap"] == pages_for(npages * 32) * PAGE_SIZE
    assert t["metadata_bytes"]["memmap"] == npages * 32
    assert t["free_bytes"] + t["used_bytes"] + sum(t["reserved_bytes"].values()) == t["ram_bytes"] == 16 << 20
    ka.check()


def test_memmap_is_carved_top_down_from_normal_memory() -> None:
    ka = Kalloc.standalone()
    normal = ka.buddy.zones[ZONE_NORMAL]
    assert ka.buddy.zone_reserved[ZONE_NORMAL] == {"memmap": 32}
    assert ka.buddy.zone_reserved[ZONE_DMA] == {}
    sec = normal.sections[-1]
    assert sec.state[-32:] == bytes([3]) * 32  # PG_RESERVED at the top


def test_struct_page_size_costs_real_memory() -> None:
    small = Kalloc.standalone(config=Config(struct_page_size=0))
    big = Kalloc.standalone(config=Config(struct_page_size=64))
    assert small.stats()["totals"]["reserved_bytes"].get("memmap", 0) == 0
    assert big.stats()["totals"]["reserved_bytes"]["memmap"] == 64 * 4096
    assert small.buddy.free_pages - big.buddy.free_pages == 64


def test_unaligned_and_scattered_banks() -> None:
    banks = [
        bank("dma", BASE + 100, (1 << 20) - 100, dma=True),  # partial first page
        bank("n1", BASE + (3 << 20), 1 << 20),  # a hole between banks
        bank("n2", BASE + (4 << 20), (1 << 20) + 1000),  # adjacent to n1, ragged end
    ]
    ka = Kalloc(PhysMem(banks))
    t = ka.stats()["totals"]
    assert t["reserved_bytes"]["unusable"] == 3996 + 1000  # the partial first page and the ragged end
    assert t["free_bytes"] + t["used_bytes"] + sum(t["reserved_bytes"].values()) == t["ram_bytes"]
    ka.check()
    # n1 and n2 touch at a 4 MiB boundary: no free block may span both banks.
    for order, d in enumerate(ka.buddy.zones[ZONE_NORMAL].free_area):
        for pfn in d:
            sec = ka.buddy.section_of(pfn)
            assert sec is not None and sec.contains(pfn, 1 << order)
    # Allocate everything and free it again: merging still stops at the bank edge.
    before = free_area(ka)
    got = []
    while (a := ka.alloc_pages(gfp.GFP_ATOMIC | gfp.NOWARN | gfp.MEMALLOC, 0)) is not None:
        got.append(a)
    for a in reversed(got):
        ka.free_pages(a, 0)
    assert free_area(ka) == before
    ka.check()


def test_dma_only_board_serves_normal_requests_from_dma() -> None:
    ka = Kalloc(PhysMem([bank("dma", BASE, 1 << 20, dma=True)]))
    a = ka.alloc_pages(KERNEL, 0)
    assert a is not None and zone_of(ka, a) == "DMA"
    assert ka.buddyinfo().count("\n") == 1


def test_boot_of_one_gib_uses_anonymous_memory() -> None:
    size = 1 << 30
    banks = [
        RamBank("dma", BASE, 16 << 20, memoryview(anonymous_buffer(16 << 20)), dma=True),
        RamBank(
            "normal", BASE + (16 << 20), size - (16 << 20), memoryview(anonymous_buffer(size - (16 << 20)))
        ),
    ]
    ka = Kalloc(PhysMem(banks), reserved=[(BASE, BASE + (256 << 10), "firmware")])
    assert ka.min_free_kbytes == default_min_free_kbytes(ka.buddy.free_pages * 4)
    a = ka.alloc_pages(KERNEL, 10)
    p = ka.kmalloc(100, KERNEL)
    assert a is not None and p is not None
    assert ka.stats()["fragmentation"]["Normal"]["largest_free_block"] == 4 << 20
    ka.kfree(p)
    ka.free_pages(a, 10)
    ka.check()


# ---------------------------------------------------------------- buddy split and merge


def test_alloc_is_aligned_to_order_and_merge_restores_free_area() -> None:
    ka = Kalloc.standalone()
    before = free_area(ka)
    addrs = [(ka.alloc_pages(KERNEL, o), o) for o in (0, 3, 1, 0, 5, 2, 0)]
    for a, o in addrs:
        assert a is not None and a % (PAGE_SIZE << o) == 0
    ka.check()
    for a, o in reversed(addrs[::2]):
        ka.free_pages(a, o)
    for a, o in addrs[1::2]:
        ka.free_pages(a, o)
    ka.check()
    assert [set(d) for d in free_area(ka)] == [set(d) for d in before]


def test_split_puts_upper_halves_on_lower_lists() -> None:
    ka = Kalloc(PhysMem([bank("n", BASE, 8 << 20)]), Config(struct_page_size=0, min_free_kbytes=0))
    zone = ka.buddy.zones[ZONE_NORMAL]
    assert zone.nr_free_blocks() == [0] * 10 + [2]
    a = ka.alloc_pages(KERNEL, 0)
    assert zone.nr_free_blocks() == [1] * 10 + [1]
    ka.free_pages(a, 0)
    assert zone.nr_free_blocks() == [0] * 10 + [2]


def test_max_order_is_configurable() -> None:
    ka = Kalloc.standalone(config=Config(max_order=4))
    assert len(ka.buddy.zones[ZONE_NORMAL].free_area) == 5
    assert ka.alloc_pages(KERNEL, 4) is not None
    with pytest.raises(BadArgumentError):
        ka.alloc_pages(KERNEL, 5)
    assert ka.kmalloc(128 << 10, KERNEL) is None  # beyond the 64 KiB largest block
    assert isinstance(ka.reports[-1], OutOfMemoryError)
    ka.check()


def test_alloc_pages_exact_wastes_no_pages() -> None:
    ka = Kalloc.standalone()
    for size in (1, 4096, 4097, 5 * 4096 + 1, 100_000, 3 << 20):
        free = ka.buddy.free_pages
        a = ka.alloc_pages_exact(size, KERNEL)
        assert a is not None
        assert free - ka.buddy.free_pages == pages_for(size)
        assert a % (PAGE_SIZE << get_order(size)) == 0
        ka.check()
        ka.free_pages_exact(a, size)
        assert ka.buddy.free_pages == free
        ka.check()


def test_gfp_dma_memory_lies_in_the_dma_zone() -> None:
    ka = Kalloc.standalone()
    for order in (0, 2, 6):
        a = ka.alloc_pages(gfp.GFP_KERNEL | gfp.DMA, order)
        assert a is not None and zone_of(ka, a) == "DMA"
    a = ka.alloc_pages(KERNEL, 0)
    assert a is not None and zone_of(ka, a) == "Normal"


def test_gfp_zero_zeroes_and_poison_fills_fresh_pages() -> None:
    ka = Kalloc.standalone()
    a = ka.alloc_pages(KERNEL, 1)
    assert ka.phys.read(a, 8192) == b"\x5a" * 8192
    ka.free_pages(a, 1)
    assert ka.phys.read(a, 8192) == b"\x6b" * 8192
    b = ka.alloc_pages(KERNEL | gfp.ZERO, 1)
    assert ka.phys.read(b, 8192) == bytes(8192)


# ---------------------------------------------------------------- watermarks


@pytest.mark.parametrize(
    ("ram_kb", "expected"),
    [
        (256, 32),
        (512, 64),
        (1024, 128),
        (2048, 181),
        (4096, 256),
        (16384, 512),
        (65536, 1024),
        (1 << 20, 4096),
        (1 << 30, 131072),
        (1 << 34, 262144),
    ],
)
def test_default_min_free_kbytes(ram_kb: int, expected: int) -> None:
    assert default_min_free_kbytes(ram_kb) == expected


def test_watermarks_follow_linux_arithmetic() -> None:
    ka = Kalloc.standalone()
    zones = ka.buddy.populated_zones
    pages_min = ka.min_free_kbytes // 4
    lowmem = sum(z.managed for z in zones)
    for z in zones:
        assert z.wmark_min == pages_min * z.managed // lowmem
        assert z.wmark_low == z.wmark_min + z.wmark_min // 4
        assert z.wmark_high == z.wmark_min + z.wmark_min // 2
    dma, normal = ka.buddy.zones
    assert dma.lowmem_reserve == [0, normal.managed // 256]
    assert normal.lowmem_reserve == [0, 0]


def _drain(ka: Kalloc, flags: int) -> list[int]:
    out = []
    while (a := ka.alloc_pages(flags | gfp.NOWARN, 0)) is not None:
        out.append(a)
    return out


def test_gfp_atomic_succeeds_where_gfp_kernel_fails_because_of_the_reserve() -> None:
    ka = Kalloc.standalone()
    dma, normal = ka.buddy.zones
    _drain(ka, KERNEL)
    assert normal.nr_free == normal.wmark_min  # stops at min
    assert dma.nr_free == dma.wmark_min + dma.lowmem_reserve[ZONE_NORMAL]  # fallback guarded by the reserve
    assert ka.alloc_pages(gfp.GFP_NOWAIT | gfp.NOWARN, 0) is None  # NOWAIT gets no reserve either
    atomic = _drain(ka, gfp.GFP_ATOMIC)
    assert atomic
    wmin = normal.wmark_min
    floor = wmin - wmin // 2
    floor -= floor // 4
    assert normal.nr_free == floor  # GFP_ATOMIC keeps 3/8 of min
    assert not ka.reports
    ka.check()


def test_gfp_high_alone_gets_half_the_reserve() -> None:
    ka = Kalloc.standalone()
    normal = ka.buddy.zones[ZONE_NORMAL]
    _drain(ka, KERNEL)
    _drain(ka, gfp.GFP_KERNEL | gfp.HIGH)
    assert normal.nr_free == normal.wmark_min - normal.wmark_min // 2


def test_normal_request_falls_back_to_dma_only_above_lowmem_reserve() -> None:
    ka = Kalloc.standalone()
    dma, _normal = ka.buddy.zones
    got = _drain(ka, KERNEL)
    in_dma = [a for a in got if zone_of(ka, a) == "DMA"]
    assert len(in_dma) == dma.managed - dma.wmark_min - dma.lowmem_reserve[ZONE_NORMAL]
    # GFP_DMA requests do not pay the NORMAL reserve.
    dmas = _drain(ka, KERNEL | gfp.DMA)
    assert len(dmas) == dma.lowmem_reserve[ZONE_NORMAL]


def test_memalloc_ignores_watermarks() -> None:
    ka = Kalloc.standalone(size=1 << 20, dma_size=1 << 20)
    _drain(ka, gfp.GFP_ATOMIC)
    assert _drain(ka, gfp.GFP_ATOMIC | gfp.MEMALLOC)
    assert ka.buddy.free_pages == 0
    ka.check()


# ---------------------------------------------------------------- failure, reclaim, context


def test_oom_is_reported_with_request_and_zone_state() -> None:
    ka = Kalloc.standalone()
    site = ka.depot.save((0x1234, 0x5678))
    _drain(ka, KERNEL)
    assert ka.alloc_pages(KERNEL, 3, Caller(site=site)) is None
    (err,) = ka.reports
    assert isinstance(err, OutOfMemoryError) and err.severity == "warning" and err.kind == "oom"
    assert err.site == site
    assert err.fields["order"] == 3 and err.fields["gfp"] == "GFP_KERNEL"
    assert {z["name"] for z in err.fields["zones"]} == {"DMA", "Normal"}
    assert all({"free", "min", "low", "high"} <= z.keys() for z in err.fields["zones"])


def test_nowarn_suppresses_the_report_and_nofail_raises() -> None:
    ka = Kalloc.standalone()
    _drain(ka, gfp.GFP_ATOMIC | gfp.MEMALLOC)
    assert ka.alloc_pages(KERNEL | gfp.NOWARN, 0) is None
    assert ka.reports == []
    with pytest.raises(OutOfMemoryError) as exc:
        ka.alloc_pages(KERNEL | gfp.NOFAIL, 0)
    assert exc.value.severity == "error"
    ka.check()


def test_nofail_may_use_part_of_the_reserve() -> None:
    ka = Kalloc.standalone()
    _drain(ka, KERNEL)
    assert ka.alloc_pages(KERNEL | gfp.NOFAIL, 0) is not None


def test_reclaim_frees_empty_slabs_then_retries() -> None:
    ka = Kalloc.standalone(size=2 << 20, dma_size=1 << 20)
    objs = []
    while (p := ka.kmalloc(4096, gfp.GFP_KERNEL | gfp.NOWARN)) is not None:
        objs.append(p)
    for p in objs:
        ka.kfree(p)
    cache = ka.kmalloc_api.by_size[4096]
    held = len(cache.slabs)
    assert held == cache.min_partial == len(cache.empty)  # empty slabs kept around
    got = _drain(ka, KERNEL)
    assert not cache.slabs  # all reclaimed, the empty current slab too
    assert len(got) > held << cache.order
    ka.check()


def test_blocking_allocation_from_interrupt_is_reported_and_served() -> None:
    ka = Kalloc.standalone()
    site = ka.depot.save((0xABC,))
    a = ka.alloc_pages(KERNEL, 0, Caller(Context.IRQ, site, 1))
    assert a is not None
    (err,) = ka.reports
    assert isinstance(err, InvalidContextError)
    assert err.message == "sleeping allocation from interrupt context"
    assert err.site == site and err.fields["context"] == "irq"
    b = ka.alloc_pages(KERNEL, 0, Caller(Context.IRQS_OFF))
    assert b is not None
    assert ka.reports[-1].message == "sleeping allocation with interrupts disabled"
    ka.alloc_pages(gfp.GFP_ATOMIC, 0, Caller(Context.IRQ))
    ka.alloc_pages(gfp.GFP_NOWAIT, 0, Caller(Context.IRQS_OFF))
    assert len(ka.reports) == 2


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("flags", [1 << 30, 0x2, 0x10 | gfp.GFP_KERNEL, -1])
def test_unknown_gfp_bits_are_rejected(snapshot, flags: int) -> None:
    ka = Kalloc.standalone()
    before = snapshot(ka)
    for call in (
        lambda: ka.alloc_pages(flags, 0),
        lambda: ka.alloc_pages_exact(100, flags),
        lambda: ka.kmalloc(10, flags),
        lambda: ka.kmalloc(100000, flags),
        lambda: ka.dma_alloc_coherent(100, flags),
    ):
        with pytest.raises(BadArgumentError):
            call()
    assert snapshot(ka) == before
    ka.check()


@pytest.mark.parametrize("order", [-1, 11, 100])
def test_bad_order_is_rejected(order: int) -> None:
    ka = Kalloc.standalone()
    with pytest.raises(BadArgumentError):
        ka.alloc_pages(KERNEL, order)
    with pytest.raises(BadArgumentError):
        ka.free_pages(0x8010_0000, order)
    ka.check()


def test_page_free_misuse_raises_the_specific_error_and_changes_nothing(snapshot) -> None:
    ka = Kalloc.standalone()
    a = ka.alloc_pages(KERNEL, 2)
    k = ka.kmalloc(100, KERNEL)
    e = ka.alloc_pages_exact(10000, KERNEL)
    before = snapshot(ka)
    cases = [
        (lambda: ka.free_pages(a, 1), InvalidFreeError, "order"),
        (lambda: ka.free_pages(a + 4096, 0), InvalidFreeError, "into a live object"),
        (lambda: ka.free_pages(k, 0), InvalidFreeError, "wrong API pair"),
        (lambda: ka.free_pages(e, 2), InvalidFreeError, "wrong API pair"),
        (lambda: ka.free_pages_exact(e, 20000), InvalidFreeError, "bytes were allocated"),
        (lambda: ka.free_pages_exact(a, 16384), InvalidFreeError, "wrong API pair"),
        (lambda: ka.kfree(a), InvalidFreeError, "wrong API pair"),
        (lambda: ka.free_pages(0x8080_0000, 0), InvalidFreeError, "never allocated"),
        (lambda: ka.free_pages(0x1000, 0), InvalidFreeError, "not a RAM address"),
        (lambda: ka.alloc_pages_exact(0, KERNEL), BadArgumentError, "0 bytes"),
        (lambda: ka.alloc_pages_exact(1 << 40, KERNEL), BadArgumentError, "size overflow"),
    ]
    for call, err, words in cases:
        with pytest.raises(err) as exc:
            call()
        assert words in exc.value.message
        assert snapshot(ka) == before
        ka.check()
    assert exc.value.kind in ("invalid-free", "bad-hypercall")


def test_double_free_of_pages_names_the_first_free() -> None:
    ka = Kalloc.standalone()
    s1, s2, s3 = (ka.depot.save((n,)) for n in (1, 2, 3))
    a = ka.alloc_pages(KERNEL, 1, Caller(site=s1))
    ka.free_pages(a, 1, Caller(site=s2))
    with pytest.raises(DoubleFreeError) as exc:
        ka.free_pages(a, 1, Caller(site=s3))
    err = exc.value
    assert err.addr == a and err.site == s3
    assert err.fields["alloc_site"] == s1 and err.fields["free_site"] == s2
    assert err.fields["object"] == {"addr": a, "size": 8192, "kind": "pages"}
    ka.check()
    # Reallocated at the same address: a free is legal again.
    b = ka.alloc_pages(KERNEL, 1)
    assert b == a
    ka.free_pages(b, 1)


def test_free_of_zero_is_a_no_op() -> None:
    ka = Kalloc.standalone()
    ka.free_pages(0, 0)
    ka.free_pages_exact(0, 10)
    ka.check()


# ---------------------------------------------------------------- check() finds corruption


def test_check_names_broken_invariants() -> None:
    ka = Kalloc.standalone()
    a = ka.alloc_pages(KERNEL, 0)
    zone = ka.buddy.zones[ZONE_NORMAL]
    zone.nr_free += 1
    with pytest.raises(InvariantError, match="nr_free"):
        ka.check()
    zone.nr_free -= 1
    ka.buddy.blocks[a // PAGE_SIZE] = 2
    with pytest.raises(InvariantError):
        ka.check()
    ka.buddy.blocks[a // PAGE_SIZE] = 1
    ka.live[a + 8] = LiveRecord(8, 0, 0, 0)
    with pytest.raises(InvariantError, match="live"):
        ka.check()
    del ka.live[a + 8]
    ka.check()


def test_task_default_caller() -> None:
    assert Caller() == TASK and TASK.context is Context.TASK and TASK.site == 0
