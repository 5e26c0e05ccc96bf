"""The doorbell dispatch: one firmware store becomes one service call, its result written back.

The machine calls `Bridge(service, block)` from the doorbell's MMIO write callback
(kalloc_machine.bridge.abi describes the transport and the block). The bridge reads
the block straight from guest RAM (the bank's buffer, no Unicorn call), decodes the
caller's context and call site, looks the service up in a table indexed by number,
runs it and writes `result`/`aux` back into the block. The services themselves live
in families (kalloc_machine.bridge.services, .kasan), put in the table by `serve()`
from the ABI table; other bridge parts replace single entries (`register()`) or
intercept every call (`intercept`, fault injection).

Context: the machine's truth wins, the firmware's claim is checked. The caller's
context (task, interrupt depth, interrupts off) comes from the machine's `irq_state`
(kalloc_machine.irqstate: the interrupts it delivered, the returns the CPU ran, the
global mask), not from the block's `ctx` word, which guest code can overwrite. A claim
that disagrees is a `bad-hypercall` naming both, once per distinct (claim, truth)
pair, and the call goes on judged by the truth. A test double without `irq_state`
has only the claim.

Data structure:
    _table[number] -> handler(caller, *args) -> (result, aux), or None (no such service)
    _plain[number] -> the same handler when it reads no caller (invariant 6), else None
    _contexts[ctx word] -> (Context, depth)   decoded once per distinct (true) word
    _callers[site << 32 | ctx word] -> Caller one per (site, true word): Callers are immutable
    _chain                                    RV32's call-site walks, remembered (bridge/callsite.py)
    _sites[(ra, fp)] -> Site                  RV32: a walk's check, ctx word and Caller (restored
    _by_walk[id(walker's answer)] -> Site     Cortex-M: (answer, ra, ctx, Caller)   with the depot)
    _disagreements {(claim, truth)}           the context claims already reported

Every value in a block is untrusted. The bridge checks the block address and the
service number; the services check pointers and strings; the allocator checks
flags, sizes and handles and raises a `KallocError`, which the bridge reports
(result 0). Any other exception is kalloc's own bug: an `internal` report that ends
the run (kalloc_machine.bridge.internal), never the firmware's `bad-hypercall`.

Invariants:
 1. The callback never stops the emulator except through `machine.fatal`, which ends
    the run (a stopped store would replay on resume).
 2. An error never leaves a half-done allocator operation: the allocator raises before
    it changes state; the bridge only records.
 3. Site tracking is always on: every call saves its frame-pointer stack in the
    allocator's stack depot and passes the handle as `Caller.site`.
 4. The hot path (a known service, no error, the claim equal to the truth) makes no
    Python call besides the call site's (RV32: none for a remembered site, `_sites`;
    Cortex-M: the ISA's walker and `_site_caller`),
    the intercept when one is set, and the handler (a known site and context: no decode):
    the claim is checked by one comparison with `irq_state.word`, and only a mismatch
    takes `_judge` (which reads the mask from the CPU when the claim's differs from the
    machine's prediction, or would make the call "interrupts off").
 5. Every Caller's context and depth are the machine's (invariant 2 of irqstate.py).
 6. A handler marked `reads_no_caller` (bridge/callsite.py: the empty NOP, BOOTINFO, ...) is
    called with None for its caller and no call-site walk, unless an intercept is set; its
    walk is done only if the call fails (`_late_caller`, before the callback returns, while
    the stack is still the call's), so its error reports name the same site as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from kalloc import Caller, Context
from kalloc.errors import BadArgumentError, KallocError
from kalloc.physmem import BadAddress, PhysMem, RamBank
from kalloc_machine.bridge import abi
from kalloc_machine.bridge.callsite import MEMO, ChainMemo, Site, call_site_walker, chain, reads_caller
from kalloc_machine.bridge.internal import hypercall_phrase, internal_error
from kalloc_machine.irqstate import UNKNOWN, IrqState
from kalloc_machine.memlayout import DOORBELL_SIZE

if TYPE_CHECKING:
    from kalloc import Kalloc

BACKTRACE_DEPTH = 16  # frames kept per site: deep enough for wrapper → libc → user chains
_IN = struct.Struct("<11I")  # result, aux, ra, fp, ctx, a0..a5
_OUT = struct.Struct("<II")
_PAIR = struct.Struct("<II")  # [fp-8], [fp-4]
_EINVAL = 22
_U32 = 0xFFFF_FFFF
_CTX_BITS = abi.CTX_DEPTH_MASK << abi.CTX_DEPTH_SHIFT | abi.CTX_MIE  # the bits a claim may set
MAX_SERVICES = DOORBELL_SIZE // 4  # one 32-bit doorbell per service number
MAX_CALLERS = 4096  # Callers kept by (site, context word); past it, all forgotten at once

_new_caller = partial(tuple.__new__, Caller)  # Caller((context, site, depth)) without NamedTuple's __new__
Handler = Callable[..., tuple[int, int]]
Intercept = Callable[[int, Caller, list[int]], tuple[int, int] | None]
Annotator = Callable[[KallocError, int, int, RamBank], None]  # (error, block.ra, block.fp, stack bank)


class BridgeMachine(Protocol):
    """What the bridge needs of the machine (a test double provides the same)."""

    phys: PhysMem

    def report(self, err: KallocError) -> None: ...

    def fatal(self, err: KallocError) -> None: ...


def service_name(number: int) -> str:
    """The ABI name of a service number, or '#<number>' for none."""
    svc = abi.SERVICE_BY_NUMBER.get(number)
    return svc.name if svc else f"#{number}"


class Bridge:
    """The doorbell's callback: decodes argument blocks and dispatches them (module docstring)."""

    def __init__(self, machine: BridgeMachine, ka: Kalloc) -> None:
        self.machine = machine
        self.ka = ka
        self.phys = machine.phys
        self._contexts: dict[int, tuple[Context, int]] = {}
        # the machine's truth about the caller's context; a test double may have none (claims only)
        self._irq: IrqState | None = getattr(machine, "irq_state", None)
        self._truth: Any = self._irq if self._irq is not None else _ClaimsOnly
        self._disagreements: set[tuple[int, int]] = set()
        self._stack_bank: RamBank = self.phys.banks[0]
        # An ISA whose stub passes no walkable frame pointer (Cortex-M: fp = 0) unwinds from the CPU,
        # whatever fp a hand-made block claims (Thumb's r7 heads no chain stack_above could walk)
        isa = getattr(machine, "isa", None)
        self._unwinds = isa is not None and not getattr(isa, "frame_chain", True)
        # its fast copy of the general walk, where the ISA has one (Cortex-M: isa/armv7m_unwind.py)
        self._walker: Any = call_site_walker(machine, isa) if self._unwinds else None
        self._stack_hi = self._stack_bank.base + self._stack_bank.size - abi.BLOCK_SIZE
        self._counts = [0] * MAX_SERVICES
        self._save = ka.depot.save  # bound once: the depot is the allocator's for its lifetime
        self._handles = ka.depot.handles  # a known stack's handle without the call (the hot path)
        self._chain = ChainMemo()  # stack_above, remembered (bridge/callsite.py)
        self._sites: dict[tuple[int, int], Site] = {}  # (ra, fp) -> its check and Caller (RV32)
        self._by_walk: dict[int, Site] = {}  # id(the walker's answer) -> (it, ra, ctx, Caller) (Cortex-M)
        self._callers: dict[int, Caller] = {}  # site << 32 | ctx word -> its Caller (immutable: shared)
        self._reports = ka.reports  # the allocator's queue (one list, cleared in place)
        self._buddy = ka.buddy
        self._pages_seen = ka.buddy.used_pages
        # Called after every call that changed the buddy allocator's used-page count (the
        # commit meter samples then: bridge/commit.py). One comparison for every other call.
        self.page_watchers: list[Callable[[], None]] = []
        self._table: list[Handler | None] = [None] * MAX_SERVICES
        self._plain: list[Handler | None] = [None] * MAX_SERVICES  # _table's handlers that read no caller
        # Called before every service with (service, caller, args); a (result, aux) answer
        # replaces the service (fault injection, bridge/faultinject.py). None: no hook.
        self.intercept: Intercept | None = None
        # Called with every error a call produced, before it is filed, with the call's (ra, fp,
        # bank): facts only the machine knows (a freed stack address's frame: stackguard.py).
        self.annotators: list[Annotator] = []

    # -- filling the table ------------------------------------------------------------------------

    def serve(self, family: str, handlers: Any) -> None:
        """Serve every service of `family` (abi.SERVICES) with handlers.svc_<name>."""
        for svc in abi.SERVICES:
            if svc.family == family:
                self._put(svc.number, getattr(handlers, "svc_" + svc.name.lower()))

    def register(self, name: str, handler: Handler) -> None:
        """Serve abi service `name` with handler(caller, *args) -> (result, aux)."""
        self._put(abi.SERVICE_BY_NAME[name].number, handler)

    def _put(self, number: int, handler: Handler) -> None:
        self._table[number] = handler
        self._plain[number] = None if reads_caller(handler) else handler

    def handler(self, name: str) -> Handler | None:
        """The handler serving abi service `name` now (to wrap it), or None."""
        return self._table[abi.SERVICE_BY_NAME[name].number]

    def call_counts(self) -> dict[str, int]:
        """Calls per service name, in ABI order (deterministic)."""
        return {s.name: self._counts[s.number] for s in abi.SERVICES if self._counts[s.number]}

    @property
    def context_disagreements(self) -> list[tuple[int, int]]:
        """The (claimed, true) context words reported so far, sorted (empty: every claim held)."""
        return sorted(self._disagreements)

    # -- the doorbell -----------------------------------------------------------------------------

    def __call__(self, service: int, block: int) -> None:
        """Run one hypercall. Called from the MMIO write callback: record, never stop."""
        bank = self._stack_bank  # blocks live on the stack: nearly always the same bank
        if not bank.base <= block <= self._stack_hi or block & 3:
            found = self._block_bank(service, block)
            if found is None:
                return
            bank = found
        buf, off = bank.buf, block - bank.base  # straight from the bank's buffer: no view objects
        _res, _aux, ra, fp, ctx, a0, a1, a2, a3, a4, a5 = _IN.unpack_from(buf, off)
        caller = None
        try:
            if ctx != self._truth.word:  # the claim is checked; the machine's truth wins
                ctx = self._judge(service, ctx, ra, fp, bank)
            plain = self._plain[service] if service < MAX_SERVICES else None
            if plain is not None and self.intercept is None:  # reads no caller: no walk (invariant 6)
                self._counts[service] += 1
                result, aux = plain(None, a0, a1, a2, a3, a4, a5)
            else:  # the Caller: RV32's remembered by (ra, fp) with the stack words its walk read
                kept = self._sites.get((ra, fp))  # (bank, unpack, at, words, ctx, Caller); Cortex-M: none
                if (kept is not None and kept[4] == ctx and kept[0] is bank
                        and kept[1](buf, kept[2]) == kept[3]):
                    caller = kept[5]
                else:
                    caller = self._site_caller(ctx, ra, fp, bank)
                handler = self._table[service] if service < MAX_SERVICES else None
                if handler is None:
                    self._no_service(service, caller)
                    result, aux = 0, _EINVAL
                else:
                    self._counts[service] += 1
                    if self.intercept is None:
                        result, aux = handler(caller, a0, a1, a2, a3, a4, a5)
                    else:
                        answer = self.intercept(service, caller, [a0, a1, a2, a3, a4, a5])
                        result, aux = handler(caller, a0, a1, a2, a3, a4, a5) if answer is None else answer
        except KallocError as err:
            caller = caller or self._late_caller(service, ctx, ra, fp, bank)
            for annotate in self.annotators:
                annotate(err, ra, fp, bank)
            self._misuse(err, service, caller)
            result, aux = 0, 0
        except BadAddress as exc:
            caller = caller or self._late_caller(service, ctx, ra, fp, bank)
            site = caller.site if caller is not None else None
            self.machine.report(BadArgumentError(f"{service_name(service)}: {exc}", site=site))
            result, aux = 0, 0
        except Exception as exc:  # kalloc's own bug: end the run with a report, not a traceback
            self._crash(exc, service, caller or self._late_caller(service, ctx, ra, fp, bank))
            return
        _OUT.pack_into(buf, off, result & _U32, aux & _U32)
        if self._reports:  # what the allocator found on its own (poison, context, ...)
            self._drain(ra, fp, bank)
        if self._buddy.used_pages != self._pages_seen:  # the call took or gave back pages
            self._pages_moved()

    # -- the cold paths -----------------------------------------------------------------------------

    def _late_caller(self, service: int, ctx: int, ra: int, fp: int, bank: RamBank) -> Caller | None:
        """A plain service's failed call's Caller (invariant 6), walked now (the guest is still stopped
        at the store: the stack is the call's). None: not plain (its walk failed), or the walk failed."""
        if service >= MAX_SERVICES or self._plain[service] is None or self.intercept is not None:
            return None
        try:
            return self._site_caller(ctx, ra, fp, bank)
        except Exception:  # the report goes on without a site, as when the eager walk fails
            return None

    def _pages_moved(self) -> None:
        self._pages_seen = self._buddy.used_pages
        for watcher in self.page_watchers:
            watcher()

    def _drain(self, ra: int, fp: int, bank: RamBank) -> None:
        """File the reports the allocator queued during the call (annotated first), in order."""
        reports = self._reports
        for report in reports:
            for annotate in self.annotators:
                annotate(report, ra, fp, bank)
            self.machine.report(report)
        reports.clear()

    def _site_caller(self, ctx: int, ra: int, fp: int, bank: RamBank) -> Caller:
        """The Caller of a call whose site is not remembered (RV32: then remembered, `_sites`)."""
        if self._unwinds:  # Cortex-M: the ISA's walker, its answer's Caller remembered by identity
            pcs = self._walker.walk(self._stack_bank) if self._walker is not None else None
            known = self._by_walk.get(id(pcs)) if pcs is not None else None
            if known is not None and known[0] is pcs and known[1] == ra and known[2] == ctx:
                return known[3]  # the walker's same (remembered) answer, the same ra and context
            stack = self._unwound(ra & ~1, pcs)  # ~1: Thumb
            handle = self._handles.get(stack) or self._save(stack)
            caller = self._callers.get(handle << 32 | ctx) or self._caller(ctx, handle)
            if pcs is not None:
                if len(self._by_walk) >= MEMO:
                    self._by_walk.clear()
                self._by_walk[id(pcs)] = Site((pcs, ra, ctx, caller))  # keeps pcs alive: its id stays its
            return caller
        walk = self._chain.kept(ra, fp, bank)
        stack = walk[4]
        handle = self._handles.get(stack) or self._save(stack)  # the site in the depot
        caller = self._callers.get(handle << 32 | ctx) or self._caller(ctx, handle)
        if len(self._sites) >= MEMO:  # (ra, fp) come from guest registers: bounded
            self._sites.clear()
        self._sites[(ra, fp)] = Site((walk[0], walk[1], walk[2], walk[3], ctx, caller))
        return caller

    def _unwound(self, ra: int, pcs: tuple[int, ...] | None) -> tuple[int, ...]:
        """The call stack above the stub from the CPU's own state (the ISA's unwinder, from the
        doorbell store in the wrapper; `pcs`: the fast walker's answer, None to walk the general
        way): [ra, its callers...]; (ra,) when ra is not on it."""
        if pcs is None:  # the general walk (an exception frame, another bank, no fast walker)
            m: Any = self.machine  # one batch read: pc with the rest (no second read for pc)
            regs = m.isa.read_regs(m.uc)
            pcs = m.backtrace(regs["pc"] & ~1, regs, BACKTRACE_DEPTH + 1)  # the wrapper's pc, then the site
        if ra in pcs:
            at = pcs.index(ra)
            return tuple(pcs[at : at + BACKTRACE_DEPTH])
        return (ra,)

    def _caller(self, ctx: int, site: int) -> Caller:
        """The Caller of a (true) context word and a site, kept for the next call with both."""
        context, depth = self._contexts.get(ctx) or self._decode(ctx)
        caller = _new_caller((context, site, depth))
        if len(self._callers) >= MAX_CALLERS:  # sites come from guest memory: bounded
            self._callers.clear()
        self._callers[site << 32 | ctx] = caller
        return caller

    def _decode(self, ctx: int) -> tuple[Context, int]:
        """(Context, depth) of a context word, kept for the next call with the same word."""
        depth = ctx >> abi.CTX_DEPTH_SHIFT
        if depth:
            context = (Context.IRQ, depth)
        elif not ctx & abi.CTX_MIE:
            context = (Context.IRQS_OFF, 0)
        else:
            context = (Context.TASK, 0)
        self._contexts[ctx] = context
        return context

    def _judge(self, service: int, claim: int, ra: int, fp: int, bank: RamBank) -> int:
        """The context word to judge a call by: the machine's, reading the mask if it must; a
        claim that disagrees is reported once per distinct (claim, truth) pair."""
        claim &= _CTX_BITS  # bits the ABI does not define were always ignored
        irq = self._irq
        if irq is None:
            return claim
        truth = irq.truth(claim)
        if truth != claim and (claim, truth) not in self._disagreements:
            self._disagreements.add((claim, truth))
            site = self.ka.depot.save(stack_above(ra, fp, bank))
            self.machine.report(context_disagreement(service_name(service), claim, truth, site))
        return truth

    def _block_bank(self, service: int, block: int) -> RamBank | None:
        """The RAM bank holding a block off the usual stack bank; None (and a fatal report) if none."""
        bank = self.phys.bank_of(block)
        if bank is not None and block + abi.BLOCK_SIZE <= bank.end:
            self._stack_bank, self._stack_hi = bank, bank.base + bank.size - abi.BLOCK_SIZE
        if block & 3 or bank is None or block + abi.BLOCK_SIZE > bank.end:
            self.machine.fatal(BadArgumentError(
                f"hypercall {service_name(service)} passed an argument block at {block:#x}, "
                "which is not 4-byte aligned RAM", addr=block, service=service,
            ))  # fmt: skip
            return None
        return bank

    def _no_service(self, service: int, caller: Caller) -> None:
        self.machine.report(BadArgumentError(
            f"hypercall number {service} does not exist (ABI v{abi.ABI_VERSION})",
            site=caller.site, service=service,
        ))  # fmt: skip

    def _misuse(self, err: KallocError, service: int, caller: Caller | None) -> None:
        """A service refused the firmware's request: report it (a __GFP_NOFAIL oom ends the run)."""
        if err.site is None and caller is not None:
            err.site = caller.site
        err.fields.setdefault("service", service_name(service))
        if err.kind == "oom" and err.severity == "error":
            self.machine.fatal(err)  # __GFP_NOFAIL that cannot be met ends the run
        else:
            self.machine.report(err)

    def _crash(self, exc: Exception, service: int, caller: Caller | None) -> None:
        name = service_name(service)
        self.machine.fatal(internal_error(exc, hypercall_phrase(service, name), service=(service, name),
                                          site=caller.site if caller is not None else None))  # fmt: skip


