"""What every service family shares: interrupt-context accounting and guest strings.

`IrqAccounting` counts the allocations, frees, bytes and failures made from interrupt
context, in all and per interrupt line (the report's `interrupts` section); every
allocating or freeing service calls `account()` once. `guest_cstr()` reads a name
(cache, DMA pool) the firmware passed by pointer.

Invariants:
 1. `account()` costs one comparison outside interrupt context (the common case).
 2. `lines` holds a line only once a handler on it allocated or freed something.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kalloc import Caller, Context
from kalloc.errors import BadArgumentError
from kalloc.physmem import BadAddress, PhysMem

_IRQ = Context.IRQ


@dataclass(slots=True)
class IrqContextStats:
    """Allocations and frees made from interrupt context (for the report)."""

    allocs: int = 0
    frees: int = 0
    bytes: int = 0
    failures: int = 0


class IrqAccounting:
    """The interrupt-context counters of one run (module docstring)."""

    def __init__(self, irq_line: Callable[[], int] | None) -> None:
        # irq_line: the machine's `irq_line` (the line whose handler runs); a test double may have none
        self.irq_line = irq_line
        self.irq = IrqContextStats()
        self.lines: dict[int, IrqContextStats] = {}  # the same, per interrupt line

    def account(self, caller: Caller, addr: int | None, size: int, *, free: bool = False) -> None:
        """Count one allocation (addr, size; a falsy addr is a failure) or free (free=True)."""
        if caller.context is not _IRQ:
            return
        line = self.irq_line() if self.irq_line is not None else 0
        per_line = self.lines.get(line)
        if per_line is None:
            per_line = self.lines[line] = IrqContextStats()
        for irq in (self.irq, per_line):
            if free:
                irq.frees += 1
            elif addr:
                irq.allocs += 1
                irq.bytes += size
            else:
                irq.failures += 1


def guest_cstr(phys: PhysMem, addr: int, what: str) -> str:
    """The NUL-terminated string at addr (at most 64 bytes); bad-hypercall when it is not RAM."""
    if not addr:
        raise BadArgumentError(f"{what} is NULL")
    try:
        raw = phys.read_cstr(addr, 64)
    except BadAddress as exc:
        raise BadArgumentError(f"{what}: {exc}", addr=addr) from None
    return raw.decode("utf-8", "replace")
