"""The DMA API: coherent buffers (zone, alignment, the 64 KiB rule) and DMA pools (boundaries)."""

from __future__ import annotations

import itertools

import pytest

from kalloc import Caller, Context, Kalloc, gfp
from kalloc.dmapool import pool_block_offsets
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidContextError,
    InvalidFreeError,
    LeakError,
    OutOfMemoryError,
    UseAfterFreeError,
)
from kalloc.page import PAGE_SIZE, get_order
from kalloc.physmem import PhysMem, RamBank

KERNEL = gfp.GFP_KERNEL
K64 = 64 << 10


def in_dma_zone(ka: Kalloc, addr: int, size: int) -> bool:
    zone = ka.buddy.zone_of(addr // PAGE_SIZE)
    return (
        zone is not None and zone.name == "DMA" and ka.buddy.zone_of((addr + size - 1) // PAGE_SIZE) is zone
    )


# ---------------------------------------------------------------- coherent buffers


def test_coherent_buffers_are_zeroed_dma_memory_aligned_to_their_order() -> None:
    ka = Kalloc.standalone()
    for size in (1, 100, 4096, 5000, 40000, K64, 200000):
        cpu, dma = ka.dma_alloc_coherent(size, KERNEL)
        assert cpu == dma
        assert in_dma_zone(ka, cpu, size)
        assert cpu % (PAGE_SIZE << get_order(size)) == 0
        assert ka.phys.read(cpu, size) == bytes(size)
        assert ka.lookup(cpu).kind == "dma_coherent"
    ka.check()


def test_a_64k_coherent_buffer_never_crosses_a_64k_boundary() -> None:
    ka = Kalloc.standalone()
    sizes = [K64, 3000, K64, 60000, 12345, K64 - 1, 40000, 4096 * 3]
    held = []
    for i in range(60):
        size = sizes[i % len(sizes)]
        got = ka.dma_alloc_coherent(size, gfp.GFP_ATOMIC | gfp.NOWARN)
        if got is None:
            break
        cpu = got[0]
        assert cpu // K64 == (cpu + size - 1) // K64, (hex(cpu), size)
        held.append((cpu, size))
        if i % 3 == 0:
            c, s = held.pop(0)
            ka.dma_free_coherent(s, c, c)
    ka.check()


def test_coherent_free_checks_its_arguments() -> None:
    ka = Kalloc.standalone()
    cpu, dma = ka.dma_alloc_coherent(5000, KERNEL)
    k = ka.kmalloc(100, KERNEL)
    with pytest.raises(InvalidFreeError, match="DMA address"):
        ka.dma_free_coherent(5000, cpu, dma + 4096)
    with pytest.raises(InvalidFreeError, match="5000 bytes were allocated"):
        ka.dma_free_coherent(8192, cpu, dma)
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.dma_free_coherent(100, k, k)
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.kfree(cpu)
    with pytest.raises(BadArgumentError):
        ka.dma_alloc_coherent(0, KERNEL)
    ka.check()
    ka.dma_free_coherent(5000, cpu, dma)
    with pytest.raises(DoubleFreeError):
        ka.dma_free_coherent(5000, cpu, dma)
    ka.dma_free_coherent(100, 0, 0)  # NULL: no-op
    ka.check()


def test_coherent_free_from_interrupt_is_reported_and_done() -> None:
    ka = Kalloc.standalone()
    cpu, dma = ka.dma_alloc_coherent(100, gfp.GFP_ATOMIC, Caller(Context.IRQ))
    assert ka.reports == []
    ka.dma_free_coherent(100, cpu, dma, Caller(Context.IRQ, 5, 1))
    (err,) = ka.reports
    assert isinstance(err, InvalidContextError) and err.site == 5 and "interrupt" in err.message
    assert ka.lookup(cpu) is None
    ka.dma_alloc_coherent(100, KERNEL, Caller(Context.IRQS_OFF))
    assert ka.reports[-1].message == "sleeping allocation with interrupts disabled"


def test_board_without_dma_zone() -> None:
    ka = Kalloc(PhysMem([RamBank("n", 0x8000_0000, 1 << 20, memoryview(bytearray(1 << 20)))]))
    assert ka.dma_alloc_coherent(100, KERNEL) is None
    assert isinstance(ka.reports[-1], OutOfMemoryError)
    assert ka.kmalloc(100, KERNEL | gfp.DMA) is None


# ---------------------------------------------------------------- pools


def test_pool_layout_matches_dmapool() -> None:
    assert pool_block_offsets(64, 4096, 4096) == tuple(range(0, 4096, 64))
    assert pool_block_offsets(1500, 4096, 2048) == (0, 2048)
    assert pool_block_offsets(48, 4096, 128) == tuple(o + b for b in range(0, 4096, 128) for o in (0, 48))


@pytest.mark.parametrize(
    ("size", "align", "boundary"), [(100, 16, 4096), (48, 8, 128), (3000, 64, 4096), (24, 0, 0)]
)
def test_pool_blocks_never_cross_the_boundary(size: int, align: int, boundary: int) -> None:
    ka = Kalloc.standalone()
    pool = ka.dma_pool_create("dev", size, align, boundary)
    limit = boundary or pool.allocation
    blocks = [ka.dma_pool_alloc(pool, gfp.GFP_ATOMIC) for _ in range(300)]
    for cpu, dma in blocks:
        assert cpu == dma and in_dma_zone(ka, cpu, size)
        assert cpu % max(align, 1) == 0
        assert cpu // limit == (cpu + pool.size - 1) // limit
    addrs = sorted(c for c, _ in blocks)
    assert all(b - a >= pool.size for a, b in itertools.pairwise(addrs))
    ka.check()
    for cpu, dma in blocks[::2]:
        ka.dma_pool_free(pool, cpu, dma)
    assert ka.dma_pool_alloc(pool, KERNEL) is not None
    ka.check()


def test_pool_handles_and_stats() -> None:
    ka = Kalloc.standalone()
    a = ka.dma_pool_create("a", 32, 0, 0)
    b = ka.dma_pool_create("b", 32, 0, 0)
    assert (a.handle, b.handle) == (1, 2) and ka.pool_by_handle(2) is b
    ka.dma_pool_alloc(a, KERNEL)
    (row, _) = ka.stats()["dma_pools"]
    assert row["name"] == "a" and row["active_blocks"] == 1 and row["blocks_per_page"] == 128
    assert "a" in ka.poolinfo()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("p", 0, 8, 0), "0-byte"),
        (("p", 64, 3, 0), "power of two"),
        (("p", 64, 8, 32), "boundary"),
        (("p", 64, 8, 100), "boundary"),
        (("", 64, 8, 0), "name"),
        (("p", 8 << 20, 8, 0), "largest"),
    ],
)
def test_bad_pool_arguments(args: tuple, words: str) -> None:
    ka = Kalloc.standalone()
    with pytest.raises(BadArgumentError, match=words):
        ka.dma_pool_create(*args)
    assert ka.pool_by_handle(1) is None
    ka.check()


