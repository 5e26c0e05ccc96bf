"""How much is allocated: stats() and the /proc-style text formats.

`Stats` reports one allocator's state: stats() as a JSON-able dict, and the
text formats people know, byte for byte where Linux defines them:

    buddyinfo()  /proc/buddyinfo (mm/vmstat.c frag_show_print)
    slabinfo()   /proc/slabinfo version 2.1 (mm/slab_common.c cache_show)
    zoneinfo()   the watermark part of /proc/zoneinfo (zoneinfo_show_print)
    poolinfo()   a DMA pool's sysfs "pools" file (mm/dmapool.c pools_show)

Fragmentation is Mel Gorman's unusable free space index: for order j, the
fraction of free memory in blocks too small to serve an order-j request,
Fu(j) = (free_pages - sum_{i>=j} 2^i * k_i) / free_pages, reported like
Linux's debugfs extfrag/unusable_index in thousandths (0.000 .. 1.000).

Invariants:
 1. Every output is deterministic: built from ints in a fixed order (zones by
    index, caches newest first as /proc/slabinfo lists them, pools by handle),
    with no object ids and no wall-clock times.
 2. stats() holds only JSON-able values.
"""

from __future__ import annotations

from typing import Any

from kalloc.buddy import Buddy
from kalloc.config import Config
from kalloc.dma import DmaPools
from kalloc.errors import KallocError
from kalloc.kinds import (
    KIND_ALLOC_API,
    KIND_CACHE,
    KIND_DMA_COHERENT,
    KIND_DMA_POOL,
    KIND_KMALLOC,
    KIND_MALLOC,
    KIND_NAMES,
    KIND_PAGES,
    KIND_PAGES_EXACT,
)
from kalloc.live import Allocation, LiveTable
from kalloc.page import PAGE_SIZE
from kalloc.pages import PagePipeline
from kalloc.slub import Slub
from kalloc.zone import Zone

_NO_TUNABLES = (0, 0, 0)

# The kind codes and the Allocation record live in kalloc.kinds and kalloc.live;
# they are importable from here too, where they were first defined.
__all__ = [
    "KIND_ALLOC_API",
    "KIND_CACHE",
    "KIND_DMA_COHERENT",
    "KIND_DMA_POOL",
    "KIND_KMALLOC",
    "KIND_MALLOC",
    "KIND_NAMES",
    "KIND_PAGES",
    "KIND_PAGES_EXACT",
    "Allocation",
    "Stats",
    "unusable_index",
]

