"""The slab layer: caches of equal-size objects carved from buddy pages (SLUB's model).

A `KmemCache` hands out objects of one size. Its memory is a set of slabs,
each a buddy block of 2^order pages cut into `nobjs` slots of `stride` bytes.
The object sits at offset `left` of its slot, between red zones when the
sanitizer is on (kalloc.debug draws the slot). Slab metadata lives where
SLUB keeps it, in the struct page of the slab's head page (the memmap is
already paid for), so a slab costs nothing beyond its pages; the free list is
a Python list of slot indexes instead of pointers stored in free objects.

Slab states (SLUB's, with one "current" slab per cache for its one CPU):

    state     inuse            listed in            next state when ...
    CPU       any              cache.cpu            full and a refill is needed -> FULL
    PARTIAL   0 < inuse < n    cache.partial        last object freed -> EMPTY (or discarded)
    FULL      inuse == n       nowhere (tracked     an object freed -> PARTIAL
                               in cache.slabs)
    EMPTY     inuse == 0       cache.empty          refill -> CPU; shrink -> pages freed

An empty slab is kept while the cache holds fewer than `min_partial` partial
plus empty slabs (SLUB's min_partial = ilog2(size)/2 clamped to [5, 10]);
beyond that its pages go straight back to the buddy. `kmem_cache_shrink()`
and reclaim free every empty slab. Quarantined objects (kasan) count as in use.

Object states (`Slab.obj[i]`): UNUSED (never handed out since the slab was
made), LIVE, FREE (on the slab's free list), QUARANTINED (freed, waiting in the
quarantine; not on the free list), PERCPU and PERCPU_NEW (in a per-CPU magazine,
kalloc.percpu: counted in use, not on the free list; freed by the user or never handed out).

Invariants:
 1. slab.inuse == number of LIVE, QUARANTINED and PERCPU(_NEW) objects; slab.free holds
    exactly the FREE objects; objects >= next_fresh are UNUSED, others not.
 2. A slab is in exactly the list its `where` names, and its pages map to it
    in Kalloc's page -> slab table.
 3. Objects of a cache never overlap: slot i is [base + i*stride, base + (i+1)*stride).
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc.debug import POISON_INUSE, RED_ACTIVE, FillViews, free_pattern
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order

# Linux's kmem_cache_create() flags (include/linux/slab.h); values are Linux's.
SLAB_CONSISTENCY_CHECKS = 0x00000100
SLAB_RED_ZONE = 0x00000400
SLAB_POISON = 0x00000800
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_CACHE_DMA = 0x00004000
SLAB_STORE_USER = 0x00010000
SLAB_RECLAIM_ACCOUNT = 0x00020000
SLAB_PANIC = 0x00040000
SLAB_NOLEAKTRACE = 0x00800000
SLAB_ACCOUNT = 0x04000000
# kalloc's own: objects are constructed by the caller on first use (the firmware
# runs its C constructor when kmem_cache_alloc reports a fresh object). Like a
# cache with a ctor, its free objects are never poisoned.
SLAB_KALLOC_CTOR = 0x40000000

SLAB_KNOWN_FLAGS = (
    SLAB_CONSISTENCY_CHECKS
    | SLAB_RED_ZONE
    | SLAB_POISON
    | SLAB_HWCACHE_ALIGN
    | SLAB_CACHE_DMA
    | SLAB_STORE_USER
    | SLAB_RECLAIM_ACCOUNT
    | SLAB_PANIC
    | SLAB_NOLEAKTRACE
    | SLAB_ACCOUNT
    | SLAB_KALLOC_CTOR
)

ARCH_SLAB_MINALIGN = 8  # __alignof__(unsigned long long) on RV32
CACHE_LINE_SIZE = 64
SLUB_MAX_ORDER = 3  # PAGE_ALLOC_COSTLY_ORDER: SLUB's slub_max_order default
SLUB_MIN_OBJECTS = 8  # 4 * (fls(nr_cpu_ids) + 1) with one CPU
MIN_PARTIAL, MAX_PARTIAL = 5, 10

OBJ_UNUSED, OBJ_LIVE, OBJ_FREE, OBJ_QUARANTINED = 0, 1, 2, 3
# in a per-CPU magazine (kalloc.percpu): freed by the user / taken fresh by a refill; both in use
OBJ_PERCPU, OBJ_PERCPU_NEW = 4, 5
SLAB_CPU, SLAB_PARTIAL, SLAB_FULL, SLAB_EMPTY = 0, 1, 2, 3
SLAB_STATE_NAMES = ("cpu", "partial", "full", "empty")


def calculate_alignment(flags: int, align: int, size: int) -> int:
    """Object alignment, as mm/slab_common.c calculate_alignment().

    SLAB_HWCACHE_ALIGN aligns to the cache line, halved while the object fits
    in half of it; the result is at least ARCH_SLAB_MINALIGN.
    """
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2 and ralign > ARCH_SLAB_MINALIGN:
            ralign //= 2
        align = max(align, ralign)
    return max(align, ARCH_SLAB_MINALIGN)


def slot_layout(size: int, align: int, redzone: int) -> tuple[int, int]:
    """(left, stride): object offset in its slot and the slot size.

    Like SLUB's calculate_sizes() with SLAB_RED_ZONE: a left red zone padded
    to the alignment, the object, at least `redzone` bytes of right red zone,
    all rounded up to the alignment.
    """
    if redzone:
        left = -(-redzone // align) * align
        stride = -(-(left + size + redzone) // align) * align
    else:
        left = 0
        stride = -(-size // align) * align
    return left, stride


def _calc_slab_order(stride: int, min_objects: int, max_order: int, fract_leftover: int) -> int:
    order = get_order(min_objects * stride)
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % stride <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(stride: int, max_order: int) -> int:
    """Slab order, as mm/slub.c calculate_order().

    Try to fit SLUB_MIN_OBJECTS objects in at most SLUB_MAX_ORDER with at most
    1/16, then 1/8, then 1/4 of the slab wasted; lower the object count while
    that fails; at worst one object in the smallest order that holds it.
    """
    slub_max = min(SLUB_MAX_ORDER, max_order)
    min_objects = min(SLUB_MIN_OBJECTS, max(1, (PAGE_SIZE << slub_max) // stride))
    while min_objects > 1:
        for fraction in (16, 8, 4):
            order = _calc_slab_order(stride, min_objects, slub_max, fraction)
            if order <= slub_max:
                return order
        min_objects -= 1
    order = _calc_slab_order(stride, 1, slub_max, 1)
    if order <= slub_max:
        return order
    return get_order(stride)


def min_partial_for(stride: int) -> int:
    """SLUB's set_min_partial(s, ilog2(s->size) / 2), clamped to [5, 10]."""
    return max(MIN_PARTIAL, min(MAX_PARTIAL, (stride.bit_length() - 1) // 2))


class Slab:
    """One slab: a buddy block of 2^order pages cut into `nobjs` slots."""

    __slots__ = (
        "alloc_site",
        "base",
        "cache",
        "free",
        "free_site",
        "freed_kind",
        "freed_size",
        "inuse",
        "mv",
        "next_fresh",
        "nobjs",
        "obj",
        "order",
        "pfn",
        "where",
    )

    def __init__(self, cache: KmemCache, pfn: int, mv: memoryview) -> None:
        self.cache = cache
        self.pfn = pfn
        self.base = pfn << PAGE_SHIFT
        self.order = cache.order
        self.nobjs = cache.nobjs
        self.inuse = 0
        self.next_fresh = 0
        self.free: list[int] = []
        self.obj = bytearray(cache.nobjs)
        self.alloc_site = [0] * cache.nobjs
        self.free_site = [0] * cache.nobjs
        # what the last object freed from each slot was: its requested size and KIND_* code
        # (a use-after-free or double free names "a freed 177-byte malloc object", not the class)
        self.freed_size = [0] * cache.nobjs
        self.freed_kind = bytearray(cache.nobjs)
        self.mv = mv
        self.where = SLAB_EMPTY

    def object_addr(self, idx: int) -> int:
        return self.base + idx * self.cache.stride + self.cache.left

    def __repr__(self) -> str:
        state = SLAB_STATE_NAMES[self.where]
        return f"Slab({self.cache.name}, {self.base:#x}, {self.inuse}/{self.nobjs} {state})"


class KmemCache:
    """A cache of objects of one size (struct kmem_cache).

    Public attributes: name, handle (0 for kalloc's own caches), size (object
    size), align, flags, ctor, order, nobjs (objects per slab), stride (slot
    size, /proc/slabinfo's objsize), last_alloc_fresh.
    """

    def __init__(
        self,
        name: str,
        size: int,
        align: int,
        flags: int,
        ctor: Callable[[int], None] | None,
        *,
        handle: int,
        redzone: int,
        debug: bool,
        max_order: int,
        internal: bool = False,
    ) -> None:
        self.name = name
        self.handle = handle
        self.size = size
        self.flags = flags
        self.ctor = ctor
        self.internal = internal
        self.align = calculate_alignment(flags, align, size)
        self.dma = bool(flags & SLAB_CACHE_DMA)
        self.redzone = redzone if debug else 0
        # A constructed object must keep its state while free: no poison (SLUB
        # sets __OBJECT_POISON only for caches without a ctor).
        self.poison = debug and ctor is None and not flags & SLAB_KALLOC_CTOR
        self.poison_rz = self.poison and bool(self.redzone)  # the slab paths' usual debug case, inline
        self.left, self.stride = slot_layout(size, self.align, self.redzone)
        self.order = calculate_order(self.stride, max_order)
        self.slab_bytes = PAGE_SIZE << self.order
        self.nobjs = self.slab_bytes // self.stride
        self.min_partial = min_partial_for(self.stride)
        self.last_alloc_fresh = False
        self.destroyed = False
        self.cpu: Slab | None = None
        self.partial: dict[int, Slab] = {}
        self.empty: list[Slab] = []
        self.slabs: dict[int, Slab] = {}
        self.total_allocs = 0
        self.total_frees = 0
        self.drop_patterns()  # built with the first slab (kalloc.slub new_slab): host bytes follow guest RAM

    def drop_patterns(self) -> None:
        """Forget the byte patterns (a cache without slabs needs none; `built` says which)."""
        self.built = False
        self.pat_free = self.pat_rz_bytes = b""
        self.pat_fresh = self.pat_zero = self.pat_rz = self.pat_fresh_rz = memoryview(b"")
        self.pat_pad = self.template = b""
        self.pat_free_cmp = self.pat_rz_left = bytearray()
        self.fill_views = FillViews(memoryview(b""), 0)

    def build_patterns(self, debug: bool) -> None:
        """Byte patterns compared and written on the hot path, built with the cache's first slab.

        They cost about five slabs of host memory, so they exist only while the
        cache holds guest memory (a cache the firmware made and never used, or
        emptied, costs no pattern bytes; kalloc.slub drops them again).
        """
        self.built = True
        size, left, stride = self.size, self.left, self.stride
        self.pat_free = free_pattern(size) if self.poison else b""
        self.pat_fresh = memoryview(bytes([POISON_INUSE]) * size) if self.poison else memoryview(b"")
        self.pat_zero = memoryview(bytes(size))
        self.pat_rz_bytes = bytes([RED_ACTIVE]) * stride  # compared as bytes (memcmp), not as a view
        self.pat_rz = memoryview(self.pat_rz_bytes)
        # an object's fresh fill and its tail red zone in one write: [size - n : 2 * size - n] for n bytes
        self.pat_fresh_rz = (memoryview(bytes([POISON_INUSE]) * size + bytes([RED_ACTIVE]) * size)
                             if self.poison and self.redzone else memoryview(b""))  # fmt: skip
        self.pat_pad = bytes([POISON_INUSE]) * (self.slab_bytes - self.nobjs * stride)
        # compared with a view of guest memory on the hot paths: bytearray != memoryview is one
        # memcmp through the buffer protocol (bytes.startswith parses its arguments on every call,
        # bytes == memoryview compares byte by byte); a free also writes pat_free_cmp, so the bytes
        # an allocation compares with are the ones a free wrote from (fewer host cache lines)
        self.pat_free_cmp = bytearray(self.pat_free)
        self.pat_rz_left = bytearray(self.pat_rz_bytes[:left])
        self.fill_views = FillViews(self.pat_fresh_rz, size)
        if debug:
            slot = bytearray(self.pat_rz)
            if self.poison:
                slot[left : left + size] = self.pat_free
            else:
                slot[left : left + size] = bytes(size)
            self.template = bytes(slot) * self.nobjs + self.pat_pad
        else:
            self.template = b""

    @property
    def wasted_per_slab(self) -> int:
        return self.slab_bytes - self.nobjs * self.stride

    def object_index(self, slab: Slab, addr: int) -> tuple[int, int]:
        """(slot index, offset of addr from that slot's object start)."""
        rel = addr - slab.base
        idx = rel // self.stride
        return idx, rel - idx * self.stride - self.left

    # ---------------------------------------------------------------- lists

    def next_slab(self) -> Slab | None:
        """Retire the full CPU slab and make a partial or empty slab current; None: need a new one."""
        old = self.cpu
        if old is not None:
            old.where = SLAB_FULL if old.inuse == old.nobjs else SLAB_PARTIAL
            if old.where == SLAB_PARTIAL:
                self.partial[old.pfn] = old
            self.cpu = None
        if self.partial:
            slab = self.partial.popitem()[1]
        elif self.empty:
            slab = self.empty.pop()
        else:
            return None
        slab.where = SLAB_CPU
        self.cpu = slab
        return slab

    def install(self, slab: Slab) -> None:
        """Make a newly built slab the current one."""
        self.slabs[slab.pfn] = slab
        slab.where = SLAB_CPU
        self.cpu = slab

    def after_free(self, slab: Slab) -> Slab | None:
        """Move `slab` between lists after one of its objects was freed.

        Returns the slab when it is empty and should be discarded (its pages
        freed by the caller, who also calls `forget`).
        """
        where = slab.where
        if where == SLAB_CPU:
            return None
        if where == SLAB_FULL:
            slab.where = SLAB_PARTIAL
            self.partial[slab.pfn] = slab
            where = SLAB_PARTIAL
        if slab.inuse == 0 and where == SLAB_PARTIAL:
            del self.partial[slab.pfn]
            if len(self.partial) + len(self.empty) < self.min_partial:
                slab.where = SLAB_EMPTY
                self.empty.append(slab)
                return None
            return slab
        return None

    def forget(self, slab: Slab) -> None:
        """Drop a discarded slab from every list."""
        self.slabs.pop(slab.pfn, None)
        self.partial.pop(slab.pfn, None)
        if slab in self.empty:
            self.empty.remove(slab)
        if self.cpu is slab:
            self.cpu = None

    def take_empty(self) -> list[Slab]:
        """Remove and return every empty slab, the current one included if empty (flush_all)."""
        out = self.empty
        self.empty = []
        if self.cpu is not None and self.cpu.inuse == 0:
            out.append(self.cpu)
            self.cpu = None
        for slab in out:
            del self.slabs[slab.pfn]
        return out

    # ---------------------------------------------------------------- counts

    def num_objs(self) -> int:
        return len(self.slabs) * self.nobjs

    def active_objs(self) -> int:
        return sum(s.inuse for s in self.slabs.values())

    def live_objs(self) -> int:
        return sum(s.obj.count(OBJ_LIVE) for s in self.slabs.values())

    def __repr__(self) -> str:
        return f"KmemCache({self.name!r}, size={self.size}, stride={self.stride}, order={self.order})"
