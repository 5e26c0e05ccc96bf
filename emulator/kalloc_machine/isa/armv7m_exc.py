"""The Cortex-M exception model: entry and return as the ARMv7-M ARM's B1.5 says (isa/armv7m.py).

Unicorn's M-class takes no NVIC exception by itself and does not unstack. `enter` performs
the entry (B1.5.6 PushStack, B1.5.7 ExceptionTaken): the 8-word frame r0-r3, r12, lr,
ReturnAddress, xPSR on the active stack, 8-byte aligned with xPSR bit 9 recording the pad;
lr = EXC_RETURN; IPSR = the exception number; pc = the vector at VTOR + 4*number
(VTOR = FIRMWARE_LOAD). A `bx lr` (or pop) of EXC_RETURN in handler mode reaches
UC_HOOK_INTR as intno 8 (EXCP_EXCEPTION_EXIT) with PC = EXC_RETURN & ~1, and `unstack`
performs the return (B1.5.8).

Entry stacks on the process stack in thread mode with CONTROL.SPSEL set (EXC_RETURN
0xFFFFFFFD) and on the main stack otherwise (0xFFFFFFF9 from thread mode, 0xFFFFFFF1 from
a handler), then runs the handler on the main stack (SPSEL cleared). Simplified: no
tail-chaining and no late arrival: a return always unstacks, and the next exception is
taken at the next slice boundary (the frame is stacked again, as a tail-chained
exception's would not be; the handler sees the same state either way).

Return checks what the hardware checks and says why an illegal one faults (the caller
reports it as a cpu-fault at the EXC_RETURN: the hardware's INVPC/INVSTATE UsageFault): an
EXC_RETURN that is not F1/F9/FD (the FP variants E1/E9/ED: the SDK is soft-float, no FP
frame), a return to handler mode with no other exception active, a return to thread mode
with another still active (CCR.NONBASETHRDENA is 0), a stacked xPSR whose exception number
does not match the mode returned to or whose Thumb bit is clear, a frame outside memory.

Invariants:
 1. `enter` is only called at a slice boundary, never from a hook.
 2. Each reads and writes the registers in one ctypes call each (rawregs.py), in the order
    they must be written (SP and CONTROL before IPSR moves the core into handler mode).
 3. `scs.active` (the System Control Space's active exceptions) gains the number at each
    entry and loses it at each legal return; an illegal return changes nothing.
"""

from __future__ import annotations

import struct
from typing import Any

import unicorn
from unicorn import arm_const as ac

from kalloc_machine.isa.armv7m_scs import Scs
from kalloc_machine.memlayout import FIRMWARE_LOAD
from kalloc_machine.rawregs import read_batch, write_batch

VTOR = FIRMWARE_LOAD  # the vector table starts the image (firmware/arm/crt0.S)
VECTOR_TABLE = "kalloc_vector_table"  # its symbol (its size says how many vectors it has)
EXC_RETURN_HANDLER = 0xFFFF_FFF1
EXC_RETURN_THREAD = 0xFFFF_FFF9
EXC_RETURN_THREAD_PSP = 0xFFFF_FFFD
EXC_RETURNS = (EXC_RETURN_HANDLER, EXC_RETURN_THREAD, EXC_RETURN_THREAD_PSP)
CONTROL_SPSEL = 2
XPSR_ALIGN = 1 << 9  # stacked xPSR: the entry padded the frame by 4 bytes
XPSR_T = 1 << 24

_FRAME_REGS = (ac.UC_ARM_REG_R0, ac.UC_ARM_REG_R1, ac.UC_ARM_REG_R2, ac.UC_ARM_REG_R3,
               ac.UC_ARM_REG_R12, ac.UC_ARM_REG_LR)  # fmt: skip
_ENTRY_READ = (*_FRAME_REGS, ac.UC_ARM_REG_PC, ac.UC_ARM_REG_XPSR, ac.UC_ARM_REG_SP, ac.UC_ARM_REG_CONTROL)
_ENTRY_WRITE = (ac.UC_ARM_REG_SP, ac.UC_ARM_REG_LR, ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_PC)
_ENTRY_WRITE_PSP = (ac.UC_ARM_REG_SP, ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_LR, ac.UC_ARM_REG_IPSR,
                    ac.UC_ARM_REG_PC)  # fmt: skip
_RETURN_READ = (ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_MSP, ac.UC_ARM_REG_PSP)
_RETURN_TAIL = (ac.UC_ARM_REG_CONTROL, ac.UC_ARM_REG_XPSR, ac.UC_ARM_REG_IPSR, ac.UC_ARM_REG_PC)
_RETURN_WRITE_PSP = (*_FRAME_REGS, ac.UC_ARM_REG_PSP, *_RETURN_TAIL)
_RETURN_WRITE_MSP = (*_FRAME_REGS, ac.UC_ARM_REG_MSP, *_RETURN_TAIL)
BatchUc = Any