def test_pool_free_misuse_and_destroy() -> None:
    ka = Kalloc.standalone()
    a = ka.dma_pool_create("a", 64, 0, 0)
    b = ka.dma_pool_create("b", 64, 0, 0)
    cpu, dma = ka.dma_pool_alloc(a, KERNEL)
    with pytest.raises(InvalidFreeError, match="pool 'a' passed with pool 'b'"):
        ka.dma_pool_free(b, cpu, dma)
    with pytest.raises(InvalidFreeError, match="DMA address"):
        ka.dma_pool_free(a, cpu, dma + 64)
    with pytest.raises(InvalidFreeError, match="8 bytes into"):
        ka.dma_pool_free(a, cpu + 8, dma + 8)
    with pytest.raises(InvalidFreeError, match="wrong API pair"):
        ka.kfree(cpu)
    with pytest.raises(LeakError) as exc:
        ka.dma_pool_destroy(a)
    assert exc.value.fields["live"] == 1 and ka.pool_by_handle(a.handle) is a
    ka.check()
    ka.dma_pool_free(a, cpu, dma, Caller(site=9))
    with pytest.raises(DoubleFreeError) as exc2:
        ka.dma_pool_free(a, cpu, dma)
    assert exc2.value.fields["free_site"] == 9
    free = ka.buddy.free_pages
    ka.dma_pool_destroy(a)
    assert ka.buddy.free_pages == free + 1 and ka.pool_by_handle(a.handle) is None
    with pytest.raises(BadArgumentError, match="destroyed"):
        ka.dma_pool_alloc(a, KERNEL)
    ka.check()


def test_pool_poison_catches_writes_to_free_blocks() -> None:
    ka = Kalloc.standalone()
    pool = ka.dma_pool_create("p", 32, 0, 0)
    cpu, dma = ka.dma_pool_alloc(pool, KERNEL)
    assert ka.phys.read(cpu, 32) == b"\xa9" * 32
    z, _ = ka.dma_pool_alloc(pool, KERNEL | gfp.ZERO)
    assert ka.phys.read(z, 32) == bytes(32)
    ka.dma_pool_free(pool, cpu, dma, Caller(site=3))
    assert ka.phys.read(cpu, 32) == b"\xa7" * 32
    ka.phys.write(cpu + 4, b"\x00")
    (err,) = ka.check_poison()
    assert isinstance(err, UseAfterFreeError) and err.fields["free_site"] == 3 and err.addr == cpu + 4
    ka.phys.write(cpu, b"\x00")
    assert ka.dma_pool_alloc(pool, KERNEL)[0] == cpu
    assert isinstance(ka.reports[-1], UseAfterFreeError)
