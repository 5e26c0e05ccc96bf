"""The machine's own truth about the caller's context: interrupt depth and the global mask.

Every allocation is judged by its caller's context (task, interrupt handler, interrupts
off). The argument block carries the firmware's claim of it (the `ctx` word: the SDK's
RAM variable `kalloc_irq_depth` and `mstatus.MIE`, bridge/abi.py), but guest memory is
the firmware's to scribble on. The machine knows better, so its truth wins and the
claim is only checked against it (bridge/doorbell.py reports a disagreement):

  depth  +1 each time the run loop delivers an interrupt (`entered`, runloop.py), -1
         each time the CPU executes a return from interrupt: a ranged code hook on every
         return instruction in the ELF's code (`Isa.scan_irq_code`: on RV32 every `mret`,
         the SDK's one is `__kalloc_mret`), which costs nothing elsewhere. A return with
         no interrupt to return from (a stray `mret`) leaves the depth at 0 and is
         counted in `stray_returns`. Nested interrupts (a handler that sets MIE again)
         count up and down like any other; a handler that never returns stays counted:
         everything it calls is interrupt context, as it is.
  mask   the global interrupt enable (mstatus.MIE), known without a register read while
         nothing changed it behind the machine's back: an entry clears it and saves the
         old value, which was 1 since the interrupt was taken (MPIE <- MIE, MIE <- 0); a
         return restores the saved value and sets the saved one (MIE <- MPIE, MPIE <- 1);
         a code hook on every instruction that may write it (csrw/csrs/csrc... mstatus)
         marks it unknown, and the next doorbell reads it from the CPU once (`resolve`,
         ~1-2 µs). `resync` forgets it when a run (re)starts: the harness restores CPU
         contexts between runs.
  breaks a break (Machine.request_break, the harness) on a return instruction stops the
         slice after this hook saw the return but before the CPU ran it: `not_run` takes
         it back. (A slice's count runs out before any hook of its next instruction.)

`word` is the truth in the ABI's encoding of `ctx` (depth << 8 | MIE), or UNKNOWN while
the mask is: the bridge compares it with the block's word in one test, and only a
mismatch takes the slow path.

Limits: code the ELF does not contain (copied or generated at run time) is not scanned:
a return or a mask write executed from there is not seen (the depth stays where it was,
the mask is read again at the next unknown).

Invariants:
 1. depth >= 0; it changes only at an entry the machine made or a return the CPU ran.
 2. word != UNKNOWN  =>  word == depth << 8 | (mstatus.MIE at this instant).
 3. The hooks never stop the CPU and read no register (`resolve` reads one, on demand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import unicorn

from kalloc_machine.bridge.abi import CTX_DEPTH_SHIFT, CTX_MIE

if TYPE_CHECKING:
    from kalloc_machine.elf import Firmware
    from kalloc_machine.isa import Isa

UNKNOWN = -1  # `word` while the global mask is not known without reading the CPU
PF_X = 1  # ELF segment flag: executable


class IrqState:
    """Interrupt depth and global mask as the machine saw them (module docstring)."""

    def __init__(self, isa: Isa, uc: unicorn.Uc) -> None:
        self.isa, self.uc = isa, uc
        self.depth = 0
        self.word = UNKNOWN
        self.mie: bool | None = None  # the global mask, None = unknown
        self.saved: bool | None = None  # the mask a return restores (MPIE), None = unknown
        self.entries = 0
        self.returns = 0
        self.stray_returns = 0  # returns with no interrupt to return from
        self.max_depth = 0
        self.return_pcs: list[int] = []
        self.mask_write_pcs: list[int] = []
        self._undo: tuple[int, int, int] | None = None  # (pc, depth, stray) before the last return

    def install(self, firmware: Firmware) -> None:
        """Hook every return from interrupt and every global-mask write of the ELF's code."""
        ranges = [(s.vaddr, s.data) for s in firmware.segments if s.flags & PF_X]
        self.return_pcs, self.mask_write_pcs = self.isa.scan_irq_code(ranges)
        uc = self.uc
        for pc in self.return_pcs:  # ranged hooks: free everywhere else
            uc.hook_add(unicorn.UC_HOOK_CODE, self._on_return, None, pc, pc)
        for pc in self.mask_write_pcs:
            uc.hook_add(unicorn.UC_HOOK_CODE, self._on_mask_write, None, pc, pc)

    # -- what the machine tells it -------------------------------------------------------------

    def entered(self) -> None:
        """The run loop took an interrupt (Isa.enter_interrupt, with the mask set)."""
        depth = self.depth = self.depth + 1
        self.entries += 1
        if depth > self.max_depth:
            self.max_depth = depth
        self.mie, self.saved = False, True
        self.word = depth << CTX_DEPTH_SHIFT
        self._undo = None

    def resync(self) -> None:
        """A run starts or resumes: forget the mask (the CPU context may have been restored)."""
        self.mie = self.saved = None
        self.word = UNKNOWN

    def not_run(self, pc: int) -> None:
        """A break stopped the CPU before the instruction at pc: if the last return hooked was
        that one, it did not happen."""
        undo = self._undo
        if undo is not None and undo[0] == pc:
            self.returns -= 1
            self.depth, self.stray_returns = undo[1], undo[2]
            self.resync()
        self._undo = None

    def resolve(self) -> int:
        """The truth word, reading the mask from the CPU when it is not known (a hook may call)."""
        if self.word == UNKNOWN:
            self.mie = mie = self.isa.interrupts_enabled(self.uc)
            self.word = self.depth << CTX_DEPTH_SHIFT | (CTX_MIE if mie else 0)
        return self.word

    # -- hooks (record only) -------------------------------------------------------------------

    def _on_return(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self._undo = (address, self.depth, self.stray_returns)
        self.returns += 1
        if self.depth:
            self.depth -= 1
        else:
            self.stray_returns += 1
        mie = self.mie = self.saved
        self.saved = True
        self.word = UNKNOWN if mie is None else self.depth << CTX_DEPTH_SHIFT | (CTX_MIE if mie else 0)

    def _on_mask_write(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self.mie = self.saved = None
        self.word = UNKNOWN

    def as_dict(self) -> dict[str, int]:
        """What it counted (tests, debugging)."""
        return {"depth": self.depth, "entries": self.entries, "returns": self.returns,
                "stray_returns": self.stray_returns, "max_depth": self.max_depth}  # fmt: skip
