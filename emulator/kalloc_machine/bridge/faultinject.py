"""Fault injection at the hypercall bridge: turn chosen allocation requests into NULL.

`install(bridge, machine, ka, firmware, config)` sets `Bridge.intercept`: before each allocation
service runs, the request (service, size, GFP, context, the cache it would come
from, its call site) goes to `kalloc.failslab.FailSlab`, which decides. A
request chosen to fail never reaches the allocator: the firmware reads NULL
(result 0, aux 0), exactly what a real failure returns, and the report gets an
`oom` warning with `injected: true`, the request and the site.

The allocator itself knows nothing of this (it stays usable standalone); the
count is of requests through the bridge, so it is the firmware's view: the
Nth call to malloc/kmalloc/kmem_cache_alloc/alloc_pages/... (docs/user-guide.md).

Invariants:
 1. Only the allocation services below are ever intercepted; frees never are.
 2. `last` is the most recent injected failure; `link_fault()` names it in a
    later cpu-fault (the NULL the firmware did not check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kalloc import gfp as G
from kalloc.config import Caller, Context
from kalloc.errors import CpuFaultError, KallocError, OutOfMemoryError
from kalloc.failslab import FailConfig, FailSlab, Request
from kalloc.kmalloc import KMALLOC_MAX_CACHE_SIZE, class_name, kmalloc_index
from kalloc_machine.bridge import abi
from kalloc_machine.report.symbols import WRAPPERS, Symbolizer

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.bridge.doorbell import Bridge, BridgeMachine
    from kalloc_machine.elf import Firmware

_MALLOC_GFP = G.GFP_KERNEL  # what the C library face allocates with (kalloc/libc.py)


def _kmalloc_cache(size: int, gfp: int) -> str | None:
    if not 0 < size <= KMALLOC_MAX_CACHE_SIZE:
        return None
    return ("dma-kmalloc-" if gfp & G.DMA else "kmalloc-") + class_name(kmalloc_index(size))


class FaultInjector:
    """The bridge's intercept: decode an allocation request, ask FailSlab, answer NULL or not."""

    def __init__(self, machine: BridgeMachine, ka: Kalloc, firmware: Firmware, config: FailConfig) -> None:
        self.machine = machine  # where the injected failures are reported
        self.ka = ka
        self.firmware = firmware
        self.failslab = FailSlab(config)
        self.last: dict[str, Any] | None = None
        fw = firmware
        lo, hi = fw.symbol_addr("__kalloc_api_start"), fw.symbol_addr("__kalloc_api_end")
        self._api = (lo, hi) if lo is not None and hi is not None else (0, 0)
        self._site_range: tuple[int, int] | None = None
        if config.site is not None:
            addr = fw.symbol_addr(config.site)
            size = next((s for a, s, n in fw.symbols if n == config.site and a == addr), 0)
            if addr is None:
                raise ValueError(f"--fail-site {config.site}: no such symbol in the firmware")
            self._site_range = (addr, addr + max(size, 1))
        self._decode = {abi.SERVICE_BY_NAME[name].number: fn for name, fn in self._decoders().items()}

    def _decoders(self) -> dict[str, Any]:
        ka = self.ka

        def cache_name(handle: int) -> str | None:
            cache = ka.cache_by_handle(handle)
            return cache.name if cache is not None else None

        def pool_name(handle: int) -> str | None:
            pool = ka.pool_by_handle(handle)
            return pool.name if pool is not None else None

        m = _MALLOC_GFP
        return {
            "ALLOC_PAGES": lambda a: (4096 << min(a[1], 20), a[0], None),
            "ALLOC_PAGES_EXACT": lambda a: (a[0], a[1], None),
            "CACHE_ALLOC": lambda a: (-1, a[1], cache_name(a[0])),
            "KMALLOC": lambda a: (a[0], a[1], _kmalloc_cache(a[0], a[1])),
            "KREALLOC": lambda a: (a[1], a[2], _kmalloc_cache(a[1], a[2])),
            "KCALLOC": lambda a: (a[0] * a[1], a[2], _kmalloc_cache(a[0] * a[1], a[2])),
            "MALLOC": lambda a: (a[0], m, _kmalloc_cache(a[0], m)),
            "CALLOC": lambda a: (a[0] * a[1], m, _kmalloc_cache(a[0] * a[1], m)),
            "REALLOC": lambda a: (a[1], m, _kmalloc_cache(a[1], m)),
            "ALIGNED_ALLOC": lambda a: (a[1], m, None),
            "DMA_ALLOC_COHERENT": lambda a: (a[0], a[1], None),
            "DMA_POOL_ALLOC": lambda a: (-1, a[1], pool_name(a[0])),
        }

    # -- the intercept -------------------------------------------------------------------

    def __call__(self, service: int, caller: Caller, args: list[int]) -> tuple[int, int] | None:
        decode = self._decode.get(service)
        if decode is None:
            return None
        size, gfp, cache = decode(args)
        if size == 0 or (service == abi.SERVICE_BY_NAME["CACHE_ALLOC"].number and cache is None):
            return None  # zero-size kmalloc/realloc and bad handles: the service's own business
        name = abi.SERVICE_BY_NUMBER[service].name
        req = Request(
            api=name,
            size=size,
            gfp=gfp,
            nofail=bool(gfp & G.NOFAIL),
            context={Context.IRQ: "irq", Context.IRQS_OFF: "irqs-off"}.get(caller.context, "task"),
            cache=cache,
            site=caller.site,
        )
        if self._site_range is not None:
            req.function = self.failslab.config.site if self._in_site(caller.site) else None
        if not self.failslab.decide(req):
            return None
        self._report(req)
        return 0, 0

    def _in_site(self, handle: int) -> bool:
        """Is the first frame outside the wrappers inside the --fail-site function?"""
        assert self._site_range is not None
        fw = self.firmware
        lo, hi = self._api
        for pc in self.ka.depot.get(handle):
            at = pc - 1  # a return address: the call is just before it
            if lo <= at < hi:
                continue
            sym = fw.symbol_at(at)
            if sym is not None and sym[0] in WRAPPERS:
                continue
            return self._site_range[0] <= at < self._site_range[1]
        return False

    def _report(self, req: Request) -> None:
        n = self.failslab.eligible
        request: dict[str, Any] = {"api": req.api, "gfp": G.describe(req.gfp), "context": req.context}
        if req.size >= 0:
            request["size"] = req.size
        if req.cache is not None:
            request["cache"] = req.cache
        what = f"{req.size} bytes" if req.size >= 0 else f"an object of {req.cache}"
        err = OutOfMemoryError(
            f"injected allocation failure #{n} ({req.api} of {what}): fault injection, not a real shortage",
            site=req.site,
            severity="warning",
            injected=True,
            request=request,
            nth=n,
        )
        self.machine.report(err)
        self.last = {"nth": n, "request": request, "site": req.site}

    # -- after the run ---------------------------------------------------------------------

    def link_fault(self, errors: list[KallocError]) -> None:
        """Name the most recent injected failure in the run's cpu-fault (the unchecked NULL)."""
        if self.last is None:
            return
        sym = Symbolizer(self.firmware, self.ka.depot)
        for err in errors:
            if isinstance(err, CpuFaultError) and "after_injected_failure" not in err.fields:
                last = dict(self.last)
                last["site"] = sym.site(last["site"])
                err.fields["after_injected_failure"] = last
                err.message += (
                    f" (after injected allocation failure #{last['nth']}: "
                    f"{last['request']['api']} returned NULL; was it checked?)"
                )


def install(bridge: Bridge, machine: BridgeMachine, ka: Kalloc, firmware: Firmware,
            config: FailConfig) -> FaultInjector | None:  # fmt: skip
    """Intercept `bridge` when `config` injects anything (ValueError: a --fail-site not in firmware)."""
    if not config.enabled:
        return None
    injector = FaultInjector(machine, ka, firmware, config)
    bridge.intercept = injector
    return injector