class _ClaimsOnly:
    """The truth of a bridge whose machine keeps none (a test double): never equal to a claim."""

    word = UNKNOWN


def _describe(word: int) -> tuple[str, dict[str, Any]]:
    depth, on = word >> abi.CTX_DEPTH_SHIFT, "on" if word & abi.CTX_MIE else "off"
    where = f"interrupt context at depth {depth}" if depth else "task context"
    return f"{where}, interrupts {on}", {"depth": depth, "interrupts": on}


def context_disagreement(name: str, claim: int, truth: int, site: int) -> BadArgumentError:
    """The bad-hypercall for a context word that is not the machine's (both named)."""
    said, claimed = _describe(claim)
    real, machine = _describe(truth)
    return BadArgumentError(
        f"hypercall {name}: the argument block claims {said} (ctx {claim:#x}), but the machine is in "
        f"{real}; the call is judged by the machine's state",
        site=site, service=name, ctx=claim, claimed=claimed, machine=machine,
    )  # fmt: skip


def stack_above(ra: int, fp: int, bank: RamBank) -> tuple[int, ...]:
    """The call stack above a hypercall stub: [ra, then saved ra of each frame up the fp chain].

    The stub's own frame is at `fp`: [fp-8] is its caller's frame pointer and each
    frame keeps its return address at [fp-4] (RISC-V GCC with frame pointers). The
    stack is in the block's bank; a frame pointer outside it ends the walk.
    """
    return chain(ra, fp, bank, [])  # the walk itself: bridge/callsite.py (the hot path remembers it)
