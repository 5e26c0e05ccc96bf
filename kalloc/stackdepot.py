"""The stack depot: deduplicated call stacks, referenced by small integer handles.

Like Linux's lib/stackdepot.c: every allocation and free records where it came
from, but the same few call sites repeat millions of times, so each distinct
stack (a tuple of raw return addresses, innermost first) is stored once and the
object keeps a 4-byte handle. Symbols are resolved only when a report is written.

Invariants:
 1. Handle 0 means "no stack recorded"; real handles start at 1.
 2. save() of an equal tuple always returns the same handle (deterministic:
    handles are assigned in first-seen order).
 3. At most MAX_STACKS stacks are kept: the stacks come from guest memory (return
    addresses the firmware can forge), so a firmware could otherwise grow the depot
    by one entry per call. Past the cap a new stack gets handle 0 ("no stack
    recorded") and is counted in `dropped`, as Linux's depot stops at its capacity.
"""

from __future__ import annotations

MAX_STACKS = 1 << 16  # distinct stacks kept (invariant 3): a few MiB of host memory at most


class StackDepot:
    """Deduplicated stacks of raw PCs."""

    __slots__ = ("_stacks", "dropped", "handles")

    def __init__(self) -> None:
        # stack -> handle; read-only outside: a hot caller looks a known stack up itself (the bridge)
        self.handles: dict[tuple[int, ...], int] = {}
        self._stacks: list[tuple[int, ...]] = [()]
        self.dropped = 0  # new stacks refused past MAX_STACKS

    def save(self, stack: tuple[int, ...]) -> int:
        """Store `stack` (innermost PC first) and return its handle."""
        handle = self.handles.get(stack)
        if handle is None:
            handle = len(self._stacks)
            if handle > MAX_STACKS:
                self.dropped += 1
                return 0
            self._stacks.append(stack)
            self.handles[stack] = handle
        return handle

    def get(self, handle: int | None) -> tuple[int, ...]:
        """The stack saved under `handle`; () for 0, None or an unknown handle."""
        if not handle or handle >= len(self._stacks):
            return ()
        return self._stacks[handle]

    def __len__(self) -> int:
        return len(self._stacks) - 1
