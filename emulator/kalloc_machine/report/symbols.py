"""Symbols for reports: PCs and stack-depot handles as frames with function, file and line.

Every PC becomes `{pc, symbol, file, line}` through the firmware's ELF (symbols and
DWARF lines); every `*_site` depot handle becomes a backtrace whose first frame is
the first one outside the allocator's own wrappers (an allocation's site is the
firmware code that asked, not the SDK's malloc shim).

Invariants:
 1. Symbolization is memoized per PC; nothing is resolved twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kalloc.stackdepot import StackDepot

if TYPE_CHECKING:
    from kalloc_machine.elf import Firmware

# Functions that only forward to the allocator: an allocation's site is the first
# frame outside them (docs/abi.md: the SDK's malloc and kmalloc shims, picolibc helpers).
WRAPPERS: frozenset[str] = frozenset(
    """
    malloc free calloc realloc reallocarray aligned_alloc memalign posix_memalign valloc pvalloc
    malloc_usable_size strdup strndup asprintf vasprintf open_memstream
    alloc_pages free_pages alloc_pages_exact free_pages_exact __get_free_pages
    kmem_cache_create kmem_cache_alloc kmem_cache_zalloc kmem_cache_free kmem_cache_shrink
    kmem_cache_destroy kmalloc kfree ksize krealloc kzalloc kcalloc kmalloc_array kstrdup
    dma_alloc_coherent dma_free_coherent dma_pool_create dma_pool_alloc dma_pool_zalloc dma_pool_free
    dma_pool_destroy kmemleak_not_leak vmalloc vfree vzalloc
    """.split()
)


class Symbolizer:
    """PC → frame dicts, through the firmware's symbols and DWARF lines."""

    def __init__(self, firmware: Firmware | None, depot: StackDepot | None) -> None:
        self.firmware = firmware
        self.depot = depot
        self._cache: dict[int, dict[str, Any]] = {}
        # The SDK links every hypercall wrapper between these two symbols.
        lo = firmware.symbol_addr("__kalloc_api_start") if firmware else None
        hi = firmware.symbol_addr("__kalloc_api_end") if firmware else None
        self._api = (lo, hi) if lo is not None and hi is not None else (0, 0)

    def is_wrapper(self, frame: dict[str, Any]) -> bool:
        """True for frames inside the allocator's own wrappers (never an allocation site)."""
        pc = frame["pc"] - 1 if frame["pc"] else 0
        return self._api[0] <= pc < self._api[1] or frame["symbol"] in WRAPPERS

    def frame(self, pc: int, *, returns: bool = False) -> dict[str, Any]:
        """One frame. `returns`: pc is a return address, so the call is at pc-1.

        A call that ends a function (to something that never returns) has its return
        address in the next function; looking up pc-1 names the caller correctly.
        """
        key = -pc if returns else pc
        hit = self._cache.get(key)
        if hit is None:
            symbol = file = line = None
            if self.firmware is not None:
                loc = self.firmware.symbolize(pc - 1 if returns and pc else pc)
                symbol, file, line = loc.symbol, loc.file, loc.line
            hit = {"pc": pc, "symbol": symbol, "file": file, "line": line}
            self._cache[key] = hit
        return dict(hit)

    def trace(self, pcs: Iterable[int], *, first_is_return: bool) -> list[dict[str, Any]]:
        """Frames for a raw backtrace: every entry after the first is a return address."""
        return [self.frame(pc, returns=first_is_return or i > 0) for i, pc in enumerate(pcs)]

    def user_frames(self, pcs: Iterable[int]) -> list[dict[str, Any]]:
        """Frames from the first one outside the allocator wrappers, outward."""
        frames = self.trace(pcs, first_is_return=True)
        i = 0
        while i < len(frames) - 1 and self.is_wrapper(frames[i]):
            i += 1
        return frames[i:]

    def site(self, handle: int | None) -> dict[str, Any] | None:
        """A depot handle as {pc, symbol, location, backtrace}, or None when unknown."""
        if self.depot is None or not handle:
            return None
        frames = self.user_frames(self.depot.get(handle))
        if not frames:
            return None
        top = frames[0]
        return {
            "pc": top["pc"],
            "symbol": top["symbol"],
            "location": {"file": top["file"], "line": top["line"]},
            "backtrace": frames,
        }


def format_frame(frame: dict[str, Any]) -> str:
    sym = frame.get("symbol") or "??"
    where = f" ({frame['file']}:{frame['line']})" if frame.get("file") else ""
    return f"{frame['pc']:#010x} {sym}{where}" if frame.get("pc") is not None else f"{sym}{where}"
