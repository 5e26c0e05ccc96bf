"""Trace replay on the machine: a board's RAM banks, and replay through firmware (`kalloc replay --firmware`).

`board_banks(board)` gives the plain replay (kalloc.replay.measure, which never
imports the machine) the RAM banks of a shipped or user board.

The plain replay (kalloc.replay.replayer) calls a heap policy from Python. The
firmware replay boots `firmware/tests/replay_shim.elf` on a board, stops at `main`, and performs
every trace operation as a firmware call (`replay_malloc`, `replay_free`, ... in
the shim), so each request takes the path an application's takes: the SDK's
stub, the argument block, the doorbell, the bridge, the heap policy selected
with `--heap`, the allocator. The replay's own checks and figures are the same:
`FirmwareHeap` is a `Heap` whose C library face is the firmware and whose
memory access, invariants and page ownership are the policy's under the bridge.

Invariants:
 1. Every allocation request of the trace is exactly one hypercall made by
    firmware code; nothing is served from Python directly.
 2. An error the machine or the bridge reports during the replay (a fault, an
    invalid free, a bad hypercall) makes the replay fail (`ReplayError`), as a
    broken heap does in the plain replay.
"""

from __future__ import annotations

from typing import Any

from kalloc.config import TASK, Caller
from kalloc.heaps.base import Heap
from kalloc.replay.measure import Bank, Parts
from kalloc.replay.replayer import ReplayError
from kalloc.stats import Allocation
from kalloc_machine.board import load_board
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions
from kalloc_machine.tools.harness import StopError, Target

# Instructions per slice while replaying. A call ends its slice early (at the return
# stop) and the rest of the slice is burnt in the idle sled to keep time exact, so
# a slice a little longer than one call keeps each call cheap.
REPLAY_QUANTUM = 2_000


def board_banks(board: str) -> list[Bank]:
    """(name, base, size, dma) of every RAM bank of a shipped or user board (BoardError when unreadable)."""
    return [(r.name, r.base, r.size, r.dma) for r in load_board(board).ram]


def firmware_parts(board: str, heap: str, sanitize: str) -> Parts:
    """The replay shim booted on `board`: its allocator, a firmware-calling heap, its Vmalloc."""
    target = boot(board, heap, sanitize)
    return target.ka, FirmwareHeap(target), target.session.vm


def boot(board: str, heap: str, sanitize: str) -> Target:
    """The shim firmware booted on `board` and stopped at main, ready for calls."""
    target = Target(RunOptions(firmware=str(prebuilt("tests/replay_shim")), board=board, heap=heap,
                               sanitize=sanitize, quantum=REPLAY_QUANTUM))  # fmt: skip
    target.run_to("main")
    return target


class FirmwareHeap(Heap):
    """The C library face of the firmware under a Target; everything else is the bridge's policy."""

    def __init__(self, target: Target) -> None:
        super().__init__(target.ka)
        self.target = target
        self.inner: Heap = target.session.heap
        self.name = self.inner.name
        self.page_label = self.inner.page_label

    def _call(self, function: str, *args: int) -> int:
        try:
            result = self.target.call(function, *args)
        except StopError as exc:
            raise ReplayError(f"the firmware stopped in {function}{args}: {exc}") from None
        errors = [e for e in self.target.machine.errors if e.severity == "error"]
        if errors:
            raise ReplayError(f"{function}{args}: kalloc reported {errors[0].kind}: {errors[0].message}")
        return result

    # -- the C library face: firmware calls ----------------------------------------------------------
    def malloc(self, size: int, caller: Caller = TASK) -> int | None:
        return self._call("replay_malloc", size) or None

    def free(self, addr: int, caller: Caller = TASK) -> None:
        self._call("replay_free", addr)

    def calloc(self, n: int, size: int, caller: Caller = TASK) -> int | None:
        return self._call("replay_calloc", n, size) or None

    def realloc(self, addr: int, size: int, caller: Caller = TASK) -> int | None:
        return self._call("replay_realloc", addr, size) or None

    def aligned_alloc(self, align: int, size: int, caller: Caller = TASK) -> int | None:
        return self._call("replay_aligned_alloc", align, size) or None

    def malloc_usable_size(self, addr: int) -> int:
        return self.inner.malloc_usable_size(addr)

    # -- everything else is the policy's under the bridge ---------------------------------------------
    def live_allocations(self) -> list[Allocation]:
        return self.inner.live_allocations()

    def owned_pfns(self) -> dict[int, str]:
        return self.inner.owned_pfns()

    def owns(self, addr: int) -> bool:
        return self.inner.owns(addr)

    def write(self, addr: int, data: bytes) -> None:
        self.inner.write(addr, data)

    def read(self, addr: int, n: int) -> bytes:
        return self.inner.read(addr, n)

    def check(self) -> None:
        self.inner.check()

    def stats(self) -> dict[str, Any]:
        return {**self.inner.stats(), "through_firmware": True}
