"""Address translation for the emulated CPU, driven by kalloc's own page tables.

The firmware runs in machine mode, where the CPU's Sv32 MMU ignores `satp`, so the
machine translates instead: Unicorn's soft TLB is switched to `UC_TLB_VIRTUAL` and a
`UC_HOOK_TLB_FILL` hook answers every TLB miss (one per page, then QEMU caches it). A RAM
page the machine must see is handed to a `trap` (the stack guard's page:
bridge/stackguard.py), a fill hook ranged on that page alone; the main hook is ranged
around the trapped pages:

    [VMALLOC_START, VMALLOC_END)   kalloc.vmalloc's page tables (vmalloc, vmap, arena)
                                   mapped page  -> its physical page, read/write/execute
                                   anything else -> refused: a page fault
    a trapped page                 the trap's handler for a load or store (the access
                                   lands in the fault sink), identity --x for a fetch
    everywhere else                identity, with the permissions of what lives there:
                                   RAM rwx (rw- to a data access of a page the CPU
                                   never fetched from: `_exec_or_data`), devices and
                                   doorbells rw-, the idle sled --x,
                                   unmapped addresses (and the sled's fault_sink) none

Nothing is ever mapped lazily: the hook only reads the tables, never adds to them.

A refused fill (Unicorn 2.1.4, checked) would make `emu_start` raise `UC_ERR_EXCEPTION`
without calling any other hook, and so would an access the page's permissions forbid
(a jump into a device). So the hook refuses nothing: it builds the report there (the
registers are the faulting instruction's), ends the slice exactly through the idle
sled (`IdleSled.fault`: the run's instruction count stays exact) and points the page
at the sled's fault_sink, a page of its own, so the access completes harmlessly; the TLB is
flushed after that slice (`IdleSled.on_release`). The report of a page outside the
tables is a `page-fault` error with the address, the access, the
state of the page (guard page of an area, freed area, hole, above the arena's top),
the nearest area and its allocation (and free) site, the instruction, the registers
and the backtrace (mmureport.py). The run ends with reason "fault" (exit status 65).

Doorbell (RV32): no fill hook covers the hypercall doorbells' page; the engine fills it
itself (identity, the access's own permission: what the hook granted, without a Python
call). Unicorn 2.1.4's victim TLB never answers an MMIO entry (`victim_tlb_hit` compares
the entry's flagged address with the bare page), so the doorbell is filled again after
any page of its TLB index was used: a firmware whose hot data shares that index (the
churn workload's, page 0x8000_0000) took one Python fill per hypercall. A fetch there
(not executable: a jump into the doorbells) reaches a UC_HOOK_MEM_FETCH_PROT hook on the
page, which makes the fill hook's report and ends the slice the same way. On Cortex-M the
engine's fill of a store inside an IT block leaves the IT state restored, as the hook's
would (below): the doorbell's callbacks settle it (`Machine.doorbell_settle`), where the
state can be read in place (isa/armv7m_condexec.py: one word, no call); else the hook stays.

Every unmap of the windows flushes the whole TLB (`Vmalloc.on_unmap`): a stale entry
would let the CPU keep touching a page that went back to the buddy allocator. Unicorn
has no per-page flush in its API; unmaps are rare (vfree, arena trim).

Cost (docs/architecture.md, "Virtual memory"; docs/performance.md, "The always-on memory
hooks"): one Python call per TLB miss, ~2 µs (the callback is the ctypes one itself,
rawfill.py: no binding wrappers). QEMU's TLB is direct-mapped (256 entries): pages 1 MiB
apart evict each other (the TLSF workload's stack and heap: 17k fills in 100k iterations).
Unicorn's own fill was tried and is slower: it grants only the access's own permission, so
a page read and written refills on every alternation. Always on for `kalloc run`.

Invariants:
 1. A fill inside the windows returns a physical page only for a mapped PTE.
 2. After every unmap the CPU's TLB holds no entry of the windows.
 3. The hook never stops the emulator and never changes allocator state; a fault it sees
    ends the slice through the idle sled (`IdleSled.fault`, or the trap's own report
    through `Machine.fatal`), never by refusing the fill.
 4. No hook covers a RAM page except a trapped one, and a trapped page is never granted
    to a load or store (every data fill of it goes to its handler and lands in the sink).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import unicorn
from unicorn import UcError

from kalloc.errors import KallocError, PageFaultError
from kalloc_machine.memlayout import (
    DOORBELL_BASE,
    DOORBELL_SIZE,
    IDLE_SLED_SIZE,
    PAGE_SHIFT,
    VMALLOC_END,
    VMALLOC_START,
    gaps,
)
from kalloc_machine.mmureport import VERB, access_error, page_fault_error
from kalloc_machine.rawfill import RawFill
from kalloc_machine.rawmmio import escape
from kalloc_machine.sled import PAGE

if TYPE_CHECKING:
    from kalloc.vmalloc import Vmalloc
    from kalloc_machine.machine import Machine

PROT_RWX = unicorn.UC_PROT_ALL
PROT_RW = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE
PROT_X = unicorn.UC_PROT_EXEC
_FETCH = unicorn.UC_MEM_FETCH
_NEEDS = {unicorn.UC_MEM_READ: unicorn.UC_PROT_READ, unicorn.UC_MEM_WRITE: unicorn.UC_PROT_WRITE,
          unicorn.UC_MEM_FETCH: unicorn.UC_PROT_EXEC}  # fmt: skip
TrapHandler = Callable[[int, int], None]  # (page, UC_MEM_READ/WRITE) -> reports (Machine.fatal)


def _settling(fill: Callable[[Any, int, int, Any, Any], bool], settle: Callable[[], None]) -> Any:
    """`fill` (a TLB-fill callback), then for a load or store `settle` (Isa.hook_settler: the IT state
    the engine restored for an access inside an IT block, put back; it raises nothing). Not for a
    fetch: that fill comes while a block of code is translated, where the CPU's IT state is the
    block's real one (zeroing it made a failed `biclt` at an interrupted block's start run)."""

    def settled(handle: Any, vaddr: int, access: int, entry: Any, key: Any) -> bool:
        ok = fill(handle, vaddr, access, entry, key)
        if access != _FETCH:
            settle()
        return ok

    return settled


def _settles_in_place(machine: Machine) -> bool:
    """Does the ISA settle the IT state in place (isa/armv7m_condexec.py: a word read, no call)?"""
    it = getattr(machine.isa, "it", None)  # Cortex-M's ItBlocks
    return it is not None and it.cell(machine.uc) is not None


def flush_tlb(uc: unicorn.Uc) -> None:
    """Drop every entry of the CPU's soft TLB (the python bindings have no wrapper for it)."""
    uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)


