"""Reports: raw errors and allocator state turned into JSON and text a person can act on.

Errors arrive raw (kalloc.errors.KallocError: addresses, depot handles, PCs).
Here every PC becomes `{pc, symbol, file, line}` through the firmware's ELF,
every `*_site` depot handle becomes a symbolized backtrace whose first frame is
the first one outside the allocator's own wrappers, and the whole run becomes
one dict (`--json`) and a rich text rendering.

Invariants:
 1. The JSON holds no wall-clock times and no host paths: the same firmware,
    board, options and seed give the same bytes (wall time is text-only).
 2. Every error entry has kind, severity, message, pc (int or null), symbol,
    location {file, line} and backtrace (a list of frames).
 3. Symbolization is memoized per PC; nothing is resolved twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kalloc.errors import KallocError
from kalloc.stackdepot import StackDepot

if TYPE_CHECKING:
    from kalloc_machine.elf import Firmware

# Functions that only forward to the allocator: an allocation's site is the first
# frame outside them (DESIGN.md: the SDK's malloc and kmalloc shims, picolibc helpers).
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def error_entry(err: KallocError, sym: Symbolizer) -> dict[str, Any]:
    """One error as the JSON contract describes it (DESIGN.md, "Reports and exit codes")."""
    fields = dict(err.fields)
    entry: dict[str, Any] = {"kind": err.kind, "severity": err.severity, "message": err.message}
    raw_bt = fields.pop("backtrace", None)
    raw_pc = fields.pop("pc", None)
    site = sym.site(err.site)
    if raw_pc is not None:
        frames = sym.trace(raw_bt or [raw_pc], first_is_return=False)
        if frames[0]["pc"] != raw_pc:
            frames.insert(0, sym.frame(raw_pc))
        top = frames[0]
    elif site is not None:
        frames, top = site["backtrace"], site["backtrace"][0]
    else:
        frames, top = [], {"pc": None, "symbol": None, "file": None, "line": None}
    entry["pc"] = top["pc"]
    entry["symbol"] = top["symbol"]
    entry["location"] = {"file": top["file"], "line": top["line"]}
    entry["backtrace"] = frames
    if err.addr is not None:
        entry["addr"] = err.addr
    for key, value in fields.items():
        if key.endswith("_site") and isinstance(value, int):
            entry[key] = sym.site(value)
        else:
            entry[key] = _jsonable(value)
    if site is not None and raw_pc is not None and "caller_site" not in entry:
        entry["caller_site"] = site
    return entry


def dumps(report: dict[str, Any]) -> str:
    """The report's canonical JSON text (stable key order, trailing newline)."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def format_frame(frame: dict[str, Any]) -> str:
    sym = frame.get("symbol") or "??"
    where = f" ({frame['file']}:{frame['line']})" if frame.get("file") else ""
    return f"{frame['pc']:#010x} {sym}{where}" if frame.get("pc") is not None else f"{sym}{where}"
