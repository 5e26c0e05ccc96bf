"""`kalloc run --record PATH`: the run's allocation trace, in kalloc's trace format (kalloc.replay.trace).

Two taps, so every allocation is recorded once:

  - the C library face: `RecordingLibc` wraps the heap policy the bridge calls
    (`LibcServices.heap`, bridge/services/libc.py), and records malloc / calloc /
    aligned_alloc / realloc / free as the firmware asked for them (a realloc keeps
    its object's id);
  - everything else (kmalloc, kmem_cache, pages, DMA): a `ka.listeners` callback
    records "alloc", "free" and "resize" events of live objects whose kind is not
    "malloc", tagged with their kind (`a 12 96 kmalloc`).

Replay sends every request to the C library face of the chosen heap, so a
recorded run can be measured against every policy (`kalloc replay PATH --heap all`).

Invariants:
 1. Ids are assigned in allocation order and never reused; a freed id is dropped.
 2. Recording changes nothing the firmware or the allocator sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalloc.config import TASK, Caller
from kalloc.kinds import KIND_MALLOC, KIND_NAMES
from kalloc.replay.trace import ALLOC, CALLOC, FREE, MEMALIGN, REALLOC, Op, dumps

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.services.libc import LibcServices


class Recorder:
    """Collects Ops from both taps; `write(path)` saves them."""

    def __init__(self, ka: Kalloc) -> None:
        self.ka = ka
        self.ops: list[Op] = []
        self.ids: dict[int, int] = {}  # live address -> id
        self.in_libc = False  # a C library call is being forwarded: its events are RecordingLibc's
        self._next = 0
        self.tag_of: Any = None  # (addr) -> the tag of an object allocated now (report/tags.py; issue 18)
        ka.listeners.append(self._listen)

    def tag(self, addr: int) -> str:
        """The tag of the object allocated now at addr, "" when untagged (the trace's `@tag`)."""
        t = self.tag_of(addr) if self.tag_of is not None else ""
        return "" if t == "untagged" else t

    def new_id(self, addr: int) -> int:
        ident = self._next
        self._next += 1
        self.ids[addr] = ident
        return ident

    def _listen(self, event: str, addr: int, size: int, usable: int) -> None:
        if event == "alloc":
            rec = self.ka.live.get(addr)
            if rec is None or rec.kind == KIND_MALLOC:
                return  # the C library face is recorded by RecordingLibc
            self.ops.append(Op(ALLOC, self.new_id(addr), size, api=KIND_NAMES[rec.kind], tag=self.tag(addr)))
        elif addr in self.ids and not self.in_libc:
            if event == "free":
                self.ops.append(Op(FREE, self.ids.pop(addr)))
            elif event == "resize":
                self.ops.append(Op(REALLOC, self.ids[addr], size))

    def write(self, path: str | Path, comments: tuple[str, ...] = ()) -> None:
        Path(path).write_text(dumps(self.ops, comments))


class RecordingLibc:
    """A heap policy wrapper that records the C library calls it forwards."""

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner = inner
        self.rec = rec

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _call(self, fn: Any, *args: Any) -> Any:
        self.rec.in_libc = True
        try:
            return fn(*args)
        finally:
            self.rec.in_libc = False

    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        p = self._call(self.inner.malloc, size, caller)
        if p:
            self.rec.ops.append(Op(ALLOC, self.rec.new_id(p), size, api="malloc", tag=self.rec.tag(p)))
        return p

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        p = self._call(self.inner.calloc, n, size, caller)
        if p:
            self.rec.ops.append(Op(CALLOC, self.rec.new_id(p), size, n, api="calloc", tag=self.rec.tag(p)))
        return p

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        p = self._call(self.inner.aligned_alloc, align, size, caller)
        if p:
            self.rec.ops.append(Op(MEMALIGN, self.rec.new_id(p), size, align, api="aligned_alloc",
                                   tag=self.rec.tag(p)))
        return p

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        ident = self.rec.ids.get(addr)
        p = self._call(self.inner.realloc, addr, size, caller)
        if p:
            if ident is None:
                self.rec.ops.append(Op(ALLOC, self.rec.new_id(p), size, api="realloc", tag=self.rec.tag(p)))
            else:
                del self.rec.ids[addr]
                self.rec.ids[p] = ident
                self.rec.ops.append(Op(REALLOC, ident, size, api="realloc"))
        return p

    def free(self, addr: int, caller: Caller = TASK) -> None:
        self._call(self.inner.free, addr, caller)
        ident = self.rec.ids.pop(addr, None)
        if ident is not None:
            self.rec.ops.append(Op(FREE, ident, api="free"))

    def malloc_usable_size(self, addr: int) -> int:
        return self.inner.malloc_usable_size(addr)


def attach(ka: Kalloc, libc: LibcServices) -> Recorder:
    """Record a run: wraps the C library face's heap (`libc.heap`) and listens to `ka`."""
    rec = Recorder(ka)
    libc.heap = RecordingLibc(libc.heap, rec)
    return rec