def unusable_index(free_blocks: list[int]) -> list[int]:
    """Unusable free space index per order, in thousandths (Linux's unusable_free_index())."""
    free_pages = sum(n << o for o, n in enumerate(free_blocks))
    out = []
    for order in range(len(free_blocks)):
        if free_pages == 0:
            out.append(0)
            continue
        suitable = sum(n << o for o, n in enumerate(free_blocks) if o >= order)
        out.append((free_pages - suitable) * 1000 // free_pages)
    return out


def _thousandths(v: int) -> float:
    return round(v / 1000, 3)


class Stats:
    """Statistics and /proc formats of one allocator."""

    def __init__(
        self,
        config: Config,
        buddy: Buddy,
        pages: PagePipeline,
        slub: Slub,
        pools: DmaPools,
        live: LiveTable,
        reports: list[KallocError],
    ) -> None:
        self.config = config
        self.buddy = buddy
        self.pages = pages
        # /proc/slabinfo's tunables <limit> <batchcount> <sharedfactor> per cache name: kalloc.percpu's
        # array caches when enabled; 0 0 0 otherwise, as SLUB shows
        self.tunables: dict[str, tuple[int, int, int]] = {}
        self.slub = slub
        self.pools = pools
        self.live = live
        self.reports = reports

    def stats(self) -> dict[str, Any]:
        """Everything countable, as a JSON-able dict (see docs/allocator.md, "Statistics")."""
        zones = self.buddy.populated_zones
        return {
            "config": {
                "max_order": self.config.max_order,
                "min_free_kbytes": self.pages.min_free_kbytes,
                "sanitize": self.config.sanitize,
                "redzone": self.config.redzone,
                "struct_page_size": self.config.struct_page_size,
                "zero_size_policy": self.config.zero_size_policy,
            },
            "zones": [self._zone_stats(z) for z in zones],
            "buddyinfo": {z.name: z.nr_free_blocks() for z in zones},
            "fragmentation": {
                z.name: {
                    "unusable_index": [_thousandths(v) for v in unusable_index(z.nr_free_blocks())],
                    "largest_free_block": (PAGE_SIZE << z.largest_free_order()) if z.nr_free else 0,
                }
                for z in zones
            },
            "slabinfo": [self._slab_row(c) for c in reversed(self.slub.all_caches) if not c.destroyed],
            "dma_pools": [self._pool_row(p) for p in self.pools.all_pools if not p.destroyed],
            "totals": self._totals(),
        }

    def _zone_stats(self, z: Zone) -> dict[str, Any]:
        return {
            "name": z.name,
            "start_pfn": z.start_pfn,
            "end_pfn": z.end_pfn,
            "pages": {
                "spanned": z.spanned,
                "present": z.present,
                "managed": z.managed,
                "free": z.nr_free,
                "reserved": dict(self.buddy.zone_reserved[z.idx]),
            },
            "watermarks": {"min": z.wmark_min, "low": z.wmark_low, "high": z.wmark_high},
            "lowmem_reserve": list(z.lowmem_reserve),
            "min_free_seen": z.min_free_seen,
            "low_wmark_hits": z.low_wmark_hits,
            "largest_free_order": z.largest_free_order(),
        }

    def _slab_row(self, c: Any) -> dict[str, Any]:
        nslabs = len(c.slabs)
        return {
            "name": c.name,
            "active_objs": c.active_objs(),
            "num_objs": c.num_objs(),
            "objsize": c.stride,
            "object_size": c.size,
            "align": c.align,
            "objperslab": c.nobjs,
            "pagesperslab": 1 << c.order,
            "active_slabs": nslabs,
            "num_slabs": nslabs,
            "empty_slabs": len(c.empty) + (1 if c.cpu is not None and c.cpu.inuse == 0 else 0),
            "handle": c.handle,
        }

    def _pool_row(self, p: Any) -> dict[str, Any]:
        return {
            "name": p.name,
            "handle": p.handle,
            "size": p.size,
            "align": p.align,
            "boundary": p.boundary,
            "allocation": p.allocation,
            "blocks_per_page": len(p.offsets),
            "pages": len(p.pages) << p.order,
            "active_blocks": p.active_blocks(),
            "total_blocks": len(p.pages) * len(p.offsets),
        }

    def _totals(self) -> dict[str, Any]:
        b = self.buddy
        slab_pages = sum(len(c.slabs) << c.order for c in self.slub.all_caches)
        pool_pages = sum(len(p.pages) << p.order for p in self.pools.all_pools)
        return {
            "ram_bytes": b.ram_bytes,
            "free_bytes": b.free_pages * PAGE_SIZE,
            "used_bytes": b.used_pages * PAGE_SIZE,
            "high_water_used_bytes": b.used_high_water * PAGE_SIZE,
            "reserved_bytes": b.reserved_bytes(),
            "metadata_bytes": {"memmap": b.memmap_bytes, "slab": 0},
            "slab_bytes": slab_pages * PAGE_SIZE,
            "dma_pool_bytes": pool_pages * PAGE_SIZE,
            "live_objects": len(self.live),
            "live_requested_bytes": sum(r.size for r in self.live.values()),
            "quarantine_bytes": self.slub.quarantine.nbytes if self.slub.quarantine is not None else 0,
            "reports": len(self.reports),
        }

    # ---------------------------------------------------------------- text formats

    def buddyinfo(self) -> str:
        """/proc/buddyinfo: free block counts per order, one line per populated zone."""
        lines = []
        for z in self.buddy.populated_zones:
            counts = "".join(f"{n:6d} " for n in z.nr_free_blocks())
            lines.append(f"Node 0, zone {z.name:>8s} {counts}")
        return "\n".join(lines) + "\n"

    def slabinfo(self) -> str:
        """/proc/slabinfo, version 2.1 (SLUB: the tunables are 0, active_slabs == num_slabs)."""
        lines = [
            "slabinfo - version: 2.1",
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
            " : tunables <limit> <batchcount> <sharedfactor>"
            " : slabdata <active_slabs> <num_slabs> <sharedavail>",
        ]
        for c in reversed(self.slub.all_caches):
            if c.destroyed:
                continue
            r = self._slab_row(c)
            t = self.tunables.get(c.name, _NO_TUNABLES)
            lines.append(
                f"{r['name']:<17s} {r['active_objs']:6d} {r['num_objs']:6d} {r['objsize']:6d}"
                f" {r['objperslab']:4d} {r['pagesperslab']:4d} : tunables {t[0]:4d} {t[1]:4d} {t[2]:4d}"
                f" : slabdata {r['active_slabs']:6d} {r['num_slabs']:6d} {0:6d}"
            )
        return "\n".join(lines) + "\n"

    def zoneinfo(self) -> str:
        """The watermark lines of /proc/zoneinfo for every populated zone."""
        out = []
        for z in self.buddy.populated_zones:
            protection = ", ".join(str(v) for v in z.lowmem_reserve)
            out.append(
                f"Node 0, zone {z.name:>8s}\n"
                f"  pages free     {z.nr_free}\n"
                f"        min      {z.wmark_min}\n"
                f"        low      {z.wmark_low}\n"
                f"        high     {z.wmark_high}\n"
                f"        spanned  {z.spanned}\n"
                f"        present  {z.present}\n"
                f"        managed  {z.managed}\n"
                f"        protection: ({protection})\n"
                f"  start_pfn:           {z.start_pfn}\n"
            )
        return "".join(out)

    def poolinfo(self) -> str:
        """DMA pools as mm/dmapool.c's sysfs file: name, blocks in use, total blocks, size, pages."""
        lines = ["poolinfo - 0.1"]
        for p in self.pools.all_pools:
            if p.destroyed:
                continue
            r = self._pool_row(p)
            lines.append(
                f"{r['name']:<16s} {r['active_blocks']:4d} {r['total_blocks']:4d}"
                f" {r['size']:4d} {r['pages']:2d}"
            )
        return "\n".join(lines) + "\n"
