"""The `tags` service family: TAG_PUSH and TAG_POP (issue 18; the tracker is report/tags.py).

The context a tag belongs to is the machine's interrupt nesting depth (the Caller's,
judged by the bridge), so a handler's tags never leak into the task it interrupted.
`install()` also wraps the MARK service to remember the last phase marker, which the
tag table shows next to each tag's high water, CACHE_CREATE / DMA_POOL_CREATE, so
a cache or pool created under a tag keeps it, and VMALLOC / VFREE, so a vmalloc area is
one object of its requested size under the tag pushed when it was created (report/tags.py).

Invariants:
 1. A bad name pointer, an over-long stack or a pop with nothing pushed is a
    bad-hypercall report; the tag stacks are unchanged by a refused call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalloc import Caller
from kalloc.errors import BadArgumentError
from kalloc_machine.bridge.services.common import guest_cstr

if TYPE_CHECKING:
    from kalloc.physmem import PhysMem
    from kalloc_machine.bridge.doorbell import Bridge
    from kalloc_machine.report.tags import TagTracker


def _clean(name: str) -> str:
    """A tag as reports and traces spell it: printable, no blanks (a trace field), never empty."""
    out = "".join(c if c.isprintable() and not c.isspace() else "_" for c in name)
    return out or "_"


class TagServices:
    """Handlers of the `tags` family."""

    def __init__(self, tracker: TagTracker, phys: PhysMem) -> None:
        self.tracker = tracker
        self.phys = phys

    def svc_tag_push(self, caller: Caller, name: int, *args: int) -> tuple[int, int]:
        tag = _clean(guest_cstr(self.phys, name, "TAG_PUSH name"))
        try:
            return self.tracker.push(caller.depth, tag), 0
        except ValueError as exc:
            raise BadArgumentError(f"TAG_PUSH {tag!r}: {exc}", addr=name) from None

    def svc_tag_pop(self, caller: Caller, *args: int) -> tuple[int, int]:
        try:
            return self.tracker.pop(caller.depth), 0
        except ValueError as exc:
            raise BadArgumentError(f"TAG_POP: {exc}") from None


def install(bridge: Bridge, tracker: TagTracker, phys: PhysMem) -> TagServices:
    """Serve the family and let MARK tell the tracker the phase."""
    svc = TagServices(tracker, phys)
    bridge.serve("tags", svc)
    inner = bridge.handler("MARK")

    def mark(caller: Caller, ident: int, *args: int) -> tuple[int, int]:
        tracker.mark = ident
        return inner(caller, ident, *args) if inner is not None else (0, 0)

    bridge.register("MARK", mark)
    for name, kind in (("CACHE_CREATE", "cache"), ("DMA_POOL_CREATE", "pool")):
        _remember_creation(bridge, tracker, name, kind)
    _count_areas(bridge, tracker)
    return svc


def _count_areas(bridge: Bridge, tracker: TagTracker) -> None:
    """Wrap VMALLOC / VFREE: an area is one tagged object (report/tags.py), not its pages."""
    make, drop = bridge.handler("VMALLOC"), bridge.handler("VFREE")
    if make is None or drop is None:
        return

    def vmalloc(caller: Caller, size: int, *args: int) -> tuple[int, int]:
        tracker.quiet = True
        try:
            addr, aux = make(caller, size, *args)
        finally:
            tracker.quiet = False
        if addr:
            tracker.area_mapped(addr, size, caller.site)
        return addr, aux

    def vfree(caller: Caller, addr: int, *args: int) -> tuple[int, int]:
        tracker.quiet = True
        try:
            out = drop(caller, addr, *args)
        finally:
            tracker.quiet = False
        tracker.area_unmapped(addr)
        return out

    bridge.register("VMALLOC", vmalloc)
    bridge.register("VFREE", vfree)


def _remember_creation(bridge: Bridge, tracker: TagTracker, name: str, kind: str) -> None:
    """Wrap a create service: the new cache or pool keeps the tag pushed when it was created."""
    inner = bridge.handler(name)
    if inner is None:
        return

    def create(caller: Caller, *args: int) -> tuple[int, int]:
        handle, aux = inner(caller, *args)
        tracker.created(kind, handle)
        return handle, aux

    bridge.register(name, create)