class Mmu:
    """The TLB-fill hook of one Machine over one Vmalloc (module docstring).

    Attributes: fills (TLB misses answered), flushes, fault (vaddr, access verb, pc) of the
    last refused fill, or None, traps ([lo, hi) of each trapped range).
    """

    def __init__(self, machine: Machine, vm: Vmalloc) -> None:
        self.machine = machine
        self.vm = vm
        self.uc = machine.uc
        self.fills = 0
        self.flushes = 0
        self.fault: tuple[int, str, int] | None = None
        self._pte = vm.pte
        self._identity = self._identity_map(machine)
        # A device of the CPU's own inside the windows (Cortex-M: the System Control Space at
        # 0xE000_E000, in the arena window) is identity-mapped: the window has a hole there.
        inside = [(d.base, d.base + d.size) for d in machine.devices if VMALLOC_START <= d.base < VMALLOC_END]
        self.hole = inside[0] if inside else (0, 0)
        self._bank_of = machine.phys.bank_of
        self._granted: dict[int, int] = {}  # (page << 2 | access & 3) -> perms, identity pages only
        self.code_pages: set[int] = set()  # physical pages the CPU has fetched from (data fills keep x)
        self.sink = machine.sled.fault_sink  # the sled's window's last page (sled.py)
        self.uc.mem_map(self.sink, PAGE, PROT_RWX)  # where a faulting access lands (module docstring)
        machine.sled.on_release.append(self._flush_after_fault)
        machine.sled.translated = True  # faults are seen here, not in the memory hook
        self.uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)  # type: ignore[attr-defined]  # in 2.1.4, not in mypy's view
        self.traps: list[tuple[int, int]] = []
        self._hooks: list[int] = []
        # Cortex-M: a fill inside a Thumb IT block leaves the engine's IT state restored: settled after
        # each (isa/armv7m_it.py, 2); RV32 installs the fill functions themselves
        self._settle = settle = machine.isa.hook_settler(self.uc)
        self._fill_cb = self._fill if settle is None else _settling(self._fill, settle)
        raw_cb = self._raw_fill if settle is None else _settling(self._raw_fill, settle)
        self.raw = RawFill.create(self.uc, raw_cb)  # None: the binding's hook_add (rawfill.py)
        # the doorbells' fills are left to the engine (no hook there: module docstring, "Doorbell")
        in_place = settle is None or _settles_in_place(machine)
        self.engine_fills = [(DOORBELL_BASE, DOORBELL_BASE + DOORBELL_SIZE)] if in_place else []
        if settle is not None and in_place:
            machine.doorbell_settle = settle  # Cortex-M: the doorbell's callbacks settle instead
        self._hook_around_traps()
        for lo, hi in self.engine_fills:  # a fetch there: the fill hook's report (docstring, "Doorbell")
            self.uc.hook_add(unicorn.UC_HOOK_MEM_FETCH_PROT, self._engine_fetch, None, lo, hi - 1)
        vm.on_unmap.append(self._on_unmap)

    def _hook_around_traps(self) -> None:
        """(Re)install the main fill hook, one ranged hook per gap between the trapped ranges."""
        raw = self.raw
        for h in self._hooks:
            raw.remove(h) if raw is not None and h in raw.handles else self.uc.hook_del(h)
        self._hooks = [
            raw.add(lo, hi)
            if raw is not None
            else self.uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self._fill_cb, None, lo, hi)
            for lo, hi in gaps(self.traps + self.engine_fills, 1 << 32)
        ]

    def trap(self, lo: int, hi: int, handler: TrapHandler) -> bool:
        """Hand every load and store fill of the RAM pages [lo, hi) to `handler(page, access)`,
        which reports it; the access lands in the fault sink (invariant 4) and the TLB is
        flushed after the slice. A fetch there is identity, execute-only. False (nothing
        installed) when [lo, hi) is not whole pages of one RAM bank, or overlaps a trap: the
        caller keeps its memory hook."""
        bank = self._bank_of(lo)
        if lo % PAGE or hi % PAGE or hi <= lo or bank is None or hi > bank.end:
            return False
        if any(lo < t_hi and t_lo < hi for t_lo, t_hi in self.traps):
            return False
        sled = self.machine.sled

        def fill(uc: unicorn.Uc, vaddr: int, access: int, entry: Any, _ud: Any) -> bool:
            self.fills += 1
            if access == unicorn.UC_MEM_FETCH:
                entry.paddr, entry.perms = vaddr, PROT_X
                return True
            handler(vaddr, access)
            sled.flush_on_release()  # the page now points at the sink (a fatal report: no sled.fault)
            return self._sink(vaddr, entry, None)

        settle = self._settle
        hook = fill if settle is None else _settling(fill, settle)
        self.uc.hook_add(unicorn.UC_HOOK_TLB_FILL, hook, None, lo, hi - 1)
        self.traps.append((lo, hi))
        self._hook_around_traps()
        flush_tlb(self.uc)  # no entry of the pages may predate the trap
        return True

    @staticmethod
    def _identity_map(machine: Machine) -> list[tuple[int, int, int]]:
        """[(start, end, perms)] of everything outside the windows that is not plain RWX."""
        spans = [(d.base, d.base + d.size, PROT_RW) for d in machine.devices]
        spans.append((DOORBELL_BASE, DOORBELL_BASE + DOORBELL_SIZE, PROT_RW))
        sink = machine.sled.fault_sink
        spans.append((sink, sink + PAGE, 0))  # firmware never reaches the sink (first match)
        sled = machine.isa.sled_base  # memlayout.IDLE_SLED_BASE, or the ISA's own (Cortex-M)
        spans.append((sled, sled + IDLE_SLED_SIZE, PROT_X))
        return spans

    # -- the hook (runs inside emu_start: record only) ------------------------------------------

    def _raw_fill(self, _handle: int, vaddr: int, access: int, entry: int, _key: int) -> bool:
        """The ctypes callback itself (rawfill.py): `_fill` on the entry at address `entry`; no
        exception leaves it but by `escape` (the binding's guard does the same)."""
        try:
            raw: RawFill = self.raw  # type: ignore[assignment]  # this callback exists only with it
            e = raw.entries.get(entry) or raw.entry(entry)
            perms = self._granted.get((vaddr >> PAGE_SHIFT) << 2 | (access & 3))
            if perms is not None:  # `_fill`'s first case, inline (the refills after a flush)
                self.fills += 1
                e.paddr, e.perms = vaddr, perms
                return True
            return self._fill(self.uc, vaddr, access, e, None)
        except BaseException as exc:
            escape(self.uc, exc)
            return False

    def _engine_fetch(self, _uc: Any, _access: int, addr: int, _size: int, _value: int, _ud: Any) -> bool:
        """A fetch from a span the engine fills (the doorbells, rw-): the fill hook's fetch report, the
        slice ended through the sled as `_sink` ends it (declined: the engine raises, as a refused fill)."""
        return self.machine.sled.fault(self._access_error(addr & ~(PAGE - 1), unicorn.UC_MEM_FETCH))

    def _fill(self, uc: unicorn.Uc, vaddr: int, access: int, entry: Any, _ud: Any) -> bool:
        self.fills += 1
        key = (vaddr >> PAGE_SHIFT) << 2 | (access & 3)
        perms = self._granted.get(key)  # an identity page this access was granted before
        if perms is not None:  # (hot: the doorbell page, evicted from QEMU's TLB between hypercalls)
            entry.paddr = vaddr
            entry.perms = perms
            return True
        if VMALLOC_START <= vaddr < VMALLOC_END and not self.hole[0] <= vaddr < self.hole[1]:
            pfn = self._pte.get(vaddr >> PAGE_SHIFT)
            if pfn is None:
                self.fault = (vaddr, VERB.get(access, "access"), self.machine.isa.pc(uc))
                return self._sink(vaddr, entry, self.page_fault(None))
            entry.paddr = (pfn << PAGE_SHIFT) | (vaddr & 0xFFF)
            entry.perms = self._exec_or_data(pfn, access, PROT_RWX)
            return True
        entry.paddr = vaddr
        perms = PROT_RWX if self._bank_of(vaddr) is not None else 0  # nothing there: no access
        for lo, hi, p in self._identity:
            if lo <= vaddr < hi:
                perms = p
                break
        if not perms & _NEEDS.get(access, 0):
            if access != unicorn.UC_MEM_FETCH or self._fetching(vaddr):
                return self._sink(vaddr, entry, self._access_error(vaddr, access))
            perms = perms or PROT_RWX  # a probe, not the CPU's fetch (below): as before, identity
        else:
            perms = self._exec_or_data(vaddr >> PAGE_SHIFT, access, perms)
            self._granted[key] = perms  # the same answer until the page is fetched from (_exec_or_data)
        entry.perms = perms
        return True

    def _exec_or_data(self, pfn: int, access: int, perms: int) -> int:
        """The permissions a fill grants a page that may hold code: a data fill of a page the CPU
        never fetched from gets rw-, a fetch rwx (and marks the page). Unicorn 2.1.4 sends every
        store through an entry that can execute down its slow path (cputlb.c, notdirty_write: the
        check for self-modifying code), never marking it dirty; without x only the first store
        does: ~10x cheaper (docs/performance.md, "Stores and the TLB"). A page once fetched from
        is rwx to data fills too (its stores check translated code, as before): its rw- grants
        are forgotten and the TLB flushed after the slice that first fetched from it."""
        if perms != PROT_RWX:
            return perms
        if access == unicorn.UC_MEM_FETCH:
            if pfn not in self.code_pages:
                self.code_pages.add(pfn)
                for data in (unicorn.UC_MEM_READ, unicorn.UC_MEM_WRITE):
                    self._granted.pop(pfn << 2 | (data & 3), None)
                self.machine.sled.flush_on_release()
            return PROT_RWX
        return PROT_RWX if pfn in self.code_pages else PROT_RW

    def _fetching(self, page: int) -> bool:
        """A fetch fill is the CPU's own when the page holds the PC (or the rest of an instruction
        that starts on the page before). Unicorn also fills the page of `emu_start`'s `until`
        address (runloop.UNTIL) for a fetch while the CPU runs elsewhere: not a fault."""
        pc = self.machine.isa.pc(self.uc)
        return page >> PAGE_SHIFT in (pc >> PAGE_SHIFT, (pc + 2) >> PAGE_SHIFT)

    def _sink(self, vaddr: int, entry: Any, err: KallocError | None) -> bool:
        """End the slice with `err`, exactly, and let the access land in the sink (module docstring)."""
        if err is not None and not self.machine.sled.fault(err):
            return False  # declined (sled.fault: e.g. an IT block): the refused fill makes emu_start raise
        entry.paddr = self.sink | (vaddr & (PAGE - 1))
        entry.perms = PROT_RWX
        return True

    def _access_error(self, page: int, access: int) -> KallocError:
        return access_error(self.machine, page, access)

    def _flush_after_fault(self) -> None:
        flush_tlb(self.uc)  # the sink's entries must not outlive the faulting slice

    def _on_unmap(self, vaddr: int, npages: int) -> None:
        flush_tlb(self.uc)
        self.flushes += 1

    def page_fault(self, exc: UcError | None) -> PageFaultError | None:
        """The page-fault error of the last refused fill (from the fill hook, or for a slice that
        ended in `exc`), or None when no fill was refused (mmureport.py)."""
        if self.fault is None:
            return None
        vaddr, verb, pc = self.fault
        self.fault = None
        return page_fault_error(self.machine, self.vm, vaddr, verb, pc)

    def map_identity(self, lo: int, hi: int, perms: int) -> None:
        """One more machine window outside the banks, identity-mapped with `perms` (issue 14:
        the fast path's window, kalloc_machine/fastpath.py). Before the run: nothing was refused there."""
        self._identity.append((lo, hi, perms))

    def grant(self, vaddr: int, access: int) -> int:
        """What a fill of `vaddr` for `access` grants: a real fill (counted; a fetch marks the page)."""
        self._fill(self.uc, vaddr, access, entry := SimpleNamespace(paddr=0, perms=0), None)
        return int(entry.perms)

    def stats(self) -> dict[str, int]:
        """Deterministic counters for the JSON report. `self.fills` is left out: Unicorn's
        TLB misses depend on host-side caching (where slices stop and restart), and the
        same seed must give the same bytes."""
        return {"tlb_flushes": self.flushes}


def install(machine: Machine, vm: Vmalloc) -> Mmu:
    """Turn translation on for `machine` over `vm`'s tables; page faults become reports."""
    mmu = Mmu(machine, vm)
    machine.on_uc_error = mmu.page_fault
    return mmu
