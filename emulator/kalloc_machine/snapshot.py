"""Snapshots of a whole session: boot once, restore many times.

A `Snapshot` holds everything a run can change, taken from a live `Session` (and
the harness `Target` driving it), and `restore()` puts it all back into the very
same objects, so the hooks Unicorn holds and the memoryviews the allocator holds
stay valid:

  what                          how
  ----------------------------  ---------------------------------------------------
  CPU registers and CSRs        Unicorn's `context_save` / `context_restore`
  guest RAM                     a copy of each bank's host buffer (the mmap that
                                `mem_map_ptr` maps), written back in place
  machine, clock, devices,      the attributes of each *stateful root* (below),
  injector, bridge, allocator,  deep-copied at `take` and deep-copied again into
  heap policy, KASAN (hook      the same root objects at `restore`
  shadow), fault injector,
  stack depot, random states

Stateful roots are restored in place, attribute by attribute; everything they own
(zones, free lists, slabs, caches, the stack depot, `random.Random` states, the
hook-mode shadow's bytearrays) is rebuilt from the copy. Objects that must keep
their identity are *shared*, never copied: the roots themselves (so a slab's
back-pointer to its allocator still names the live allocator), the Unicorn
engine, the ELF, the board, the PhysMem and its banks, and every `memoryview`
(they view guest RAM or immutable patterns; the RAM copy restores their bytes).
Attributes a later change adds to a root are covered with no change here.

Never Unicorn's memory snapshot mode (UC_CTL_CONTEXT_MEMORY): after it, guest
stores go to copy-on-write pages the host buffers no longer see, and the
allocator reads RAM through those buffers.

Invariants:
 1. After `restore`, running the machine gives the same report as the run that
    followed `take`, byte for byte, but for counters of Unicorn's own TLB cache
    (tools/harness.py HOST_COUNTERS; tests/machine/test_pytest_plugin.py checks it).
 2. A snapshot can be restored any number of times; it is never modified.
"""

from __future__ import annotations

import contextlib
import copy
import copyreg
from collections.abc import Iterator
from typing import Any

import unicorn


class _Same:
    """Deep-copies as itself: carries a memoryview through deepcopy's reconstruction."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __deepcopy__(self, memo: dict[int, Any]) -> _Same:
        return self


def _view_of(same: _Same) -> memoryview:
    return same.view


def _reduce_view(view: memoryview) -> tuple[Any, tuple[_Same]]:
    return _view_of, (_Same(view),)


@contextlib.contextmanager
def _memoryviews_shared() -> Iterator[None]:
    """Deep copies keep memoryviews as they are (views of host buffers; see the module doc).

    Through copyreg's public table: a memoryview "reduces" to itself, for the duration.
    """
    table = copyreg.dispatch_table
    old = table.get(memoryview)
    table[memoryview] = _reduce_view
    try:
        yield
    finally:
        if old is None:
            table.pop(memoryview, None)
        else:
            table[memoryview] = old


def _attrs(obj: Any) -> dict[str, Any]:
    """The instance attributes of obj, from __dict__ and every __slots__ of its classes."""
    out = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


def stateful_roots(session: Any, extra: tuple[Any, ...] = ()) -> list[Any]:
    """The objects whose attributes a run changes, for a Session (session.py).

    The session, its machine, and every object of kalloc's or the emulator's own classes
    either of them holds (directly or in a list): the clock, the devices, the injector,
    the bridge, the allocator, the heap policy, KASAN, the fault injector, the MMU, ...
    so a part added to the composer later is covered. The shared objects (`_shared`)
    are left out: their state is RAM, or they have none.
    """
    m = session.machine
    shared = {id(o) for o in _identity_objects(session)}
    cands: list[Any] = [session, m, *extra]
    for holder in (session, m):
        for value in _attrs(holder).values():
            cands.extend(value if isinstance(value, list) else [value])
    seen: set[int] = set()
    out = []
    for r in cands:
        own = type(r).__module__.split(".")[0] in ("kalloc_machine", "kalloc")
        if own and id(r) not in shared and id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


def _identity_objects(session: Any) -> list[Any]:
    """Objects that are never copied nor restored: Unicorn, the ELF, the board, RAM's buffers."""
    m = session.machine
    return [m.uc, m.phys, *m.phys.banks, session.firmware, session.board, m.isa, *m.host_buffers]


def _shared(session: Any, roots: list[Any]) -> dict[int, Any]:
    """The deepcopy memo that makes the roots and the identity-bearing objects shared."""
    return {id(o): o for o in [*roots, *_identity_objects(session)]}


class Snapshot:
    """The state of a session at one moment (module doc). Take with `Snapshot.take`."""

    def __init__(self, session: Any, roots: list[Any], context: Any, ram: list[bytes],
                 state: list[dict[str, Any]]) -> None:  # fmt: skip
        self.session = session
        self._roots = roots
        self._context = context
        self._ram = ram
        self._state = state

    @classmethod
    def take(cls, session: Any, extra: tuple[Any, ...] = ()) -> Snapshot:
        """Snapshot `session` (and `extra` stateful objects, e.g. the harness driving it).

        Context: between runs only (never from a hook: the CPU state must be at rest).
        """
        roots = stateful_roots(session, extra)
        m = session.machine
        with _memoryviews_shared():
            state = copy.deepcopy([_attrs(r) for r in roots], _shared(session, roots))
        ram = [bytes(bank.buf) for bank in m.phys.banks]
        return cls(session, roots, m.uc.context_save(), ram, state)

    def restore(self) -> None:
        """Put the session back in the state it had at `take`. The snapshot stays usable."""
        m = self.session.machine
        for bank, data in zip(m.phys.banks, self._ram, strict=True):
            bank.buf[:] = data
        m.uc.context_restore(self._context)
        m.uc.ctl_flush_tb()  # translated code must not outlive a change of the RAM under it
        # nor TLB entries the page tables being restored no longer hold (UC_TLB_VIRTUAL)
        m.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        with _memoryviews_shared():
            state = copy.deepcopy(self._state, _shared(self.session, self._roots))
        for root, attrs in zip(self._roots, state, strict=True):
            for name, value in attrs.items():
                object.__setattr__(root, name, value)

    @property
    def ram_bytes(self) -> int:
        return sum(len(r) for r in self._ram)
