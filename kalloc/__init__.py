"""kalloc: a kernel-style memory allocator (Linux buddy allocator + SLUB model) in pure Python.

The package is laid out as its table of contents:

    foundations   errors, gfp, config (Config, Caller, Context), page (struct page,
                  PAGE_SIZE, get_order), physmem, stackdepot, kinds (live-object kinds)
    zone, buddy   zones and watermarks; the buddy page allocator
    gate          the request gate: argument and context checks every API makes first
    pages         the page pipeline (zonelists, reclaim through shrinkers, oom, large
                  objects) and the page API (alloc_pages, free_pages, *_exact)
    live, misuse  the live-object table (LiveRecord), lookup, describe, free diagnosis
    slab, slub    kmem_cache and slab structures; SLUB's paths and kmem_cache_*
    dmapool, dma  DMA pool structures; dma_alloc_coherent and dma_pool_* paths
    objects       free / resize / move of kmalloc and malloc objects
    kmalloc       the kmalloc family and its size classes
    libc          malloc, calloc, realloc, aligned_alloc, free, and the C rules
    heaps/        heap policies behind the C library face (--heap)
    vmalloc       vmalloc, vmap and the page tables behind them
    debug, sanitize   red zone and poison bytes, the quarantine; the inline checks
    check         the full invariant walk check() and check_poison()
    shadow, kmemleak, failslab   KASAN shadow, leak scan, fault injection
    stats         stats() and the /proc formats
    allocator     Kalloc, the front that builds the parts and binds the API

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
