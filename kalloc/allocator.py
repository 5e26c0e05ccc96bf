"""The Kalloc front: builds the allocator's parts over a PhysMem and hands out their API.

A Kalloc is a composition; each part is a public attribute, and the parts are the
allocator's internal interface (kalloc.heaps, kalloc.vmalloc, kalloc.shadow, the
bridge and the replayer use them by these names):

    attribute      class (module)                what it does
    -------------  ----------------------------  --------------------------------------------
    buddy          Buddy (buddy)                 pages: free lists, zones, boot accounting
    live           LiveTable (live)              every live object; lookup, describe, the
                                                 misuse diagnosis of a free (misuse)
    page_owner     dict (live.page_owner)        pfn -> Slab | PoolPage
    gate           RequestGate (gate)            argument and context checks, first on every path
    sanitizer      Sanitizer (sanitize)          the inline red-zone and poison checks
    pages          PagePipeline (pages)          zonelists, reclaim via shrinkers, oom, large objects
    slub           Slub (slub)                   slab alloc/free/new/discard, kmem_cache_*
    pools          DmaPools (dma)                dma_pool_*
    objects        HeapObjects (objects)         free/resize/move of kmalloc and malloc objects
    kmalloc_api    KmallocApi (kmalloc)          kmalloc, kfree, ksize, krealloc, kzalloc, kcalloc
    libc_api       LibcApi (libc)                malloc, free, calloc, realloc, aligned_alloc, the C rules
    dma_api        DmaApi (dma)                  dma_alloc_coherent, dma_free_coherent
    page_api       PageApi (pages)               alloc_pages, free_pages, *_exact
    statistics     Stats (stats)                 stats(), buddyinfo(), slabinfo(), ...
    checker        AllocatorCheck (check)        check(), check_poison()

The kernel-named API (ka.kmalloc, ka.kfree, ka.malloc, ka.alloc_pages, ...) is bound
at construction to the part that serves it, so a call through the front costs no
extra Python call (the bridge makes one per hypercall). A kmalloc's path:
KmallocApi.kmalloc (gate checks inline) -> Slub.alloc -> [Slub.new_slab ->
PagePipeline.alloc_block -> Buddy.alloc_zonelist -> (reclaim: Slub.shrink) -> oom].

Errors: misuse raises before any state changes (BadArgumentError,
InvalidFreeError, DoubleFreeError, LeakError); conditions the run survives are
appended to `reports` (OutOfMemoryError warnings, InvalidContextError,
OutOfBoundsError / UseAfterFreeError found by the sanitizer's checks).

Invariants (kalloc.check proves them; see its docstring for the list):
 1. Every part shares the one `reports` list, the one LiveTable and the one Buddy.
 2. Every API attribute bound here is the method of the part named in the table.
"""

from __future__ import annotations

from collections.abc import Callable

from kalloc.buddy import Buddy
from kalloc.check import AllocatorCheck
from kalloc.config import Config
from kalloc.debug import Quarantine, default_quarantine_bytes
from kalloc.dma import DmaApi, DmaPools
from kalloc.errors import BadArgumentError, KallocError
from kalloc.gate import RequestGate
from kalloc.kmalloc import KmallocApi
from kalloc.libc import LibcApi
from kalloc.live import Allocation, LiveTable
from kalloc.objects import HeapObjects
from kalloc.pages import PageApi, PagePipeline
from kalloc.percpu import Magazines
from kalloc.physmem import PhysMem
from kalloc.sanitize import Sanitizer
from kalloc.slub import Slub
from kalloc.stackdepot import StackDepot
from kalloc.stats import Stats