def enter(uc: BatchUc, scs: Scs, cause: int) -> int:
    """Exception entry (B1.5.6 PushStack, B1.5.7 ExceptionTaken): the frame on the active
    stack, the handler on the main stack. Returns the handler address (0: the entry failed
    and was reported)."""
    r0, r1, r2, r3, r12, lr, pc, xpsr, sp, control = read_batch(uc, _ENTRY_READ)
    handler_mode = bool(xpsr & 0x1FF)
    on_psp = not handler_mode and control & CONTROL_SPSEL
    pad = 4 if sp & 4 else 0
    frame = (sp - 32 - pad) & 0xFFFF_FFFF
    stacked_xpsr = (xpsr & ~XPSR_ALIGN) | XPSR_T | (XPSR_ALIGN if pad else 0)
    words = (r0, r1, r2, r3, r12, lr, pc & ~1, stacked_xpsr)
    vector_at = scs.vtor + 4 * cause
    if scs.vtor == scs.table[0] and cause >= scs.table[1]:
        scs.report(f"exception {cause} (IRQ {cause - 16}) pending and enabled, but the vector table at "
                   f"VTOR {scs.vtor:#x} ({VECTOR_TABLE}) has {scs.table[1]} entries: it has no handler")
        return 0
    try:
        uc.mem_write(frame, b"".join(w.to_bytes(4, "little") for w in words))
        handler = int.from_bytes(uc.mem_read(vector_at, 4), "little")
    except unicorn.UcError:
        scs.report(f"exception {cause} entry: the frame at {frame:#x} ({'process' if on_psp else 'main'} "
                   f"stack) or the vector at VTOR {scs.vtor:#x} + {4 * cause} is not memory (a stacking "
                   "or vector-table fetch error)")  # fmt: skip
        return 0
    if not handler & 1:
        scs.report(f"exception {cause} entry: its vector at {vector_at:#x} is {handler:#x}, without the "
                   "Thumb bit (an INVSTATE UsageFault on a Cortex-M)")  # fmt: skip
        return 0
    exc_return = EXC_RETURN_THREAD_PSP if on_psp else EXC_RETURN_THREAD
    exc_return = EXC_RETURN_HANDLER if handler_mode else exc_return
    # SP first: the active stack (PSP in thread mode with SPSEL); then the handler runs on MSP
    if on_psp:
        spsel_off = control & ~CONTROL_SPSEL
        write_batch(uc, _ENTRY_WRITE_PSP, (frame, spsel_off, exc_return, cause, handler | 1))
    else:
        write_batch(uc, _ENTRY_WRITE, (frame, exc_return, cause, handler | 1))
    scs.activate(cause)
    return handler & ~1


def unstack(uc: BatchUc, scs: Scs, exc_return: int) -> str | None:  # long: one check per rule of B1.5.8
    """Unstack for exc_return, or say why the hardware would fault instead."""
    if exc_return not in EXC_RETURNS:
        if exc_return in (0xFFFF_FFE1, 0xFFFF_FFE9, 0xFFFF_FFED):
            return "asks for a floating-point frame: this machine stacks none (the SDK is soft-float)"
        return "is not 0xfffffff1, 0xfffffff9 or 0xfffffffd (an INVPC UsageFault on a Cortex-M)"
    active = scs.active
    ipsr, control, msp, psp = read_batch(uc, _RETURN_READ)
    current = ipsr & 0x1FF
    if not active or active[-1] != current:
        return f"from exception {current}, which the machine did not take (active: {active or 'none'})"
    to_handler = exc_return == EXC_RETURN_HANDLER
    if to_handler and len(active) < 2:
        return "returns to handler mode, but no other exception is active (INVPC)"
    if not to_handler and len(active) > 1:
        return (f"returns to thread mode while exception {active[-2]} is still active (INVPC: "
                "CCR.NONBASETHRDENA is 0)")  # fmt: skip
    sp = psp if exc_return == EXC_RETURN_THREAD_PSP else msp
    try:
        raw = bytes(uc.mem_read(sp, 32))
    except unicorn.UcError:
        return f"unstacks from {sp:#x}, which is not memory (an unstacking error)"
    r0, r1, r2, r3, r12, lr, pc, xpsr = struct.unpack("<8I", raw)
    frame_exc = xpsr & 0x1FF
    back_to = active[-2] if to_handler else 0
    if frame_exc != back_to:
        where = f"exception {back_to}" if back_to else "thread mode"
        return (f"finds exception number {frame_exc} in the stacked xPSR at {sp + 28:#x}, but returns to "
                f"{where}: a spoofed or corrupted frame (INVPC)")  # fmt: skip
    if not xpsr & XPSR_T:
        return f"finds the Thumb bit clear in the stacked xPSR {xpsr:#010x} at {sp + 28:#x} (INVSTATE)"
    new_sp = (sp + 32 + (4 if xpsr & XPSR_ALIGN else 0)) & 0xFFFF_FFFF
    psp_back = exc_return == EXC_RETURN_THREAD_PSP  # the frame's stack pointer, then CONTROL.SPSEL
    control = control | CONTROL_SPSEL if psp_back else control & ~CONTROL_SPSEL
    values = (r0, r1, r2, r3, r12, lr, new_sp, control, xpsr & ~XPSR_ALIGN, frame_exc, pc | 1)
    write_batch(uc, _RETURN_WRITE_PSP if psp_back else _RETURN_WRITE_MSP, values)
    active.pop()
    return None
