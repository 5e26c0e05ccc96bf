"""A Hypothesis state machine that interleaves every allocator operation.

Each rule runs on the real allocator and on a tiny model: a dict of live
objects (address -> kind, size, fill byte, and what is needed to free it).
After every step check() must pass, every live object must still hold the
bytes written into it, the allocator's live set must equal the model's, and
no sanitizer report may appear (the program under test never misbehaves:
every report would be a false positive). Misuse rules free wrong pointers and
expect the specific error with nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kalloc import SLAB_CACHE_DMA, SLAB_HWCACHE_ALIGN, SLAB_KALLOC_CTOR, Caller, Config, Context, Kalloc, gfp
from kalloc.dma import DmaPool
from kalloc.errors import (
    BadArgumentError,
    DoubleFreeError,
    InvalidFreeError,
    LeakError,
    OutOfMemoryError,
)
from kalloc.kmalloc import ZERO_SIZE_PTR
from kalloc.page import PAGE_SIZE, get_order
from kalloc.slab import KmemCache

SIZES = st.one_of(
    st.integers(0, 64),
    st.sampled_from([95, 96, 97, 128, 191, 192, 193, 255, 512, 1000, 2048, 4096, 8191, 8192, 8193]),
    st.integers(65, 20_000),
)
GFPS = st.sampled_from(
    [
        gfp.GFP_KERNEL,
        gfp.GFP_ATOMIC,
        gfp.GFP_NOWAIT,
        gfp.GFP_KERNEL | gfp.ZERO,
        gfp.GFP_ATOMIC | gfp.NOWARN,
        gfp.GFP_KERNEL | gfp.DMA,
        gfp.GFP_ATOMIC | gfp.DMA | gfp.ZERO,
        gfp.GFP_KERNEL | gfp.HIGH,
    ]
)
CALLERS = st.builds(Caller, st.sampled_from(list(Context)), st.integers(0, 3), st.integers(0, 2))
PICK = st.integers(0, 1 << 16)
ALIGNS = st.sampled_from([1, 2, 8, 16, 32, 64, 128, 1024, 2048, 4096, 16384, 3, 0, 48])
BAD_REPORTS = {"out-of-bounds", "use-after-free", "double-free", "invalid-free", "leak", "bad-hypercall"}


@dataclass
class Obj:
    kind: str  # the API family that frees it
    size: int  # bytes written and checked
    fill: int
    order: int = 0
    cache: KmemCache | None = None
    pool: DmaPool | None = None
    dma: bool = False


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: dict[int, Obj] = {}
        self.freed: list[int] = []
        self.caches: list[KmemCache] = []
        self.pools: list[DmaPool] = []
        self.tag = 0

    @initialize(
        sanitize=st.sampled_from(["poison", "off", "kasan"]),
        zero_policy=st.sampled_from(["unique", "null"]),
        mib=st.sampled_from([1, 2, 4]),
    )
    def boot(self, sanitize: str, zero_policy: str, mib: int) -> None:
        config = Config(sanitize=sanitize, zero_size_policy=zero_policy, quarantine_bytes=4096)
        self.ka = Kalloc.standalone(size=mib << 20, dma_size=(mib << 20) // 2, config=config)

    # ---------------------------------------------------------------- helpers

    def _fill(self) -> int:
        self.tag = self.tag % 250 + 1
        return self.tag

    def _add(self, addr: int | None, obj: Obj) -> None:
        if addr is None or addr == ZERO_SIZE_PTR:
            return
        assert addr not in self.model, "allocator returned a live address twice"
        if obj.dma:
            zone = self.ka.buddy.zone_of(addr // PAGE_SIZE)
            assert zone is not None and zone.name == "DMA"
        self.ka.phys.fill(addr, obj.size, obj.fill)
        self.model[addr] = obj
        if addr in self.freed:
            self.freed.remove(addr)

    def _pick(self, i: int, kinds: tuple[str, ...]) -> int | None:
        addrs = sorted(a for a, o in self.model.items() if o.kind in kinds)
        return addrs[i % len(addrs)] if addrs else None

    def _forget(self, addr: int) -> None:
        obj = self.model.pop(addr)
        assert self.ka.phys.read(addr, obj.size) == bytes([obj.fill]) * obj.size
        self.freed.append(addr)
        del self.freed[:-20]

    def _check_moved(self, old: int, new: int | None, obj: Obj, size: int) -> None:
        """After a resize: the kept prefix survived; rewrite the model entry."""
        if new is None or new == ZERO_SIZE_PTR:
            return
        keep = min(obj.size, size)
        assert self.ka.phys.read(new, keep) == bytes([obj.fill]) * keep
        del self.model[old]
        if new != old:
            self.freed.append(old)
        self._add(new, Obj(obj.kind, size, self._fill()))

    # ---------------------------------------------------------------- kmalloc

    @rule(size=SIZES, flags=GFPS, caller=CALLERS)
    def kmalloc(self, size: int, flags: int, caller: Caller) -> None:
        p = self.ka.kmalloc(size, flags, caller)
        if size == 0:
            assert p == ZERO_SIZE_PTR
            return
        if p is not None:
            assert p % (16 if size > 8 else 8) == 0
            if flags & gfp.ZERO:
                assert self.ka.phys.read(p, size) == bytes(size)
        self._add(p, Obj("kmalloc", size, self._fill(), dma=bool(flags & gfp.DMA)))

    @rule(n=st.integers(0, 40), size=st.integers(0, 300), caller=CALLERS)
    def kcalloc(self, n: int, size: int, caller: Caller) -> None:
        p = self.ka.kcalloc(n, size, gfp.GFP_ATOMIC, caller)
        if p not in (None, ZERO_SIZE_PTR):
            assert self.ka.phys.read(p, n * size) == bytes(n * size)
        self._add(p, Obj("kmalloc", n * size, self._fill()))

    @precondition(lambda self: any(o.kind == "kmalloc" for o in self.model.values()))
    @rule(i=PICK, caller=CALLERS)
    def kfree(self, i: int, caller: Caller) -> None:
        addr = self._pick(i, ("kmalloc",))
        assert addr is not None
        self._forget(addr)
        self.ka.kfree(addr, caller)

    @precondition(lambda self: any(o.kind == "kmalloc" for o in self.model.values()))
    @rule(i=PICK, size=SIZES, flags=GFPS)
    def krealloc(self, i: int, size: int, flags: int) -> None:
        addr = self._pick(i, ("kmalloc",))
        assert addr is not None
        obj = self.model[addr]
        if self.ka.lookup(addr) and flags & gfp.DMA:
            flags &= ~gfp.DMA  # krealloc keeps the zone decision of kmalloc; keep the model simple
        new = self.ka.krealloc(addr, size, flags)
        if size == 0:
            assert new == ZERO_SIZE_PTR
            self.model.pop(addr)
            self.freed.append(addr)
            return
        if new is None:
            assert self.ka.phys.read(addr, obj.size) == bytes([obj.fill]) * obj.size
            return
        self._check_moved(addr, new, obj, size)

    # ---------------------------------------------------------------- libc

    @rule(size=SIZES, caller=CALLERS)
    def malloc(self, size: int, caller: Caller) -> None:
        p = self.ka.malloc(size, caller)
        if p is not None:
            assert p % (16 if size >= 16 else 8) == 0
        elif size == 0:
            assert self.ka.config.zero_size_policy == "null"
        self._add(p, Obj("malloc", size, self._fill()))

    @rule(n=st.integers(0, 50), size=st.integers(0, 400))
    def calloc(self, n: int, size: int) -> None:
        p = self.ka.calloc(n, size)
        if p is not None:
            assert self.ka.phys.read(p, n * size) == bytes(n * size)
        self._add(p, Obj("malloc", n * size, self._fill()))

    @rule(align=ALIGNS, size=SIZES)
    def aligned_alloc(self, align: int, size: int) -> None:
        p = self.ka.aligned_alloc(align, size)
        if align <= 0 or align & (align - 1):
            assert p is None
        if p is not None:
            assert p % align == 0
        self._add(p, Obj("malloc", size, self._fill()))

    @precondition(lambda self: any(o.kind == "malloc" for o in self.model.values()))
    @rule(i=PICK, caller=CALLERS)
    def free(self, i: int, caller: Caller) -> None:
        addr = self._pick(i, ("malloc",))
        assert addr is not None
        self._forget(addr)
        self.ka.free(addr, caller)

    @precondition(lambda self: any(o.kind == "malloc" for o in self.model.values()))
    @rule(i=PICK, size=SIZES)
    def realloc(self, i: int, size: int) -> None:
        addr = self._pick(i, ("malloc",))
        assert addr is not None
        obj = self.model[addr]
        new = self.ka.realloc(addr, size)
        if new is None:
            assert self.ka.lookup(addr) is not None  # never freed while returning NULL
            assert self.ka.phys.read(addr, obj.size) == bytes([obj.fill]) * obj.size
            return
        self._check_moved(addr, new, obj, size)

    @rule(size=SIZES)
    def realloc_null(self, size: int) -> None:
        self._add(self.ka.realloc(0, size), Obj("malloc", size, self._fill()))

    @precondition(lambda self: any(o.kind in ("kmalloc", "malloc") for o in self.model.values()))
    @rule(i=PICK)
    def use_all_of_ksize(self, i: int) -> None:
        """ksize / malloc_usable_size unlock the whole class: writing it is no overflow."""
        addr = self._pick(i, ("kmalloc", "malloc"))
        assert addr is not None
        obj = self.model[addr]
        usable = self.ka.ksize(addr) if obj.kind == "kmalloc" else self.ka.malloc_usable_size(addr)
        assert usable >= obj.size
        self.ka.phys.fill(addr, usable, obj.fill)

    @precondition(lambda self: bool(self.model))
    @rule(i=PICK)
    def not_leak(self, i: int) -> None:
        addrs = sorted(self.model)
        addr = addrs[i % len(addrs)]
        self.ka.not_leak(addr)
        assert self.ka.lookup(addr).not_leak

    # ---------------------------------------------------------------- pages

    @rule(order=st.integers(0, 5), flags=GFPS, caller=CALLERS)
    def alloc_pages(self, order: int, flags: int, caller: Caller) -> None:
        p = self.ka.alloc_pages(flags, order, caller)
        if p is not None:
            assert p % (PAGE_SIZE << order) == 0
        self._add(p, Obj("pages", PAGE_SIZE << order, self._fill(), order=order, dma=bool(flags & gfp.DMA)))

    @rule(size=st.integers(1, 40_000), flags=GFPS)
    def alloc_pages_exact(self, size: int, flags: int) -> None:
        free = self.ka.buddy.free_pages
        p = self.ka.alloc_pages_exact(size, flags)
        if p is not None:
            assert free - self.ka.buddy.free_pages >= -(-size // PAGE_SIZE)
        self._add(p, Obj("pages_exact", size, self._fill(), dma=bool(flags & gfp.DMA)))

    @precondition(lambda self: any(o.kind in ("pages", "pages_exact") for o in self.model.values()))
    @rule(i=PICK, caller=CALLERS)
    def free_pages(self, i: int, caller: Caller) -> None:
        addr = self._pick(i, ("pages", "pages_exact"))
        assert addr is not None
        obj = self.model[addr]
        self._forget(addr)
        if obj.kind == "pages":
            self.ka.free_pages(addr, obj.order, caller)
        else:
            self.ka.free_pages_exact(addr, obj.size, caller)

    # ---------------------------------------------------------------- caches

    @precondition(lambda self: len(self.caches) < 6)
    @rule(
        size=st.integers(1, 3000),
        align=st.sampled_from([0, 8, 16, 64, 256]),
        flags=st.sampled_from([0, SLAB_HWCACHE_ALIGN, SLAB_CACHE_DMA, SLAB_KALLOC_CTOR]),
    )
    def cache_create(self, size: int, align: int, flags: int) -> None:
        self.caches.append(self.ka.kmem_cache_create(f"c{len(self.caches)}", size, align, flags))

    @precondition(lambda self: bool(self.caches))
    @rule(i=PICK, flags=GFPS, caller=CALLERS)
    def cache_alloc(self, i: int, flags: int, caller: Caller) -> None:
        cache = self.caches[i % len(self.caches)]
        p = self.ka.kmem_cache_alloc(cache, flags, caller)
        if p is not None:
            assert p % cache.align == 0
        dma = bool(cache.flags & SLAB_CACHE_DMA)
        self._add(p, Obj("cache", cache.size, self._fill(), cache=cache, dma=dma))

    @precondition(lambda self: any(o.kind == "cache" for o in self.model.values()))
    @rule(i=PICK, caller=CALLERS)
    def cache_free(self, i: int, caller: Caller) -> None:
        addr = self._pick(i, ("cache",))
        assert addr is not None
        cache = self.model[addr].cache
        assert cache is not None
        self._forget(addr)
        self.ka.kmem_cache_free(cache, addr, caller)

    @precondition(lambda self: bool(self.caches))
    @rule(i=PICK)
    def cache_shrink(self, i: int) -> None:
        assert self.ka.kmem_cache_shrink(self.caches[i % len(self.caches)]) >= 0

    @precondition(lambda self: bool(self.caches))
    @rule(i=PICK)
    def cache_destroy(self, i: int) -> None:
        cache = self.caches[i % len(self.caches)]
        live = sum(1 for o in self.model.values() if o.cache is cache)
        if live:
            try:
                self.ka.kmem_cache_destroy(cache)
            except LeakError as e:
                assert e.fields["live"] == live
            else:
                raise AssertionError("destroying a cache with live objects did not raise")
            return
        self.ka.kmem_cache_destroy(cache)
        self.caches.remove(cache)
        assert self.ka.cache_by_handle(cache.handle) is None

    # ---------------------------------------------------------------- DMA

    @rule(size=st.integers(1, 70_000), flags=GFPS, caller=CALLERS)
    def dma_alloc_coherent(self, size: int, flags: int, caller: Caller) -> None:
        got = self.ka.dma_alloc_coherent(size, flags, caller)
        if got is None:
            return
        cpu, dma = got
        assert cpu == dma and cpu % (PAGE_SIZE << get_order(size)) == 0
        if size <= 64 << 10:
            assert cpu // (64 << 10) == (cpu + size - 1) // (64 << 10)
        assert self.ka.phys.read(cpu, size) == bytes(size)
        self._add(cpu, Obj("dma_coherent", size, self._fill(), dma=True))

    @precondition(lambda self: any(o.kind == "dma_coherent" for o in self.model.values()))
    @rule(i=PICK)
    def dma_free_coherent(self, i: int) -> None:
        addr = self._pick(i, ("dma_coherent",))
        assert addr is not None
        size = self.model[addr].size
        self._forget(addr)
        self.ka.dma_free_coherent(size, addr, addr)

    @precondition(lambda self: len(self.pools) < 4)
    @rule(
        size=st.integers(1, 5000),
        align=st.sampled_from([0, 1, 4, 16, 64, 512]),
        boundary=st.sampled_from([0, 1024, 4096, 8192]),
    )
    def pool_create(self, size: int, align: int, boundary: int) -> None:
        block = -(-max(size, 8) // max(align, 1)) * max(align, 1)
        if boundary and boundary < block:
            try:
                self.ka.dma_pool_create("p", size, align, boundary)
            except BadArgumentError:
                return
            raise AssertionError("a boundary below the block size was accepted")
        self.pools.append(self.ka.dma_pool_create(f"p{len(self.pools)}", size, align, boundary))

    @precondition(lambda self: bool(self.pools))
    @rule(i=PICK, flags=GFPS, caller=CALLERS)
    def pool_alloc(self, i: int, flags: int, caller: Caller) -> None:
        pool = self.pools[i % len(self.pools)]
        got = self.ka.dma_pool_alloc(pool, flags, caller)
        if got is None:
            return
        cpu, dma = got
        assert cpu == dma and cpu % pool.align == 0
        if pool.boundary & (pool.boundary - 1) == 0:  # boundary 0 means "the pool page", maybe not 2^n
            assert cpu // pool.boundary == (cpu + pool.size - 1) // pool.boundary
        self._add(cpu, Obj("dma_pool", pool.object_size, self._fill(), pool=pool, dma=True))

    @precondition(lambda self: any(o.kind == "dma_pool" for o in self.model.values()))
    @rule(i=PICK, caller=CALLERS)
    def pool_free(self, i: int, caller: Caller) -> None:
        addr = self._pick(i, ("dma_pool",))
        assert addr is not None
        pool = self.model[addr].pool
        assert pool is not None
        self._forget(addr)
        self.ka.dma_pool_free(pool, addr, addr, caller)

    @precondition(lambda self: bool(self.pools))
    @rule(i=PICK)
    def pool_destroy(self, i: int) -> None:
        pool = self.pools[i % len(self.pools)]
        if any(o.pool is pool for o in self.model.values()):
            try:
                self.ka.dma_pool_destroy(pool)
            except LeakError:
                return
            raise AssertionError("destroying a busy pool did not raise")
        self.ka.dma_pool_destroy(pool)
        self.pools.remove(pool)

    # ---------------------------------------------------------------- misuse

    def _snapshot(self) -> tuple:
        return (self.ka.buddyinfo(), self.ka.slabinfo(), len(self.ka.reports), sorted(self.ka.live.items()))

    @precondition(lambda self: bool(self.model))
    @rule(
        i=PICK, delta=st.sampled_from([0, 1, 8, 100, 4096]), api=st.sampled_from(["kfree", "free", "pages"])
    )
    def wrong_free(self, i: int, delta: int, api: str) -> None:
        addrs = sorted(self.model)
        addr = addrs[i % len(addrs)]
        kind = self.model[addr].kind
        if delta == 0 and (kind, api) in (("kmalloc", "kfree"), ("malloc", "free")):
            return  # that would be a correct free
        if delta == 0 and kind == "pages" and api == "pages" and self.model[addr].order == 0:
            return
        before = self._snapshot()
        try:
            if api == "kfree":
                self.ka.kfree(addr + delta)
            elif api == "free":
                self.ka.free(addr + delta)
            else:
                self.ka.free_pages(addr + delta, 0)
        except (InvalidFreeError, DoubleFreeError):
            pass
        else:
            # An offset pointer may land on the start of another live object.
            assert addr + delta in self.model or addr + delta == ZERO_SIZE_PTR
            self._forget_after_external_free(addr + delta)
            return
        assert self._snapshot() == before

    def _forget_after_external_free(self, addr: int) -> None:
        if addr in self.model:
            self.model.pop(addr)
            self.freed.append(addr)

    @precondition(lambda self: bool(self.freed))
    @rule(i=PICK)
    def double_free(self, i: int) -> None:
        addr = self.freed[i % len(self.freed)]
        if addr in self.model:
            return
        before = self._snapshot()
        for call in (self.ka.kfree, self.ka.free):
            try:
                call(addr)
            except (InvalidFreeError, DoubleFreeError):
                pass
            else:
                raise AssertionError(f"a second free of {addr:#x} was accepted")
        assert self._snapshot() == before

    @rule(flags=st.integers(0, 1 << 31))
    def bad_flags(self, flags: int) -> None:
        if not flags & ~gfp.KNOWN_MASK:
            return
        before = self._snapshot()
        try:
            self.ka.kmalloc(16, flags)
        except BadArgumentError:
            pass
        else:
            raise AssertionError("unknown GFP bits were accepted")
        assert self._snapshot() == before

    @rule(order=st.integers(0, 3))
    def nofail(self, order: int) -> None:
        try:
            p = self.ka.alloc_pages(gfp.GFP_KERNEL | gfp.NOFAIL, order)
        except OutOfMemoryError as e:
            assert e.severity == "error"
            return
        self._add(p, Obj("pages", PAGE_SIZE << order, self._fill(), order=order))

    # ---------------------------------------------------------------- invariants

    @invariant()
    def allocator_state_is_consistent(self) -> None:
        if not hasattr(self, "ka"):
            return
        self.ka.check()

    @invariant()
    def live_set_matches_the_model_and_data_survives(self) -> None:
        if not hasattr(self, "ka"):
            return
        live = {a.addr: a for a in self.ka.live_allocations()}
        assert live.keys() == self.model.keys()
        for addr, obj in self.model.items():
            assert self.ka.lookup(addr) == live[addr]
            assert live[addr].size == obj.size or obj.kind == "pages"
            assert live[addr].usable >= obj.size
            assert self.ka.phys.read(addr, obj.size) == bytes([obj.fill]) * obj.size, hex(addr)

    @invariant()
    def no_false_reports(self) -> None:
        if not hasattr(self, "ka"):
            return
        assert not [e for e in self.ka.reports if e.kind in BAD_REPORTS]
        assert self.ka.check_poison() == []


AllocatorMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAllocatorState = AllocatorMachine.TestCase
