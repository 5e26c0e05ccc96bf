"""The kmalloc family: general-purpose kernel allocations from size-class caches.

Size classes are Linux's kmalloc caches (mm/slab_common.c kmalloc_info[],
KMALLOC_MIN_SIZE 8, KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1):

    kmalloc-8 16 32 64 96 128 192 256 512 1k 2k 4k 8k

A request goes to the smallest class that holds it (kmalloc_index(): the
size_index table up to 192, powers of two above), so 65..96 bytes use
kmalloc-96 and 129..192 use kmalloc-192. __GFP_DMA requests use the
dma-kmalloc-* twins, whose slabs come from ZONE_DMA. Requests above 8 KiB go
straight to the page allocator as one block of get_order(size) pages
(kmalloc_large()).

Zero size: kmalloc(0) returns ZERO_SIZE_PTR (16), Linux's distinct non-NULL
"no memory" pointer; kfree(16) and kfree(0) do nothing and ksize(16) is 0.
Dereferencing 16 faults (the machine leaves low memory unmapped).

Alignment: every object is 16-byte aligned (kmalloc-8's 8), in every sanitize
mode. Linux also aligns power-of-two classes to their size; kalloc does not,
because with red zones that would double every slab (see docs/allocator.md).
kmem_cache_create(align=) and aligned_alloc() give larger alignments.

ksize() returns the class size, and unlocks the tail: after it the caller may
use the whole class without tripping the red zone (as SLUB's ksize() sets
orig_size to the object size).

Invariants:
 1. KMALLOC_CLASSES is increasing; KmallocApi.by_size[n] is the smallest class >= n.
 2. A kmalloc object is either a LIVE slot of a kmalloc cache or the head of a
    page block of get_order(size) pages; both carry kind "kmalloc".
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Context
from kalloc.errors import BadArgumentError, KallocError, UseAfterFreeError
from kalloc.gate import RequestGate
from kalloc.kinds import KIND_CACHE, KIND_KMALLOC, KIND_MALLOC
from kalloc.live import LiveTable
from kalloc.misuse import freed_object_at, object_phrase
from kalloc.objects import HeapObjects
from kalloc.page import PAGE_SHIFT
from kalloc.pages import PagePipeline
from kalloc.slab import SLAB_CACHE_DMA, KmemCache
from kalloc.slub import Slub

ZERO_SIZE_PTR = 16  # include/linux/slab.h: ((void *)16)
KMALLOC_MIN_SIZE = 8
KMALLOC_CLASSES: tuple[int, ...] = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
KMALLOC_MAX_CACHE_SIZE = KMALLOC_CLASSES[-1]  # 2 * PAGE_SIZE, as SLUB's KMALLOC_SHIFT_HIGH
KMALLOC_ALIGN = 16  # every class from 16 up; kmalloc-8 objects are 8-aligned


def kmalloc_index(size: int) -> int:
    """Class size for a request of 1..KMALLOC_MAX_CACHE_SIZE bytes (Linux's kmalloc_index)."""
    if size <= 8:
        return 8
    if 64 < size <= 96:
        return 96
    if 128 < size <= 192:
        return 192
    return 1 << (size - 1).bit_length()


def class_name(size: int) -> str:
    """kmalloc-96, kmalloc-1k, kmalloc-8k (the names /proc/slabinfo shows)."""
    return f"{size >> 10}k" if size >= 1024 else str(size)

_UNKNOWN_GFP = ~G.KNOWN_MASK
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_DMA = G.DMA
_TASK = Context.TASK


class KmallocApi:
    """kmalloc, kfree, ksize, krealloc, kzalloc, kcalloc over the kmalloc size-class caches.

    Public attributes: by_size / dma_by_size ([KmemCache], index = request size
    0..KMALLOC_MAX_CACHE_SIZE): the class cache a request of that size uses.
    """

    def __init__(
        self,
        gate: RequestGate,
        slub: Slub,
        pages: PagePipeline,
        live: LiveTable,
        objects: HeapObjects,
        kasan: bool,
    ) -> None:
        self.gate = gate
        self.slub = slub
        self.pages = pages
        self.live = live
        self.objects = objects
        self.records = live.records
        self.page_owner = live.page_owner
        self.kasan = kasan
        self.by_size, self.dma_by_size = self._create_caches(slub)

    @staticmethod
    def _create_caches(slub: Slub) -> tuple[list[KmemCache], list[KmemCache]]:
        """create_kmalloc_caches(): the normal and DMA classes, and the size -> cache tables."""
        normal: dict[int, KmemCache] = {}
        dma: dict[int, KmemCache] = {}
        for prefix, table, flags in (("kmalloc-", normal, 0), ("dma-kmalloc-", dma, SLAB_CACHE_DMA)):
            for size in KMALLOC_CLASSES:
                align = 8 if size < KMALLOC_ALIGN else KMALLOC_ALIGN
                cache = slub.make_cache(prefix + class_name(size), size, align, flags, None, internal=True)
                assert cache is not None, "a kmalloc class does not fit in a slab"
                table[size] = cache
        classes = [kmalloc_index(max(n, 1)) for n in range(KMALLOC_MAX_CACHE_SIZE + 1)]
        return [normal[c] for c in classes], [dma[c] for c in classes]

    def kmalloc(self, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """Allocate `size` bytes; returns the address, ZERO_SIZE_PTR for 0, or None.

        Pair with kfree(). Context: GFP_ATOMIC / GFP_NOWAIT from interrupts.
        Raises BadArgumentError for unknown GFP bits or a size beyond 32 bits.
        Sizes above the largest buddy block fail with an oom report.
        """
        if gfp & _UNKNOWN_GFP or gfp < 0:
            self.gate.check_gfp(gfp, caller)
        if not 0 < size <= KMALLOC_MAX_CACHE_SIZE:
            self.gate.check_size(size, caller)
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK:
            self.gate.invalid_context(gfp, caller, "kmalloc")
        if 0 < size <= KMALLOC_MAX_CACHE_SIZE:
            cache = self.dma_by_size[size] if gfp & _DMA else self.by_size[size]
            return self.slub.alloc(cache, size, gfp, caller, KIND_KMALLOC)
        return self._checked(size, gfp, caller)

    def _checked(self, size: int, gfp: int, caller: Caller) -> int | None:
        """kmalloc() after its argument and context checks."""
        if 0 < size <= KMALLOC_MAX_CACHE_SIZE:
            cache = self.dma_by_size[size] if gfp & _DMA else self.by_size[size]
            return self.slub.alloc(cache, size, gfp, caller, KIND_KMALLOC)
        self.gate.check_size(size, caller)
        if size == 0:
            return ZERO_SIZE_PTR
        return self.pages.alloc_large(size, gfp, caller, KIND_KMALLOC)

    def kzalloc(self, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """kmalloc(size, gfp | __GFP_ZERO)."""
        return self.kmalloc(size, gfp | G.ZERO, caller)

    def kcalloc(self, n: int, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """Zeroed array of n elements; n * size beyond 32 bits fails (NULL, oom report)."""
        gate = self.gate
        gate.check_gfp(gfp, caller)
        gate.check_size(n, caller, "n")
        gate.check_size(size, caller)
        if n * size > 0xFFFF_FFFF:
            self.pages.too_large(gfp, n * size, caller, f"kcalloc({n}, {size}) overflows 32 bits")
            return None
        return self.kmalloc(n * size, gfp | G.ZERO, caller)

    def kfree(self, addr: int, caller: Caller = TASK) -> None:
        """Free a kmalloc object. kfree(0) and kfree(ZERO_SIZE_PTR) do nothing. Context: any.

        Raises InvalidFreeError (never allocated, interior pointer, memory of
        another API such as malloc, a cache, pages or a DMA pool) or
        DoubleFreeError (with the previous free's site).
        """
        if addr == 0 or addr == ZERO_SIZE_PTR:
            return
        rec = self.records.get(addr)
        if rec is None or rec.kind != KIND_KMALLOC:
            raise self.live.diagnose_free(addr, "kfree", caller)
        slab = self.page_owner.get(addr >> PAGE_SHIFT)  # HeapObjects.free, inlined: the hot path
        if slab is None:
            self.pages.release(addr, rec, caller)
        else:
            self.slub.free(slab, addr, rec, caller)  # type: ignore[arg-type]  # a kmalloc object's owner is a Slab

    def ksize(self, addr: int) -> int:
        """Usable size of a kmalloc, malloc or cache object (its class or pages); 0 for 0 and 16.

        The caller may then use all of it: the tail red zone is lifted.
        Raises UseAfterFreeError for a freed object (with its sites), BadArgumentError
        for anything else.
        """
        if addr == 0 or addr == ZERO_SIZE_PTR:
            return 0
        live = self.live
        rec = live.records.get(addr)
        if rec is None or rec.kind not in (KIND_KMALLOC, KIND_MALLOC, KIND_CACHE):
            raise self.not_live("ksize", addr, rec is None, "a live kmalloc object")
        usable = live.usable(addr, rec)
        if rec.size < usable and addr not in live.ksized:
            live.ksized.add(addr)
            if live.listeners:
                live.notify("resize", addr, usable, usable)
        return usable

    def not_live(self, api: str, addr: int, dangling: bool, what: str) -> KallocError:
        """The error for a size query of addr, which is not `what`: use-after-free if it was freed.

        dangling: no live object starts at addr (else it is one of another kind: bad-hypercall).
        """
        freed = freed_object_at(self.live, addr) if dangling else None
        if freed is None:
            return BadArgumentError(f"{api}() of {addr:#x}, which is not {what}", addr=addr)
        obj, alloc_site, free_site = freed
        return UseAfterFreeError(
            f"{api}() of a freed {object_phrase(obj)}",
            addr=addr,
            object=obj,
            alloc_site=alloc_site,
            free_site=free_site,
        )

    def krealloc(self, addr: int, size: int, gfp: int, caller: Caller = TASK) -> int | None:
        """Resize a kmalloc object, as Linux's krealloc().

        addr 0 or ZERO_SIZE_PTR: kmalloc(size). size 0: kfree(addr), returns
        ZERO_SIZE_PTR. If the object's usable size holds `size` it stays in
        place (except under sanitize="kasan", where it always moves); otherwise
        a new object gets min(old, new) bytes copied and the old one is freed.
        Either way the krealloc is the object's allocation site from then on.
        On failure returns None and the old object is untouched.
        """
        self.gate.check_gfp(gfp, caller)
        self.gate.check_size(size, caller)
        if addr == 0 or addr == ZERO_SIZE_PTR:
            return self.kmalloc(size, gfp, caller)
        rec = self.live.take_for_free(addr, KIND_KMALLOC, "krealloc", caller)
        if size == 0:
            self.kfree(addr, caller)
            return ZERO_SIZE_PTR
        self.gate.may_sleep(gfp, caller, "krealloc")
        if not self.kasan and size <= self.live.usable(addr, rec):
            self.objects.resize_in_place(addr, rec, size, gfp, caller)
            return addr
        new = self._checked(size, gfp & ~G.ZERO, caller)
        if new is None:
            return None
        self.objects.move_contents(new, addr, rec, size, gfp)
        self.kfree(addr, caller)
        return new
