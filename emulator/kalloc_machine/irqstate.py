"""The machine's own truth about the caller's context: interrupt depth and the global mask.

Every allocation is judged by its caller's context (task, interrupt handler, interrupts
off). The argument block carries the firmware's claim of it (the `ctx` word: the SDK's
RAM variable `kalloc_irq_depth` and `mstatus.MIE`, bridge/abi.py), but guest memory is
the firmware's to scribble on. The machine knows better, so its truth wins and the
claim is only checked against it (bridge/doorbell.py reports a disagreement):

  depth  +1 each time the run loop delivers an interrupt (`entered`, runloop.py), -1
         each time the CPU executes a return from interrupt: a ranged code hook on each
         return instruction of the ELF's code (`Isa.scan_returns`: every `mret`, the
         SDK's one is `__kalloc_mret`). An armed code hook costs every instruction of a
         counted slice ~15 host instructions (Unicorn's count hook walks the whole hook
         list on each one: +16% on plain code), arming and disarming ~140k (the
         binding's callback thunk), about BREAK_EVEN instructions armed. So the hooks are
         armed when a handler starts and disarmed at the first slice boundary with no
         handler running (`boundary`), unless interrupts come closer than BREAK_EVEN
         apart: then they stay armed until BREAK_EVEN passes with no new one. Nested
         interrupts (a handler that sets MIE again) count up and down like any other; a
         handler that never returns stays counted: what runs after it is interrupt
         context, as far as the CPU knows. A return with no interrupt to return from (a
         stray `mret` in task code) leaves the depth at 0 (unwatched far from a handler).
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

Limits: at most MAX_RETURN_HOOKS return instructions are watched (the SDK's first);
code the ELF does not contain (copied or generated at run time) is not scanned.

Invariants:
 1. depth >= 0; it changes only at an entry the machine made or a return the CPU ran.
 2. word != UNKNOWN  =>  its depth is `depth`, and it is not "depth 0, MIE clear".
 3. Return hooks are armed whenever depth > 0; armed and disarmed only at a slice boundary.
 4. Hooks never stop the CPU nor read a register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import unicorn

from kalloc_machine.bridge.abi import CTX_DEPTH_SHIFT, CTX_MIE

if TYPE_CHECKING:
    from kalloc_machine.devices import Clock
    from kalloc_machine.elf import Firmware
    from kalloc_machine.isa import Isa

UNKNOWN = -1  # `word` when the machine has no prediction the bridge may take unchecked
PF_X = 1  # ELF segment flag: executable
MAX_RETURN_HOOKS = 64  # return instructions watched (each armed hook slows handlers a little)
BREAK_EVEN = 9000  # instructions armed that cost what arming again costs (module docstring)
SDK_RETURN = "__kalloc_mret"


class _Hooks:
    """The Unicorn hook handles armed now: engine state, so a snapshot shares it (never copied)."""

    __slots__ = ("handles",)

    def __init__(self) -> None:
        self.handles: list[int] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hooks:
        return self


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
        self.return_pcs: list[int] = []
        self._hooks = _Hooks()
        self._undo: tuple[int, int, int] | None = None  # (pc, depth, stray) before the last return
        self._last_entry = -BREAK_EVEN  # machine time of the last interrupt entry
        self._keep = False  # interrupts come closely: keep the hooks armed between them

    def install(self, firmware: Firmware) -> None:
        """Find the return instructions of the ELF's code (hooked while a handler runs)."""
        found = self.isa.scan_returns([(s.vaddr, s.data) for s in firmware.segments if s.flags & PF_X])
        sdk = firmware.symbol_addr(SDK_RETURN)
        first = [sdk] if sdk in found else []
        self.return_pcs = (first + [pc for pc in found if pc != sdk])[:MAX_RETURN_HOOKS]

    @property
    def armed(self) -> bool:
        """True while the return hooks are in Unicorn (a handler runs, or ran this slice)."""
        return bool(self._hooks.handles)

    # -- what the machine tells it -------------------------------------------------------------

    def entered(self) -> None:
        """The run loop took an interrupt (Isa.enter_interrupt, with the mask set): a boundary."""
        depth = self.depth = self.depth + 1
        self.entries += 1
        if depth > self.max_depth:
            self.max_depth = depth
        self.mie, self.saved = False, True
        self.word = depth << CTX_DEPTH_SHIFT
        self._undo = None
        now = self.clock.now
        self._keep, self._last_entry = now - self._last_entry < BREAK_EVEN, now
        if not self._hooks.handles:
            self._arm()

    def boundary(self) -> None:
        """A slice boundary: disarm the return hooks when no handler runs (module docstring)."""
        idle = self._hooks.handles and not self.depth
        if idle and (not self._keep or self.clock.now - self._last_entry > BREAK_EVEN):
            self._disarm()

    def resync(self) -> None:
        """A run starts or resumes: forget the mask (the CPU context may have been restored)
        and arm or disarm the hooks for the depth (a snapshot may have restored it)."""
        self.mie = self.saved = None
        self.word = UNKNOWN
        if self.depth and not self._hooks.handles:
            self._arm()
        self.boundary()

    def not_run(self, pc: int) -> None:
        """A break stopped the CPU before the instruction at pc: if the last return hooked was
        that one, it did not happen."""
        undo = self._undo
        if undo is not None and undo[0] == pc:
            self.returns -= 1
            self.depth, self.stray_returns = undo[1], undo[2]
            self.resync()
        self._undo = None

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

    # -- the return hooks ------------------------------------------------------------------------

    def _arm(self) -> None:
        uc, on_return = self.uc, self._on_return
        self._hooks.handles = [
            uc.hook_add(unicorn.UC_HOOK_CODE, on_return, None, pc, pc) for pc in self.return_pcs
        ]

    def _disarm(self) -> None:
        for handle in self._hooks.handles:
            self.uc.hook_del(handle)
        self._hooks.handles = []

    def returned(self, pc: int) -> None:
        """The CPU returned from an interrupt at pc, seen by the interrupt hook (an ISA whose
        return the machine performs: Isa.return_intno, Cortex-M's EXC_RETURN)."""
        self._on_return(self.uc, pc, 0, None)

    def _on_return(self, uc: unicorn.Uc, address: int, size: int, _ud: Any) -> None:
        self._undo = (address, self.depth, self.stray_returns)
        self.returns += 1
        if self.depth:
            self.depth -= 1
        else:
            self.stray_returns += 1
        mie = self.mie = self.saved
        self.saved = True
        word = self.depth << CTX_DEPTH_SHIFT | (CTX_MIE if mie else 0)
        self.word = word if mie is not None and word else UNKNOWN

    def as_dict(self) -> dict[str, int]:
        """What it counted (tests, debugging)."""
        return {"depth": self.depth, "entries": self.entries, "returns": self.returns,
                "stray_returns": self.stray_returns, "max_depth": self.max_depth}  # fmt: skip
