"""The request gate: the argument and context checks every API family makes first.

Every allocation and free entry point (kmalloc, the C library face, the page
and cache API, DMA, vmalloc) passes its arguments here before it touches any
state:

    check_gfp(gfp)            unknown GFP bits or a negative mask   -> BadArgumentError
    check_size(size, what)    not an int in 0..2^32-1 (size_t)       -> BadArgumentError
    check_order(order)        outside 0..max_order                  -> BadArgumentError
    may_sleep(gfp, api)       the context rule: a blocking request (__GFP_DIRECT_RECLAIM)
                              from interrupt context or with interrupts disabled is
                              reported invalid-context and still served, as Linux's
                              might_sleep() in slab_pre_alloc_hook warns and goes on
    free_in_atomic(api, addr) a free that may sleep (dma_free_coherent) outside task context

Invariants:
 1. A check that raises changes no state: the gate runs before any allocator work.
 2. The gate only appends to `reports` (invalid-context); it never allocates.
"""

from __future__ import annotations

from kalloc import gfp as G
from kalloc.config import Caller, Config, Context
from kalloc.errors import BadArgumentError, InvalidContextError, KallocError

U32_MAX = 0xFFFF_FFFF  # the firmware is 32-bit: no size or address argument exceeds this

_UNKNOWN_GFP = ~G.KNOWN_MASK
_DIRECT_RECLAIM = G.DIRECT_RECLAIM
_TASK = Context.TASK


class RequestGate:
    """The checks of module docstring, over one allocator's config and report list."""

    def __init__(self, config: Config, reports: list[KallocError]) -> None:
        self.max_order = config.max_order
        self.reports = reports

    def check_gfp(self, gfp: int, caller: Caller) -> None:
        if gfp & _UNKNOWN_GFP or gfp < 0:
            raise BadArgumentError(
                f"unknown GFP flag bits {gfp & _UNKNOWN_GFP & U32_MAX:#x} in {gfp:#x}",
                site=caller.site,
                gfp=gfp,
            )

    @staticmethod
    def check_size(size: int, caller: Caller, what: str = "size") -> None:
        if not isinstance(size, int) or size < 0 or size > U32_MAX:
            raise BadArgumentError(
                f"{what} {size!r} does not fit in 32 bits (size overflow)", site=caller.site
            )

    def check_order(self, order: int, caller: Caller) -> None:
        if not isinstance(order, int) or not 0 <= order <= self.max_order:
            raise BadArgumentError(f"order {order!r} is outside 0..{self.max_order}", site=caller.site)

    def may_sleep(self, gfp: int, caller: Caller, api: str) -> None:
        """The context rule: a blocking allocation outside task context is reported (and served)."""
        if gfp & _DIRECT_RECLAIM and caller.context is not _TASK:
            self.invalid_context(gfp, caller, api)

    def invalid_context(self, gfp: int, caller: Caller, api: str) -> None:
        """Report a sleeping allocation from atomic context (Linux: might_sleep() in slab_pre_alloc_hook)."""
        where = "from interrupt context" if caller.context is Context.IRQ else "with interrupts disabled"
        self.reports.append(
            InvalidContextError(
                f"sleeping allocation {where}",
                site=caller.site,
                api=api,
                gfp=G.describe(gfp),
                context=caller.context.name.lower(),
                depth=caller.depth,
            )
        )

    def free_in_atomic(self, api: str, addr: int, caller: Caller) -> None:
        """A free that may sleep, outside task context (Linux: WARN_ON(irqs_disabled()))."""
        if caller.context is _TASK:
            return
        where = "from interrupt context" if caller.context is Context.IRQ else "with interrupts disabled"
        self.reports.append(
            InvalidContextError(
                f"{api}() {where}",
                addr=addr,
                site=caller.site,
                api=api,
                context=caller.context.name.lower(),
                depth=caller.depth,
            )
        )
