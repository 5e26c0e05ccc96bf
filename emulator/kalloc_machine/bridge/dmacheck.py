"""The DMA engine's check composed with the allocator: errors that name the buffer.

The engine (kalloc_machine.devices) knows the board's rules: which physical ranges its
master reaches and the boundary no transfer may cross. The allocator knows what lies at
an address: which object, how big, allocated where. `DmaCheck` is installed as the
engine's `check` by the Session (kalloc_machine.session) and judges each RAM side of a
transfer, in this order:

 1. reachable by the master, else `dma-unreachable`, naming the buffer's allocation
    site (`alloc_site`) and what to use instead (GFP_DMA, dma_alloc_coherent, a pool);
 2. not crossing the engine's boundary, else `dma-boundary`;
 3. with a sanitizer on (Config.sanitize != "off"): inside one live allocation, else
    `out-of-bounds` (memory that is not a live object: freed, never allocated, the
    allocator's own metadata; or a transfer that runs past the object's end). Memory
    the allocator does not manage (the firmware image: static buffers) is exempt.

A refused side copies nothing; the engine ends the transfer with status error and
raises its interrupt (devices.py invariant 3). Each report carries the transfer's
`src`, `dst`, `len`, and, when the machine saw the store that started it (it always
does: a DMA start cuts the slice), `pc` and `backtrace` of that store.

Invariants:
 1. A check never changes allocator state; it reads `lookup` / `describe` only.
 2. The first rule a side breaks is the one reported (one report per side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc.errors import DmaBoundaryError, DmaUnreachableError, KallocError, OutOfBoundsError

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.dmaengine import DmaEngine

FIX = "allocate DMA buffers with dma_alloc_coherent(), a dma_pool or kmalloc(size, GFP_DMA)"


class DmaCheck:
    """`check(addr, length, is_write) -> bool` for a DmaEngine (module docstring)."""

    def __init__(self, engine: DmaEngine, ka: Kalloc, *, sanitize: bool,
                 exempt: tuple[tuple[int, int], ...] = ()) -> None:  # fmt: skip
        self.engine = engine
        self.ka = ka
        self.sanitize = sanitize
        self.exempt = list(exempt)

    def __call__(self, addr: int, length: int, is_write: bool) -> bool:
        rec = self.ka.lookup(addr)
        verb = "write to" if is_write else "read from"
        what = self._buffer(rec)
        if not self.engine.reachable(addr, length):
            master = self.engine.master
            who = f"DMA master '{master.name}'" if master else "the DMA engine"
            self.report(DmaUnreachableError(
                f"DMA {verb} {addr:#x}+{length}: {what} is outside the memory {who} can reach; {FIX}",
                windows=[[b, s] for b, s in master.windows] if master else [],
            ), addr, length, is_write, rec)  # fmt: skip
            return False
        cross = self.engine.crossed_boundary(addr, length)
        if cross is not None:
            self.report(DmaBoundaryError(
                f"DMA {verb} {addr:#x}+{length}: {what} crosses the engine's {self.engine.boundary:#x}-byte "
                f"boundary at {cross:#x}; dma_alloc_coherent() and dma_pool_create(..., boundary) never do",
                boundary=self.engine.boundary, crossing=cross,
            ), addr, length, is_write, rec)  # fmt: skip
            return False
        if self.sanitize and not self._exempt(addr, length):
            return self._bounds(addr, length, is_write, rec, verb)
        return True

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _buffer(rec: Any) -> str:
        if rec is None:
            return "memory that is not a live allocation"
        return f"the buffer at {rec.addr:#x} ({rec.kind}, {rec.size} bytes)"

    def _exempt(self, addr: int, length: int) -> bool:
        return any(lo <= addr and addr + length <= hi for lo, hi in self.exempt)

    def _bounds(self, addr: int, length: int, is_write: bool, rec: Any, verb: str) -> bool:
        if rec is not None and rec.addr <= addr and addr + length <= rec.addr + rec.size:
            return True
        if rec is not None:
            over = addr + length - (rec.addr + rec.size)
            where = f"runs {over} bytes past the end of" if addr >= rec.addr else "starts before"
            msg = (f"DMA {verb} {addr:#x}+{length} {where} the {rec.size}-byte object at {rec.addr:#x} "
                   f"({rec.kind})")
            self.report(OutOfBoundsError(msg, object={"addr": rec.addr, "size": rec.size, "kind": rec.kind}),
                         addr, length, is_write, rec)  # fmt: skip
            return False
        info = self.ka.describe(addr)
        err = OutOfBoundsError(f"DMA {verb} {addr:#x}+{length}: memory that is not a live allocation"
                               + (f" (a {info['state']} object)" if info else ""))  # fmt: skip
        if info:
            err.fields["object"] = info["object"]
            if info.get("alloc_site"):
                err.fields["alloc_site"] = info["alloc_site"]
            if info.get("free_site"):
                err.fields["free_site"] = info["free_site"]
        self.report(err, addr, length, is_write, None)
        return False

    def report(self, err: KallocError, addr: int, length: int, is_write: bool, rec: Any) -> None:
        """Report err about one side of the transfer the engine is completing (module docstring)."""
        err.addr = addr
        f = err.fields
        f["length"] = length
        f["direction"] = "write" if is_write else "read"
        f["dma"] = True
        if rec is not None:
            f.setdefault("object", {"addr": rec.addr, "size": rec.size, "kind": rec.kind})
            if rec.site:
                f.setdefault("alloc_site", rec.site)
        t = self.engine.completing
        if t is not None:
            f.update(src=t.src, dst=t.dst, len=t.length)
            if t.pc is not None:
                f["pc"] = t.pc
                f["backtrace"] = list(t.backtrace) or [t.pc]
        self.engine.report(err)
