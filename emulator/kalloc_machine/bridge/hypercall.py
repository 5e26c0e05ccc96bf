"""The hypercall bridge: doorbell stores from firmware become allocator calls.

The machine calls `Bridge.__call__(service, block)` from the doorbell's MMIO
write callback (emulator/abi.py describes the transport and the block). The
bridge reads the block straight from guest RAM through a memoryview, decodes
the caller's context and call site, runs the service on the allocator and
writes `result`/`aux` back into the block. One Python call per hypercall, no
register reads.

Every value in a block is untrusted. The bridge checks the block address,
service number, pointers and strings before the allocator sees them; the
allocator checks flags, sizes and handles itself and raises a `KallocError`,
which the bridge turns into a report entry and a 0 result.

Invariants:
 1. The callback never stops the emulator except through `machine.fatal`,
    which ends the run (a stopped store would replay on resume).
 2. An error never leaves a half-done allocator operation: the allocator
    raises before it changes state; the bridge only records.
 3. Site tracking is always on: every call saves its frame-pointer stack in the
    allocator's stack depot and passes the handle as `Caller.site`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kalloc import Caller, Context
from kalloc.errors import BadArgumentError, KallocError
from kalloc.physmem import BadAddress, RamBank
from kalloc.slab import SLAB_KALLOC_CTOR
from kalloc_machine.bridge import abi
from kalloc_machine.memlayout import DOORBELL_SIZE

if TYPE_CHECKING:
    from kalloc import Kalloc
    from kalloc_machine.machine import Machine

BACKTRACE_DEPTH = 16  # frames kept per site: deep enough for wrapper → libc → user chains
_IN = struct.Struct("<11I")  # result, aux, ra, fp, ctx, a0..a5
_OUT = struct.Struct("<II")
_PAIR = struct.Struct("<II")  # [fp-8], [fp-4]
_EINVAL = 22
MAX_SERVICES = DOORBELL_SIZE // 4  # one 32-bit doorbell per service number

Handler = Callable[..., tuple[int, int]]


@dataclass(slots=True)
class IrqContextStats:
    """Allocations and frees made from interrupt context (for the report)."""

    allocs: int = 0
    frees: int = 0
    bytes: int = 0
    failures: int = 0


@dataclass(slots=True)
class BridgeStats:
    calls: dict[str, int] = field(default_factory=dict)
    irq: IrqContextStats = field(default_factory=IrqContextStats)
    lines: dict[int, IrqContextStats] = field(default_factory=dict)  # the same, per interrupt line


class Bridge:
    """Decodes argument blocks and dispatches them to the allocator."""

    def __init__(self, machine: Machine, ka: Kalloc, *, console: Callable[[bytes], None]) -> None:
        self.machine = machine
        self.ka = ka
        self.phys = machine.phys
        self.console = console
        self.stats = BridgeStats()
        # The policy behind the C library face (kalloc.heaps, `--heap`); the allocator's own by default.
        self.libc: Any = ka
        self.bootinfo = b""
        self._contexts: dict[int, tuple[Context, int]] = {}
        self._stack_bank: RamBank = self.phys.banks[0]
        self._stack_hi = self._stack_bank.base + self._stack_bank.size - abi.BLOCK_SIZE
        self._counts = [0] * (MAX_SERVICES)
        self._table: list[Handler | None] = [None] * MAX_SERVICES
        for svc in abi.SERVICES:
            self._table[svc.number] = getattr(self, "svc_" + svc.name.lower(), None)
        # Called before every service with (service, caller, args); a (result, aux) answer
        # replaces the service (fault injection, emulator/faultinject.py). None: no hook.
        self.intercept: Callable[[int, Caller, list[int]], tuple[int, int] | None] | None = None

    def register(self, name: str, handler: Handler) -> None:
        """Serve abi service `name` with handler(caller, *args) -> (result, aux) (emulator/kasan.py)."""
        self._table[abi.SERVICE_BY_NAME[name].number] = handler

    # -- the doorbell -----------------------------------------------------------------------------

    def __call__(self, service: int, block: int) -> None:
        """Run one hypercall. Called from the MMIO write callback: record, never stop."""
        bank = self._stack_bank  # blocks live on the stack: nearly always the same bank
        if not bank.base <= block <= self._stack_hi or block & 3:
            bank = self.phys.bank_of(block)
            if bank is not None and block + abi.BLOCK_SIZE <= bank.end:
                self._stack_bank, self._stack_hi = bank, bank.base + bank.size - abi.BLOCK_SIZE
        if block & 3 or bank is None or block + abi.BLOCK_SIZE > bank.end:
            self.machine.fatal(
                BadArgumentError(
                    f"hypercall {self._name(service)} passed an argument block at {block:#x}, "
                    "which is not 4-byte aligned RAM",
                    addr=block,
                    service=service,
                )
            )
            return
        # Straight from the bank's buffer: no view objects on the hot path.
        buf, off = bank.buf, block - bank.base
        _res, _aux, ra, fp, ctx, *args = _IN.unpack_from(buf, off)
        caller = self._caller(ra, fp, ctx, bank)
        handler = self._table[service] if service < len(self._table) else None
        if handler is None:
            self._report(
                BadArgumentError(
                    f"hypercall number {service} does not exist (ABI v{abi.ABI_VERSION})",
                    site=caller.site,
                    service=service,
                ),
            )
            _OUT.pack_into(buf, off, 0, _EINVAL)
            return
        self._counts[service] += 1
        if self.intercept is not None:
            answer = self.intercept(service, caller, args)
            if answer is not None:
                _OUT.pack_into(buf, off, answer[0] & 0xFFFF_FFFF, answer[1] & 0xFFFF_FFFF)
                self._drain_allocator_reports()
                return
        try:
            result, aux = handler(caller, *args)
        except KallocError as err:
            if err.site is None:
                err.site = caller.site
            err.fields.setdefault("service", self._name(service))
            if err.kind == "oom" and err.severity == "error":
                self.machine.fatal(err)  # __GFP_NOFAIL that cannot be met ends the run
            else:
                self._report(err)
            result, aux = 0, 0
        except BadAddress as exc:
            self._report(BadArgumentError(f"{self._name(service)}: {exc}", site=caller.site))
            result, aux = 0, 0
        except Exception as exc:  # a bug in kalloc itself: end the run with a report, not a traceback
            self.machine.fatal(
                BadArgumentError(
                    f"internal error in kalloc while serving {self._name(service)}: "
                    f"{type(exc).__name__}: {exc}",
                    site=caller.site,
                    internal=True,
                )
            )
            return
        _OUT.pack_into(buf, off, result & 0xFFFF_FFFF, aux & 0xFFFF_FFFF)
        self._drain_allocator_reports()

    def _caller(self, ra: int, fp: int, ctx: int, bank: RamBank) -> Caller:
        context = self._contexts.get(ctx)
        if context is None:
            depth = (ctx >> abi.CTX_DEPTH_SHIFT) & abi.CTX_DEPTH_MASK
            if depth:
                context = (Context.IRQ, depth)
            elif not ctx & abi.CTX_MIE:
                context = (Context.IRQS_OFF, 0)
            else:
                context = (Context.TASK, 0)
            self._contexts[ctx] = context
        return Caller(context[0], self.ka.depot.save(self._stack(ra, fp, bank)), context[1])

    @staticmethod
    def _stack(ra: int, fp: int, bank: RamBank) -> tuple[int, ...]:
        """The call stack above a hypercall stub: [ra, then saved ra of each frame up the fp chain].

        The stub's own frame is at `fp`: [fp-8] is its caller's frame pointer and each
        frame keeps its return address at [fp-4] (RISC-V GCC with frame pointers). The
        stack is in the block's bank; a frame pointer outside it ends the walk.
        """
        lo, hi, buf = bank.base + 8, bank.base + bank.size, bank.buf
        pcs = [ra]
        if fp & 3 or not lo <= fp <= hi:
            return (ra,)
        fp = _PAIR.unpack_from(buf, fp - lo)[0]
        while fp and len(pcs) < BACKTRACE_DEPTH:
            if fp & 3 or not lo <= fp <= hi:
                break
            nxt, ret = _PAIR.unpack_from(buf, fp - lo)  # [fp-8], [fp-4]
            if not ret:
                break
            pcs.append(ret)
            if nxt and nxt <= fp:  # frames grow up the stack; anything else is garbage
                break
            fp = nxt
        return tuple(pcs)

    def _report(self, err: KallocError) -> None:
        self.machine.report(err)

    def _drain_allocator_reports(self) -> None:
        reports = self.ka.reports
        if reports:
            for err in reports:
                self.machine.report(err)
            reports.clear()

    @staticmethod
    def _name(service: int) -> str:
        svc = abi.SERVICE_BY_NUMBER.get(service)
        return svc.name if svc else f"#{service}"

    def call_counts(self) -> dict[str, int]:
        """Calls per service name, in ABI order (deterministic)."""
        return {s.name: self._counts[s.number] for s in abi.SERVICES if self._counts[s.number]}

    # -- helpers for services ---------------------------------------------------------------------

    def _cstr(self, addr: int, what: str) -> str:
        if not addr:
            raise BadArgumentError(f"{what} is NULL")
        try:
            raw = self.phys.read_cstr(addr, 64)
        except BadAddress as exc:
            raise BadArgumentError(f"{what}: {exc}", addr=addr) from None
        return raw.decode("utf-8", "replace")

    def _irq_account(self, caller: Caller, addr: int | None, size: int, *, free: bool = False) -> None:
        if caller.context is not Context.IRQ:
            return
        which = getattr(self.machine, "irq_line", None)  # a test double may have no lines
        line = which() if which is not None else 0
        per_line = self.stats.lines.get(line)
        if per_line is None:
            per_line = self.stats.lines[line] = IrqContextStats()
        for irq in (self.stats.irq, per_line):
            if free:
                irq.frees += 1
            elif addr:
                irq.allocs += 1
                irq.bytes += size
            else:
                irq.failures += 1

    # -- services (names follow emulator/abi.py: svc_<name>) ------------------------------------

    def svc_nop(self, caller: Caller, *args: int) -> tuple[int, int]:
        return 0, 0

    def svc_bootinfo(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        data = self.bootinfo[: min(length, len(self.bootinfo))]
        if not self.phys.contains(buf, max(len(data), 1)):
            raise BadArgumentError(f"BOOTINFO buffer {buf:#x}+{length} is not RAM", addr=buf)
        self.phys.write(buf, data)
        return len(data), 0

    def svc_console_write(self, caller: Caller, buf: int, length: int, *args: int) -> tuple[int, int]:
        if length > 1 << 20 or not self.phys.contains(buf, max(length, 1)):
            raise BadArgumentError(f"CONSOLE_WRITE buffer {buf:#x}+{length} is not RAM", addr=buf)
        self.console(self.phys.read(buf, length))
        return length, 0

    def svc_stats_dump(self, caller: Caller, what: int, *args: int) -> tuple[int, int]:
        ka = self.ka
        parts = []
        if what & abi.STATS_BUDDYINFO:
            parts.append(ka.buddyinfo())
        if what & abi.STATS_ZONEINFO:
            parts.append(ka.zoneinfo())
        if what & abi.STATS_SLABINFO:
            parts.append(ka.slabinfo())
        text = "\n".join(p.rstrip("\n") for p in parts) + "\n"
        self.console(text.encode())
        return 0, 0

    def svc_not_leak(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self.ka.not_leak(ptr)
        return 0, 0

    def svc_mark(self, caller: Caller, ident: int, *args: int) -> tuple[int, int]:
        return 0, 0

    def svc_alloc_pages(self, caller: Caller, gfp: int, order: int, *args: int) -> tuple[int, int]:
        addr = self.ka.alloc_pages(gfp, order, caller)
        self._irq_account(caller, addr, 4096 << order if order < 32 else 0)
        return addr or 0, 0

    def svc_free_pages(self, caller: Caller, addr: int, order: int, *args: int) -> tuple[int, int]:
        self.ka.free_pages(addr, order, caller)
        self._irq_account(caller, addr, 0, free=True)
        return 0, 0

    def svc_alloc_pages_exact(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.alloc_pages_exact(size, gfp, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_free_pages_exact(self, caller: Caller, addr: int, size: int, *args: int) -> tuple[int, int]:
        self.ka.free_pages_exact(addr, size, caller)
        self._irq_account(caller, addr, 0, free=True)
        return 0, 0

    def _cache(self, handle: int) -> Any:
        cache = self.ka.cache_by_handle(handle)
        if cache is None:
            raise BadArgumentError(f"cache handle {handle:#x} was never created or was destroyed")
        return cache

    def svc_cache_create(
        self, caller: Caller, name: int, size: int, align: int, flags: int, ctor: int, *args: int
    ) -> tuple[int, int]:
        # A firmware ctor runs in the firmware (CACHE_ALLOC's aux says when); the allocator
        # only needs to know there is one, so it keeps constructed objects unpoisoned (SLUB).
        if ctor:
            flags |= SLAB_KALLOC_CTOR
        cache = self.ka.kmem_cache_create(self._cstr(name, "cache name"), size, align, flags)
        return cache.handle, 0

    def svc_cache_alloc(self, caller: Caller, handle: int, gfp: int, *args: int) -> tuple[int, int]:
        cache = self._cache(handle)
        addr = self.ka.kmem_cache_alloc(cache, gfp, caller)
        self._irq_account(caller, addr, cache.size)
        return (addr, int(cache.last_alloc_fresh)) if addr else (0, 0)

    def svc_cache_free(self, caller: Caller, handle: int, obj: int, *args: int) -> tuple[int, int]:
        self.ka.kmem_cache_free(self._cache(handle), obj, caller)
        self._irq_account(caller, obj, 0, free=True)
        return 0, 0

    def svc_cache_shrink(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        return self.ka.kmem_cache_shrink(self._cache(handle)), 0

    def svc_cache_destroy(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        self.ka.kmem_cache_destroy(self._cache(handle))
        return 0, 0

    def svc_kmalloc(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.kmalloc(size, gfp, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_kfree(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self.ka.kfree(ptr, caller)
        if ptr:
            self._irq_account(caller, ptr, 0, free=True)
        return 0, 0

    def svc_ksize(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        return self.ka.ksize(ptr), 0

    def svc_krealloc(self, caller: Caller, ptr: int, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.krealloc(ptr, size, gfp, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_kcalloc(self, caller: Caller, n: int, size: int, gfp: int, *args: int) -> tuple[int, int]:
        addr = self.ka.kcalloc(n, size, gfp, caller)
        self._irq_account(caller, addr, n * size)
        return addr or 0, 0

    def svc_malloc(self, caller: Caller, size: int, *args: int) -> tuple[int, int]:
        addr = self.libc.malloc(size, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_free(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        self.libc.free(ptr, caller)
        if ptr:
            self._irq_account(caller, ptr, 0, free=True)
        return 0, 0

    def svc_calloc(self, caller: Caller, n: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.libc.calloc(n, size, caller)
        self._irq_account(caller, addr, n * size)
        return addr or 0, 0

    def svc_realloc(self, caller: Caller, ptr: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.libc.realloc(ptr, size, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_aligned_alloc(self, caller: Caller, align: int, size: int, *args: int) -> tuple[int, int]:
        addr = self.libc.aligned_alloc(align, size, caller)
        self._irq_account(caller, addr, size)
        return addr or 0, 0

    def svc_malloc_usable_size(self, caller: Caller, ptr: int, *args: int) -> tuple[int, int]:
        return self.libc.malloc_usable_size(ptr), 0

    def svc_dma_alloc_coherent(self, caller: Caller, size: int, gfp: int, *args: int) -> tuple[int, int]:
        got = self.ka.dma_alloc_coherent(size, gfp, caller)
        self._irq_account(caller, got[0] if got else None, size)
        return got if got else (0, 0)

    def svc_dma_free_coherent(
        self, caller: Caller, size: int, cpu: int, dma: int, *args: int
    ) -> tuple[int, int]:
        self.ka.dma_free_coherent(size, cpu, dma, caller)
        self._irq_account(caller, cpu, 0, free=True)
        return 0, 0

    def _pool(self, handle: int) -> Any:
        pool = self.ka.pool_by_handle(handle)
        if pool is None:
            raise BadArgumentError(f"DMA pool handle {handle:#x} was never created or was destroyed")
        return pool

    def svc_dma_pool_create(
        self, caller: Caller, name: int, size: int, align: int, boundary: int, *args: int
    ) -> tuple[int, int]:
        pool = self.ka.dma_pool_create(self._cstr(name, "pool name"), size, align, boundary)
        return pool.handle, 0

    def svc_dma_pool_alloc(self, caller: Caller, handle: int, gfp: int, *args: int) -> tuple[int, int]:
        pool = self._pool(handle)
        got = self.ka.dma_pool_alloc(pool, gfp, caller)
        self._irq_account(caller, got[0] if got else None, pool.size)
        return got if got else (0, 0)

    def svc_dma_pool_free(
        self, caller: Caller, handle: int, cpu: int, dma: int, *args: int
    ) -> tuple[int, int]:
        self.ka.dma_pool_free(self._pool(handle), cpu, dma, caller)
        self._irq_account(caller, cpu, 0, free=True)
        return 0, 0

    def svc_dma_pool_destroy(self, caller: Caller, handle: int, *args: int) -> tuple[int, int]:
        self.ka.dma_pool_destroy(self._pool(handle))
        return 0, 0
