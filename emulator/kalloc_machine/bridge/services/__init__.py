"""The hypercall services, one module per family of the ABI table (kalloc_machine.bridge.abi).

    common.py   what every family shares: interrupt-context accounting, guest strings
    misc.py     NOP, BOOTINFO, CONSOLE_WRITE, STATS_DUMP, NOT_LEAK, MARK, NR_FREE_PAGES
    pages.py    ALLOC_PAGES, FREE_PAGES, ALLOC_PAGES_EXACT, FREE_PAGES_EXACT
    slab.py     CACHE_* (family `slab`) and KMALLOC, KFREE, KSIZE, KREALLOC, KCALLOC (`kmalloc`)
    libc.py     MALLOC, FREE, CALLOC, REALLOC, ALIGNED_ALLOC, MALLOC_USABLE_SIZE
    dma.py      DMA_ALLOC_COHERENT, DMA_FREE_COHERENT, DMA_POOL_*
    vmalloc.py  VMALLOC, VFREE, VMAP, VUNMAP (needs kalloc.vmalloc: installed by the session)

(The `kasan` family lives with the KASAN runtime, kalloc_machine.bridge.kasan.)

A family is a handler object whose `svc_<name>` methods take (caller, *args) and
return (result, aux); `Bridge.serve(family, handlers)` puts them in the doorbell's
table. `serve_standard()` builds and serves the families that need only the
allocator: what a bridge over a plain allocator answers.

Invariants:
 1. A handler raises KallocError for firmware misuse and changes nothing before it
    raises (the allocator's invariant); it never reports by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kalloc_machine.bridge.services.common import IrqAccounting
from kalloc_machine.bridge.services.dma import DmaServices
from kalloc_machine.bridge.services.libc import LibcServices
from kalloc_machine.bridge.services.misc import MiscServices
from kalloc_machine.bridge.services.pages import PageServices
from kalloc_machine.bridge.services.slab import CacheServices, KmallocServices

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.doorbell import Bridge


@dataclass(slots=True)
class StandardServices:
    """The families `serve_standard()` installed, and the accounting they share."""

    irq: IrqAccounting
    misc: MiscServices
    pages: PageServices
    slab: CacheServices
    kmalloc: KmallocServices
    libc: LibcServices
    dma: DmaServices


def serve_standard(
    bridge: Bridge,
    ka: Kalloc,
    *,
    console: Callable[[bytes], None],
    irq_line: Callable[[], int] | None = None,
    heap: Any = None,
    bootinfo: bytes = b"",
) -> StandardServices:
    """Serve misc, pages, slab, kmalloc, libc and dma on `bridge` (module docstring).

    heap: the C library face's policy (default: the allocator's own); irq_line: the
    machine's `irq_line`, for the per-line interrupt accounting.
    """
    irq = IrqAccounting(irq_line)
    svc = StandardServices(
        irq=irq,
        misc=MiscServices(ka, console=console, bootinfo=bootinfo),
        pages=PageServices(ka, irq),
        slab=CacheServices(ka, irq),
        kmalloc=KmallocServices(ka, irq),
        libc=LibcServices(ka if heap is None else heap, irq),
        dma=DmaServices(ka, irq),
    )
    for family in ("misc", "pages", "slab", "kmalloc", "libc", "dma"):
        bridge.serve(family, getattr(svc, family))
    return svc
