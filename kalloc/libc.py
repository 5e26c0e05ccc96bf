"""The C library face: malloc, free, calloc, realloc, aligned_alloc, malloc_usable_size.

Built on the kmalloc size classes, with the policies C leaves to the
implementation fixed and documented here (and in docs/allocator.md):

    alignment     16 bytes for every request of 16 bytes or more (RV32's
                  max_align_t is 16: long double is 128-bit), 8 below (an
                  object smaller than 16 bytes cannot need 16).
    small         1..8192 bytes: the kmalloc class caches (kind "malloc").
    large         above 8192 bytes: exactly ceil(size / 4096) pages, no
                  power-of-two waste (alloc_pages_exact's split).
    largest       Config.heap_max (default 1 GiB) and the buddy's largest
                  block (PAGE_SIZE << max_order, 4 MiB by default); above
                  either, NULL with an oom warning.
    zero size     Config.zero_size_policy "unique" (default): malloc(0),
                  calloc(0, n) and aligned_alloc(a, 0) return a unique
                  pointer to a zero-size object that must be freed; every
                  access to it is out of bounds. "null": they return NULL.
    realloc(p,0)  "unique": shrinks p to a zero-size object and returns a
                  non-NULL pointer (p itself or a moved copy) that must be
                  freed. "null": returns NULL and leaves p allocated. Neither
                  frees p while returning NULL, so code that treats NULL as
                  "failed, p still valid" and frees p later cannot double
                  free (the failure behind the 2019 WhatsApp double free). The
                  price is a small leak in code that assumed realloc(p, 0)
                  freed p, which the leak report names.
    realloc       NULL p: malloc. In place when the new size lands in the
                  same class (or page count); otherwise move: copy min(old,
                  new) bytes, free the old object. A shrink never fails (if
                  no smaller object is available it stays in place). On
                  failure: NULL, p untouched. Under sanitize="kasan" it
                  always moves, so stale pointers to the old copy are caught.
                  In place or moved, the realloc is the object's allocation
                  site from then on (leak and bounds reports name its line).
    calloc        n * size above 2^32 - 1 (the firmware's size_t) or above
                  heap_max: NULL with an oom warning. Zeroed.
    aligned_alloc C17 with DR 460: any size, alignment a power of two up to
                  PAGE_SIZE << max_order; otherwise NULL (no report, as C
                  expects callers to probe). <= 16: a kmalloc class; up to
                  2048: a naturally aligned "aligned-N" cache; above: pages.
    free(NULL)    no-op.
    mixing        malloc memory must be freed with free and kmalloc memory
                  with kfree: a crossed pair is an invalid-free (like ASan's
                  alloc-dealloc-mismatch). ksize and malloc_usable_size
                  accept both.

malloc and friends allocate as GFP_KERNEL: calling them from an interrupt or
with interrupts disabled is reported as invalid-context (the C heap is not
interrupt-safe on a real board either).

The rules above are methods of LibcApi (request_ok, within_heap_max,
calloc_total, realloc_object, aligned_alloc_ok) so every heap policy behind the
C library face (kalloc.heaps) applies the same ones.

Invariants:
 1. Every malloc object has kind "malloc" and lives in a kmalloc class slot,
    an aligned-N slot, or at the head of exactly pages_for(size) pages.
 2. The usable size of an object is >= its requested size.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc import gfp as G
from kalloc.config import TASK, Caller, Config, Context
from kalloc.gate import U32_MAX, RequestGate
from kalloc.kinds import KIND_KMALLOC, KIND_MALLOC
from kalloc.kmalloc import KMALLOC_MAX_CACHE_SIZE, KmallocApi, class_name, kmalloc_index
from kalloc.live import LiveTable
from kalloc.objects import HeapObjects
from kalloc.page import PAGE_SHIFT, PAGE_SIZE, get_order, pages_for
from kalloc.pages import PagePipeline
from kalloc.slab import KmemCache
from kalloc.slub import Slub

MALLOC_ALIGN = 16
ALIGNED_CACHE_MAX = 2048  # larger aligned requests take whole pages
SIZE_MAX_32 = 0xFFFF_FFFF
_GFP_MALLOC = G.GFP_KERNEL
_TASK = Context.TASK


class LibcApi:
    """malloc, free, calloc, realloc, aligned_alloc, malloc_usable_size, and the C library's rules."""

    def __init__(
        self,
        config: Config,
        gate: RequestGate,
        slub: Slub,
        pages: PagePipeline,
        live: LiveTable,
        objects: HeapObjects,
        kmalloc: KmallocApi,
    ) -> None:
        self.config = config
        self.heap_max = config.heap_max
        self.small_max = min(config.heap_max, KMALLOC_MAX_CACHE_SIZE)  # malloc's sizes served by a class
        self.kasan = config.sanitize == "kasan"
        self.gate = gate
        self.slub = slub
        self.pages = pages
        self.live = live
        self.objects = objects
        self.records = live.records
        self.page_owner = live.page_owner
        self.kmalloc = kmalloc
        self.by_size = kmalloc.by_size
        self.aligned_caches: dict[int, KmemCache] = {}

    # ================================================================ the rules, shared by every heap policy

    def request_ok(self, size: int, caller: Caller, api: str, gfp: int = _GFP_MALLOC) -> bool:
        """The gate every C-face request of `size` bytes passes: False means return NULL.

        Outside task context the request is reported invalid-context and still served,
        as Linux does; a zero size is NULL under the "null" zero-size policy.
        """
        if caller.context is not Context.TASK:
            self.gate.invalid_context(gfp, caller, api)
        return size != 0 or self.config.zero_size_policy != "null"

    def within_heap_max(self, size: int, caller: Caller, gfp: int = _GFP_MALLOC) -> bool:
        """False, with an oom warning, for a request beyond Config.heap_max."""
        if size > self.config.heap_max:
            self.pages.too_large(gfp, size, caller, f"{size} bytes exceed heap_max ({self.config.heap_max})")
            return False
        return True

    def calloc_total(self, n: int, size: int, caller: Caller, gfp: int = _GFP_MALLOC) -> int | None:
        """n * size after calloc's rules, or None when calloc must return NULL.

        Raises BadArgumentError for a negative or non-integer count or size; reports
        invalid-context outside task context (and goes on, as Linux does); an n * size
        beyond 32 bits is an oom warning and NULL; a zero total is NULL under the
        "null" zero-size policy.
        """
        self.gate.check_size(n, caller, "n")
        self.gate.check_size(size, caller)
        if caller.context is not Context.TASK:
            self.gate.invalid_context(gfp, caller, "calloc")
        total = n * size
        if total > SIZE_MAX_32:
            self.pages.too_large(gfp, total, caller, f"calloc({n}, {size}) overflows 32 bits")
            return None
        if total == 0 and self.config.zero_size_policy == "null":
            return None
        return total

    def realloc_object(
        self,
        addr: int,
        size: int,
        caller: Caller,
        malloc: Callable[[int, Caller], int | None],
        usable_for: Callable[[int], int],
        sized: Callable[[int, int, Caller], int | None],
    ) -> int | None:
        """realloc for a heap whose objects are the allocator's malloc records (kmalloc, slab heaps).

        The heap supplies how it allocates (`malloc`, `sized(size, gfp, caller)`) and the usable
        size a request would get (`usable_for`). realloc(NULL, n) is malloc; the object stays in
        place when its usable size would not change (never under kasan: a stale pointer must
        fault); a shrink that cannot move stays in place; a failed grow returns None and leaves
        the object as it was.
        """
        self.gate.check_size(size, caller)
        if addr == 0:
            return malloc(size, caller)
        rec = self.live.take_for_free(addr, KIND_MALLOC, "realloc", caller)
        if not self.request_ok(size, caller, "realloc") or not self.within_heap_max(size, caller):
            return None
        usable = self.live.usable(addr, rec)
        objects = self.objects
        if not self.kasan and usable_for(size) == usable:
            objects.resize_in_place(addr, rec, size, 0, caller)
            return addr
        shrink = size <= usable
        new = sized(size, _GFP_MALLOC | (G.NOWARN if shrink else 0), caller)
        if new is None:
            if shrink:
                objects.resize_in_place(addr, rec, size, 0, caller)
                return addr
            return None
        objects.move_contents(new, addr, rec, size, 0)
        objects.free(addr, rec, caller)
        return new

    def aligned_alloc_ok(self, align: int, size: int, caller: Caller, gfp: int = _GFP_MALLOC) -> bool:
        """True when aligned_alloc(align, size) may be served; False means return NULL.

        C17 with DR 460: `size` need not be a multiple of `align`; an alignment that
        is not a power of two up to the largest buddy block gives NULL, silently (the
        caller asked for something C says is unsupported, not for too much memory). A
        size beyond heap_max is an oom warning and NULL.
        """
        self.gate.check_size(size, caller)
        max_align = PAGE_SIZE << self.config.max_order
        if not isinstance(align, int) or align <= 0 or align & (align - 1) or align > max_align:
            return False
        return self.request_ok(size, caller, "aligned_alloc", gfp) and self.within_heap_max(size, caller, gfp)

    # ================================================================ the C allocation functions

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        """Allocate `size` bytes (see the module policies); returns the address or None. Pair with free()."""
        if not (isinstance(size, int) and 0 < size <= U32_MAX and caller.context is _TASK):
            # the unusual cases, apart from the hot path: a bad size, a report, size 0's policy
            self.gate.check_size(size, caller)
            if not self.request_ok(size, caller, "malloc"):
                return None
        if size <= self.small_max:  # sized(), inlined for a class slot (the hot path)
            return self.slub.alloc(self.by_size[size], size, _GFP_MALLOC, caller, KIND_MALLOC)
        return self.sized(size, _GFP_MALLOC, caller)

    def sized(self, size: int, gfp: int, caller: Caller) -> int | None:
        """malloc after its argument checks: a kmalloc class slot, or exact pages above 8 KiB."""
        if size > self.heap_max and not self.within_heap_max(size, caller, gfp):
            return None
        if size <= KMALLOC_MAX_CACHE_SIZE:
            return self.slub.alloc(self.by_size[size], size, gfp, caller, KIND_MALLOC)
        return self.pages.alloc_exact(size, gfp, caller, KIND_MALLOC)

    def free(self, addr: int, caller: Caller = TASK) -> None:
        """Free what malloc, calloc, realloc or aligned_alloc returned; free(0) does nothing. Context: any.

        Raises InvalidFreeError (never allocated, interior pointer, kmalloc or
        other API memory) or DoubleFreeError.
        """
        if addr == 0:
            return
        rec = self.records.get(addr)
        if rec is None or rec[1] != KIND_MALLOC:  # rec.kind (a tuple index is cheaper)
            raise self.live.diagnose_free(addr, "free", caller)
        slab = self.page_owner.get(addr >> PAGE_SHIFT)  # HeapObjects.free, inlined: the hot path
        if slab is None:
            self.pages.release(addr, rec, caller)
        else:
            self.slub.free(slab, addr, rec, caller)  # type: ignore[arg-type]  # a malloc object's owner is a Slab

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        """Zeroed array of n objects; n * size overflowing 32 bits or heap_max gives None."""
        total = self.calloc_total(n, size, caller)
        if total is None:
            return None
        return self.sized(total, _GFP_MALLOC | G.ZERO, caller)

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        """Resize a malloc object (see the module's realloc and realloc(p, 0) policies)."""
        return self.realloc_object(addr, size, caller, self.malloc, self.usable_for, self.sized)

    @staticmethod
    def usable_for(size: int) -> int:
        """The usable size malloc(size) would give."""
        if size <= KMALLOC_MAX_CACHE_SIZE:
            return kmalloc_index(max(size, 1))
        return pages_for(size) * PAGE_SIZE

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        """C17 aligned_alloc: `size` bytes aligned to `align`; None for a bad alignment. Pair with free()."""
        if not self.aligned_alloc_ok(align, size, caller):
            return None
        need = max(size, align)
        if align <= MALLOC_ALIGN and need <= KMALLOC_MAX_CACHE_SIZE:
            return self.slub.alloc(self.by_size[need], size, _GFP_MALLOC, caller, KIND_MALLOC)
        if need <= ALIGNED_CACHE_MAX:
            cache = self._aligned_cache(1 << (need - 1).bit_length())
            return self.slub.alloc(cache, size, _GFP_MALLOC, caller, KIND_MALLOC)
        return self.pages.alloc_exact(size, _GFP_MALLOC, caller, KIND_MALLOC, get_order(align))

    def _aligned_cache(self, cls: int) -> KmemCache:
        """The naturally aligned cache of `cls`-byte objects, made on first use."""
        cache = self.aligned_caches.get(cls)
        if cache is None:
            cache = self.slub.make_cache(f"aligned-{class_name(cls)}", cls, cls, 0, None, internal=True)
            assert cache is not None
            self.aligned_caches[cls] = cache
        return cache

    def malloc_usable_size(self, addr: int) -> int:
        """Usable bytes of a malloc (or kmalloc) object; 0 for NULL. The whole of it may then be used."""
        if addr == 0:
            return 0
        rec = self.records.get(addr)
        if rec is None or rec.kind not in (KIND_MALLOC, KIND_KMALLOC):
            raise self.kmalloc.not_live("malloc_usable_size", addr, rec is None, "a live heap object")
        return self.kmalloc.ksize(addr)
