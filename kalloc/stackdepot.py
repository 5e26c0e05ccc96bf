"""The stack depot: deduplicated call stacks, referenced by small integer handles.

Like Linux's lib/stackdepot.c: every allocation and free records where it came
from, but the same few call sites repeat millions of times, so each distinct
stack (a tuple of raw return addresses, innermost first) is stored once and the
object keeps a 4-byte handle. Symbols are resolved only when a report is written.

Invariants:
 1. Handle 0 means "no stack recorded"; real handles start at 1.
 2. save() of an equal tuple always returns the same handle (deterministic:
    handles are assigned in first-seen order).
"""

from __future__ import annotations


class StackDepot:
    """Deduplicated stacks of raw PCs."""

    __slots__ = ("_by_stack", "_stacks")

    def __init__(self) -> None:
        self._by_stack: dict[tuple[int, ...], int] = {}
        self._stacks: list[tuple[int, ...]] = [()]

    def save(self, stack: tuple[int, ...]) -> int:
        """Store `stack` (innermost PC first) and return its handle."""
        handle = self._by_stack.get(stack)
        if handle is None:
            handle = len(self._stacks)
            self._stacks.append(stack)
            self._by_stack[stack] = handle
        return handle

    def get(self, handle: int | None) -> tuple[int, ...]:
        """The stack saved under `handle`; () for 0, None or an unknown handle."""
        if not handle or handle >= len(self._stacks):
            return ()
        return self._stacks[handle]

    def __len__(self) -> int:
        return len(self._stacks) - 1
