"""The machine's own truth about the caller's context: interrupt depth and the global mask.

Every allocation is judged by its caller's context (task, interrupt handler, interrupts
off). The argument block carries the firmware's claim of it (the `ctx` word: the SDK's
RAM variable `kalloc_irq_depth` and `mstatus.MIE`, bridge/abi.py), but guest memory is
the firmware's to scribble on. The machine knows better, so its truth wins and the
claim is only checked against it (bridge/doorbell.py reports a disagreement):

  depth  +1 each time the run loop delivers an interrupt (`entered`, runloop.py), -1
         each time the CPU executes a return from interrupt (`returned`). The return
         traps: Cortex-M's EXC_RETURN reaches the interrupt hook by itself; on RISC-V
         every `mret` of the ELF's code (`Firmware.return_pcs`) is overwritten with the
         ISA's `return_mark` at install, an encoding that traps as an illegal instruction
         like the idle mark of `wfi` (sled.py), and `Isa.exception_return` performs the
         return in the interrupt hook as the CPU would (isa/rv32.py, invariant 2). So no
         code hook is ever installed (one would cost every instruction of a counted
         slice, and adding or deleting one ~140k host instructions), a return costs one
         trap, and every return is seen, in task code too. Nested interrupts (a handler
         that sets MIE again) count up and down like any other; a handler that never
         returns stays counted: what runs after it is interrupt context, as far as the
         CPU knows. A return with no interrupt to return from (a stray `mret` in task
         code) leaves the depth at 0 and counts in `stray_returns`.
  mask   the global interrupt enable (mstatus.MIE) costs a register read (~1-2 µs), so
         the machine predicts it where it knows it for free (an entry clears it, saving
         the old value, 1; a return restores the saved value) and reads the CPU only
         when the claim disagrees with the prediction or the call would be judged
         "interrupts off" in task context (`truth`): a report of invalid-context never
         rests on a claim. A claim that says interrupts are on in task code, where the
         machine last saw them on, is believed (the one thing a lying block can still do:
         hide its own irqs-off bug; the SDK's claim is read from the CSR at each call).

`word` is the prediction in the ABI's encoding of `ctx` (depth << 8 | MIE), or UNKNOWN
when there is none or it would mean "task context, interrupts off": the bridge compares
it with the block's word in one test, and only a mismatch takes the slow path (`truth`).

Limits: code the ELF does not contain (copied or generated at run time) is not marked: its
`mret` runs as Unicorn's own and the depth does not see it. The firmware reading its own code
sees the mark where an `mret` was (reports disassemble it as `mret`).

Invariants:
 1. depth >= 0; it changes only at an entry the machine made or a return the CPU ran.
 2. word != UNKNOWN  =>  its depth is `depth`, and it is not "depth 0, MIE clear".
 3. No code hook: a return is seen in the interrupt hook, after the CPU (or the ISA for it)
    performed it; `returned` never stops the CPU nor reads a register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import unicorn

from kalloc_machine.bridge.abi import CTX_DEPTH_SHIFT, CTX_MIE

if TYPE_CHECKING:
    from kalloc_machine.devices import Clock
    from kalloc_machine.elf import Firmware
    from kalloc_machine.isa import Isa

UNKNOWN = -1  # `word` when the machine has no prediction the bridge may take unchecked


class ContextWatcher(Protocol):
    """Told of each context change the machine sees (IrqState.watchers)."""

    def before_switch(self) -> None: ...

    def after_switch(self) -> None: ...


class IrqState:
    """Interrupt depth and global mask as the machine saw them (module docstring)."""

    def __init__(self, isa: Isa, uc: unicorn.Uc, clock: Clock) -> None:
        self.isa, self.uc, self.clock = isa, uc, clock
        self.depth = 0
        self.word = UNKNOWN
        self.mie: bool | None = None  # the predicted global mask, None = unknown
        self.saved: bool | None = None  # the mask a return restores (MPIE), None = unknown
        self.entries = 0
        self.returns = 0
        self.stray_returns = 0  # returns seen with no interrupt to return from
        self.max_depth = 0
        self.reads = 0  # mask reads from the CPU
        self.return_pcs: list[int] = []  # the return instructions marked (RISC-V's mrets)
        # told before and after each context change (the fast path drains, then re-arms: fastpath.py)
        self.watchers: list[ContextWatcher] = []

    def install(self, firmware: Firmware) -> None:
        """Mark every return instruction of the ELF's code that lies in memory (module docstring)."""
        mark = self.isa.return_mark
        if not mark:
            return
        for pc in firmware.return_pcs:
            try:
                self.uc.mem_write(pc, mark)
            except unicorn.UcError:  # not loaded where it runs: left to Unicorn, unseen
                continue
            self.return_pcs.append(pc)

    # -- what the machine tells it -------------------------------------------------------------

    def entered(self) -> None:
        """The run loop took an interrupt (Isa.enter_interrupt, with the mask set): a boundary."""
        for w in self.watchers:
            w.before_switch()
        depth = self.depth = self.depth + 1
        self.entries += 1
        if depth > self.max_depth:
            self.max_depth = depth
        self.mie, self.saved = False, True
        self.word = depth << CTX_DEPTH_SHIFT
        for w in self.watchers:
            w.after_switch()

    def resync(self) -> None:
        """A run starts or resumes: forget the mask (the CPU context may have been restored)."""
        self.mie = self.saved = None
        self.word = UNKNOWN

    def truth(self, claim: int) -> int:
        """The context word of a call whose block claims `claim` (not equal to `word`): the
        prediction when only the depth differs, else the mask read from the CPU."""
        word = self.word
        if word != UNKNOWN and not (claim ^ word) & CTX_MIE:
            return word
        self.reads += 1
        mie = self.mie = self.isa.interrupts_enabled(self.uc)
        word = self.depth << CTX_DEPTH_SHIFT | (CTX_MIE if mie else 0)
        self.word = word if word else UNKNOWN  # "task, interrupts off" is never taken unchecked
        return word

    def returned(self, pc: int) -> None:
        """The CPU returned from an interrupt (to pc), seen by the interrupt hook: Isa.return_intno
        (Cortex-M's EXC_RETURN, RISC-V's marked mret, performed by Isa.exception_return)."""
        for w in self.watchers:
            w.before_switch()
        self.returns += 1
        if self.depth:
            self.depth -= 1
        else:
            self.stray_returns += 1
        mie = self.mie = self.saved
        self.saved = True
        word = self.depth << CTX_DEPTH_SHIFT | (CTX_MIE if mie else 0)
        self.word = word if mie is not None and word else UNKNOWN
        for w in self.watchers:
            w.after_switch()

    def as_dict(self) -> dict[str, int]:
        """What it counted (tests, debugging)."""
        return {"depth": self.depth, "entries": self.entries, "returns": self.returns,
                "stray_returns": self.stray_returns, "max_depth": self.max_depth}  # fmt: skip
