"""RV32's interrupt entry without the TLB flush a register write of mstatus.MPP costs.

QEMU's `write_mstatus` (Unicorn 2.1.4, target/riscv/csr.c), which every register write of
mstatus goes through, flushes the CPU's whole soft TLB when the write changes MPP (or MPRV,
MXR, SUM): at every entry, MPP goes U -> M (the last `mret` left U). The flush and the
refills after it cost a timer tick about a tenth of a 100k-instruction period, wall clock.
QEMU's own trap entry (`riscv_cpu_do_interrupt`) stores mstatus without one: the TLB is
indexed by the privilege (mmu_idx), and MPP takes part in translation only under MPRV. The
machine cannot make QEMU take the interrupt itself (software cannot set mip.MTIP; a trap is
the interrupt hook's), so it stores the entry's CSRs the way QEMU's entry does: into the CPU
state directly. `uc_context_save` copies the CPU state (CPURISCVState, up to rdtime_fn) into
a context; `TrapImage.enter` writes mepc, mcause, mstatus and pc there and
`uc_context_restore` copies it back; all else is the CPU's own state of the same instant.

The fields' offsets in the copy are found once per engine (`locate`): two rounds of distinct
values written through the registers, each value found at exactly one offset, the same in
both rounds (the registers are then written back). Anything else: None, and the entry writes
registers as before (isa/rv32.py). Under MPRV the caller keeps the register write: there the
flush is the architecture's.

Invariants:
 1. `enter` changes only mepc, mcause, mstatus and pc, with the values a register write stores
    (the entry's mstatus only moves MIE, MPIE and MPP, all writable: write_mstatus stores it
    as given, and SD is unchanged).
 2. Offsets come from `locate` alone; a TrapImage exists only when all five were found.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from unicorn import riscv_const as rc

from kalloc_machine.rawregs import engine_handle

try:  # the binding's library handle (Unicorn 2.1.4's Python binding)
    from unicorn.unicorn_py3.unicorn import uclib
except ImportError:  # pragma: no cover - another binding layout
    uclib = None  # type: ignore[assignment]

_FIELDS = (rc.UC_RISCV_REG_PC, rc.UC_RISCV_REG_MSTATUS, rc.UC_RISCV_REG_MTVEC, rc.UC_RISCV_REG_MEPC,
           rc.UC_RISCV_REG_MCAUSE)  # fmt: skip
# Two rounds of probe values (pc, mtvec, mepc, mcause: aligned, direct-mode mtvec) and mstatus bits
# to flip (MPIE, SPIE, TW; then SIE, SPIE, TSR): each round's values are distinct from each other.
_PROBES = ((0x3A5C_7E10, 0x2B4D_6F00, 0x1C3E_5A70, 0x0D2F_4B63),
           (0x1E2D_3C48, 0x3F4E_5D00, 0x2A6B_7C94, 0x0B1C_2D3E))  # fmt: skip
_FLIPS = ((1 << 7) | (1 << 5) | (1 << 21), (1 << 1) | (1 << 5) | (1 << 22))
_U32 = struct.Struct("<I")
_MPRV = 1 << 17


class TrapImage:
    """A context of one engine and the offsets of the entry's CSRs in it (module docstring)."""

    def __init__(self, uc: Any, context: Any, offsets: tuple[int, ...]) -> None:
        self.uc, self._context = uc, context  # the binding's UcContext: it frees the block
        self._handle, self._ctx = engine_handle(uc), context.context
        self._view = _view(context)
        self._pc, self._mstatus, self._mtvec, self._mepc, self._mcause = offsets

    def __deepcopy__(self, memo: dict[int, Any]) -> TrapImage:
        return self  # scratch space of the engine's, like the engine (snapshot.py)

    @classmethod
    def locate(cls, uc: Any) -> TrapImage | None:
        """Find the offsets (module docstring); the registers end as they were. None: not found."""
        if uclib is None or engine_handle(uc) is None:
            return None
        saved = list(uc.reg_read_batch(_FIELDS))
        context, found = uc.context_save(), None
        try:
            for (pc, mtvec, mepc, mcause), flip in zip(_PROBES, _FLIPS, strict=True):
                probe = (pc, saved[1] ^ flip, mtvec, mepc, mcause)
                uc.reg_write_batch(list(zip(_FIELDS, probe, strict=True)))
                values = uc.reg_read_batch(_FIELDS)  # as stored (write_mstatus keeps its writable bits)
                uc.context_update(context)
                data = bytes(_view(context))
                offsets = [_only(data, v) for v in values]
                at = tuple(o for o in offsets if o is not None)
                if len(set(values)) != 5 or len(at) != 5 or found not in (None, at):
                    return None
                found = at
        finally:
            uc.reg_write_batch(list(zip(_FIELDS, saved, strict=True)))
        return cls(uc, context, found) if found is not None and len(set(found)) == 5 else None

    def enter(self, cause: int) -> int | None:
        """Take the interrupt `cause` now (the entry of isa/rv32.py, stored as QEMU's entry does);
        the handler's address. None, nothing done: mstatus.MPRV is set (module docstring)."""
        handle, ctx, view = self._handle, self._ctx, self._view
        uclib.uc_context_save(handle, ctx)
        mstatus = _U32.unpack_from(view, self._mstatus)[0]
        if mstatus & _MPRV:
            return None
        pc = _U32.unpack_from(view, self._pc)[0]
        mtvec = _U32.unpack_from(view, self._mtvec)[0]
        mpie = 1 << 7 if mstatus & (1 << 3) else 0
        mstatus = (mstatus & ~((1 << 3) | (1 << 7))) | mpie | (3 << 11)
        base = mtvec & ~3
        target: int = base + 4 * (cause & 0x3FF) if mtvec & 3 == 1 else base
        _U32.pack_into(view, self._mepc, pc)
        _U32.pack_into(view, self._mcause, cause)
        _U32.pack_into(view, self._mstatus, mstatus)
        _U32.pack_into(view, self._pc, target)
        uclib.uc_context_restore(handle, ctx)
        return target


def _view(context: Any) -> Any:
    """The context's whole block (header, CPU state, jmp_env), writable in place."""
    return (ctypes.c_char * context.size).from_address(ctypes.cast(context.context, ctypes.c_void_p).value)


def _only(data: bytes, value: int) -> int | None:
    """The one 4-aligned offset holding `value` (little-endian), or None (none, or several)."""
    needle = _U32.pack(value & 0xFFFF_FFFF)
    at = [i for i in range(0, len(data) - 3, 4) if data[i : i + 4] == needle]
    return at[0] if len(at) == 1 else None
