"""The error hierarchy: one exception per misuse, each a report entry in waiting.

Every error kalloc or the machine can report is a `KallocError` whose `kind` is
one of the closed set in docs/abi.md. Errors carry raw facts only
(addresses, sizes, stack-depot handles, PCs); symbols and file:line are
resolved when a report is written, by whoever holds the firmware's ELF.

Invariants:
 1. `kind` is always a member of KINDS; `severity` is "error" or "warning".
 2. `fields` holds only JSON-able values (ints, strings, lists, dicts of them).
"""

from __future__ import annotations

from typing import Any

KINDS: tuple[str, ...] = (
    "out-of-bounds",
    "use-after-free",
    "double-free",
    "invalid-free",
    "leak",
    "invalid-context",
    "dma-unreachable",
    "dma-boundary",
    "page-fault",
    "oom",
    "bad-hypercall",
    "cpu-fault",
    "timeout",
    "internal",
    "stack-overflow",
    "over-budget",
)


class KallocError(Exception):
    """A reportable error.

    Args:
        message: one sentence naming the broken rule, in words.
        addr: the address the error is about (object, access, fault), if any.
        site: stack-depot handle of the caller (see kalloc.stackdepot), if known.
        severity: "error" (default for the class) or "warning".
        fields: kind-specific facts (object, alloc_site, free_site, access, ...).
    """

    kind = "bad-hypercall"
    default_severity = "error"

    def __init__(
        self,
        message: str,
        *,
        addr: int | None = None,
        site: int | None = None,
        severity: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.addr = addr
        self.site = site
        self.severity = severity or self.default_severity
        self.fields: dict[str, Any] = fields

    def __repr__(self) -> str:
        where = f" at {self.addr:#x}" if self.addr is not None else ""
        return f"{type(self).__name__}({self.kind}{where}: {self.message})"


class OutOfBoundsError(KallocError):
    kind = "out-of-bounds"


class UseAfterFreeError(KallocError):
    kind = "use-after-free"


class DoubleFreeError(KallocError):
    kind = "double-free"


class InvalidFreeError(KallocError):
    kind = "invalid-free"


class LeakError(KallocError):
    kind = "leak"


class InvalidContextError(KallocError):
    kind = "invalid-context"


class DmaUnreachableError(KallocError):
    kind = "dma-unreachable"


class DmaBoundaryError(KallocError):
    kind = "dma-boundary"


class PageFaultError(KallocError):
    kind = "page-fault"


class OutOfMemoryError(KallocError):
    """An allocation that could not be met. A warning unless __GFP_NOFAIL."""

    kind = "oom"
    default_severity = "warning"


class BadArgumentError(KallocError):
    """An argument that makes no sense: unknown flag, bad handle, wild pointer."""

    kind = "bad-hypercall"


class CpuFaultError(KallocError):
    kind = "cpu-fault"


class TimeoutError_(KallocError):
    """Instruction budget or wall-clock limit exhausted."""

    kind = "timeout"


class InternalError(KallocError):
    """kalloc's own bug (a Python exception in kalloc while running firmware), never the firmware's."""

    kind = "internal"


class StackOverflowError(KallocError):
    """The guard below the firmware's stack was touched: the stack overflowed (the run ends)."""

    kind = "stack-overflow"


class InvariantError(AssertionError):
    """`check()` found allocator state that breaks a documented invariant.

    Not a report kind: this is a bug in kalloc itself, never in the firmware.
    """


class OverBudgetError(KallocError):
    """An allocation that took its tag's live bytes over its budget (issue 18; --budgets-strict: an error)."""

    kind = "over-budget"
    default_severity = "warning"
