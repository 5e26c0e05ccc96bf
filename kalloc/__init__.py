"""kalloc: a kernel-style memory allocator (Linux buddy allocator + SLUB model) in pure Python.

The package is laid out as its table of contents:

    config      Config (policy settings), Caller and Context (who is calling)
    page        struct page: per-page state arrays, PAGE_SIZE, get_order
    zone        zones, watermarks, the reserve arithmetic
    buddy       the buddy page allocator and boot-time accounting
    slab        kmem_cache and slabs (SLUB's model)
    kmalloc     the kmalloc family and its size classes
    libc        malloc, calloc, realloc, aligned_alloc, free
    dma         dma_alloc_coherent and DMA pools
    debug       red zones, poison bytes, the KASAN quarantine
    stats       Allocation records, stats(), /proc formats
    allocator   Kalloc, the facade tying them together
    errors, gfp, physmem, stackdepot   shared foundations

Usage at a REPL:

    >>> from kalloc import Kalloc, gfp
    >>> ka = Kalloc.standalone()
    >>> p = ka.kmalloc(100, gfp.GFP_KERNEL)
    >>> ka.ksize(p)
    128
    >>> ka.kfree(p)

Invariants:
 1. Importing kalloc imports nothing from emulator/ or unicorn (kalloc.cli, the
    command line, is the one module that composes both, and is not imported here).
 2. Everything a caller needs for the API is exported here; docs/allocator.md
    explains it.
"""

from kalloc import gfp
from kalloc.allocator import Kalloc
from kalloc.config import TASK, Caller, Config, Context
from kalloc.dma import DmaPool
from kalloc.kmalloc import KMALLOC_CLASSES, ZERO_SIZE_PTR
from kalloc.page import PAGE_SHIFT, PAGE_SIZE
from kalloc.slab import (
    SLAB_CACHE_DMA,
    SLAB_HWCACHE_ALIGN,
    SLAB_KALLOC_CTOR,
    SLAB_KNOWN_FLAGS,
    KmemCache,
)
from kalloc.stats import Allocation

__all__ = [
    "KMALLOC_CLASSES",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "SLAB_CACHE_DMA",
    "SLAB_HWCACHE_ALIGN",
    "SLAB_KALLOC_CTOR",
    "SLAB_KNOWN_FLAGS",
    "TASK",
    "ZERO_SIZE_PTR",
    "Allocation",
    "Caller",
    "Config",
    "Context",
    "DmaPool",
    "Kalloc",
    "KmemCache",
    "gfp",
]