class Kalloc:
    """A kernel-style allocator (Linux buddy + SLUB model) over physical memory.

    Args:
        phys: the RAM banks (bank.dma marks DMA-reachable banks: zone DMA).
        config: policy settings.
        reserved: [(start, end, label)] physical ranges that are not the
            allocator's (firmware image, stacks); their pages are reserved and
            accounted by label.

    Public attributes: config, phys, depot (StackDepot: callers save stacks here
    and pass the handle as Caller.site), reports (non-fatal reports, in order),
    listeners (callables fn(event, addr, size, usable) told of every "alloc",
    "free" and "resize" of a live object), min_free_kbytes, debug (sanitizer on),
    kasan; and the parts of the module docstring.
    """

    def __init__(
        self,
        phys: PhysMem,
        config: Config = Config(),  # noqa: B008 - Config is an immutable value
        reserved: list[tuple[int, int, str]] | tuple[()] = (),
    ) -> None:
        self.phys = phys
        self.config = config
        self.depot = StackDepot()
        self.reports: list[KallocError] = []
        self.debug = config.debug
        self.kasan = config.sanitize == "kasan"
        self.buddy = buddy = Buddy(phys, config.max_order, config.struct_page_size, list(reserved))
        self.live = live = LiveTable(buddy, config.max_order, phys.contains)
        self.listeners = live.listeners
        self.page_owner = live.page_owner
        self.gate = gate = RequestGate(config, self.reports)
        self.sanitizer = sanitizer = Sanitizer(phys, live, self.reports)
        self.pages = pages = PagePipeline(buddy, phys, config, live, sanitizer, self.reports)
        self.min_free_kbytes = pages.min_free_kbytes
        self.slub = slub = Slub(config, phys, gate, pages, live, sanitizer, self._quarantine())
        self.pools = pools = DmaPools(config, phys, gate, pages, self.reports)
        self.objects = objects = HeapObjects(phys, live, slub, pages, self.debug)
        self.kmalloc_api = KmallocApi(gate, slub, pages, live, objects, self.kasan)
        self.libc_api = LibcApi(config, gate, slub, pages, live, objects, self.kmalloc_api)
        self.dma_api = DmaApi(gate, pages)
        self.page_api = PageApi(gate, pages)
        self.statistics = Stats(config, buddy, pages, slub, pools, live, self.reports)
        self.checker = AllocatorCheck(buddy, slub, pools, live, sanitizer, self.reports, self.debug)
        self.not_leak_hooks: list[Callable[[int], bool]] = []  # kalloc.vmalloc: marks its areas
        self.magazines: Magazines | None = None  # kalloc.percpu.enable(): the per-CPU array caches
        self._bind_api()

    @classmethod
    def standalone(cls, size: int = 16 << 20, dma_size: int = 4 << 20, config: Config = Config()) -> Kalloc:  # noqa: B008
        """An allocator over a fresh bytearray (PhysMem.standalone): the REPL and test setup."""
        return cls(PhysMem.standalone(size=size, dma_size=dma_size), config)

    def _quarantine(self) -> Quarantine | None:
        """KASAN's quarantine (sanitize="kasan"): Config.quarantine_bytes, or scaled to RAM."""
        if not self.kasan:
            return None
        budget = self.config.quarantine_bytes
        if budget is None:
            budget = default_quarantine_bytes(self.buddy.ram_bytes)
        return Quarantine(budget)

    def _bind_api(self) -> None:
        """The kernel-named API: each name is the serving part's bound method (no extra call)."""
        km, libc, dma, pools, pages, slub = (
            self.kmalloc_api, self.libc_api, self.dma_api, self.pools, self.page_api, self.slub
        )  # fmt: skip
        # kmalloc family (kalloc.kmalloc)
        self.kmalloc = km.kmalloc
        self.kzalloc = km.kzalloc
        self.kcalloc = km.kcalloc
        self.kfree = km.kfree
        self.ksize = km.ksize
        self.krealloc = km.krealloc
        # the C library face (kalloc.libc)
        self.malloc = libc.malloc
        self.free = libc.free
        self.calloc = libc.calloc
        self.realloc = libc.realloc
        self.aligned_alloc = libc.aligned_alloc
        self.malloc_usable_size = libc.malloc_usable_size
        # pages (kalloc.pages)
        self.alloc_pages = pages.alloc_pages
        self.free_pages = pages.free_pages
        self.alloc_pages_exact = pages.alloc_pages_exact
        self.free_pages_exact = pages.free_pages_exact
        # caches (kalloc.slub)
        self.kmem_cache_create = slub.kmem_cache_create
        self.kmem_cache_alloc = slub.kmem_cache_alloc
        self.kmem_cache_free = slub.kmem_cache_free
        self.kmem_cache_shrink = slub.kmem_cache_shrink
        self.kmem_cache_destroy = slub.kmem_cache_destroy
        self.cache_by_handle = slub.cache_by_handle
        # DMA (kalloc.dma)
        self.dma_alloc_coherent = dma.dma_alloc_coherent
        self.dma_free_coherent = dma.dma_free_coherent
        self.dma_pool_create = pools.dma_pool_create
        self.dma_pool_alloc = pools.dma_pool_alloc
        self.dma_pool_free = pools.dma_pool_free
        self.dma_pool_destroy = pools.dma_pool_destroy
        self.pool_by_handle = pools.pool_by_handle

    # ================================================================ objects

    def live_allocations(self) -> list[Allocation]:
        """Every live object, sorted by address."""
        return self.live.allocations()

    def lookup(self, addr: int) -> Allocation | None:
        """The live object whose slot (object, red zones, padding) or page block contains addr."""
        return self.live.lookup(addr)

    def describe(self, addr: int) -> dict | None:
        """What lies at addr, for reports: a live or freed object (with sites), or None.

        Returns {"state": "live" | "free" | "quarantined", "object": {addr, size,
        kind}, "offset": addr - object start, "alloc_site", "free_site"}.
        """
        return self.live.describe(addr)

    def not_leak(self, addr: int) -> None:
        """kmemleak_not_leak(): leave this live object out of leak reports. 0 is a no-op."""
        if addr == 0:
            return
        if addr not in self.live and not any(hook(addr) for hook in self.not_leak_hooks):
            raise BadArgumentError(
                f"not_leak() of {addr:#x}, which is not the start of a live object", addr=addr
            )
        self.live.not_leak.add(addr)

    # ================================================================ checks and statistics

    def check(self) -> None:
        """Walk all state and prove the invariants; raises InvariantError naming the broken one."""
        self.checker.check()

    def check_poison(self) -> list[KallocError]:
        """Walk red zones and poison of every slab object, pool block and large heap object.

        Returns the damage found and repairs it; the errors are not added to
        `reports`. Does nothing with sanitize="off".
        """
        return self.checker.check_poison()

    def stats(self) -> dict:
        """Everything countable, as a JSON-able dict (see docs/allocator.md, "Statistics")."""
        return self.statistics.stats()

    def buddyinfo(self) -> str:
        """/proc/buddyinfo: free block counts per order, one line per populated zone."""
        return self.statistics.buddyinfo()

    def slabinfo(self) -> str:
        """/proc/slabinfo, version 2.1."""
        return self.statistics.slabinfo()

    def zoneinfo(self) -> str:
        """The watermark lines of /proc/zoneinfo for every populated zone."""
        return self.statistics.zoneinfo()

    def poolinfo(self) -> str:
        """DMA pools as mm/dmapool.c's sysfs file."""
        return self.statistics.poolinfo()
