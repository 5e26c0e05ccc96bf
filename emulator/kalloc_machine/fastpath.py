"""The fast path in firmware (issue 14, part 3): kalloc.percpu's magazines served by a blob
of RV32 code in a window of the machine, replayed by Python from a ring.

Under `--fastpath on` (and only then) `install(session)` maps the window, writes its layout
and patches the allocation wrappers into the blob (kalloc_machine/fastwindow.py: the layout,
the contract with firmware/fastpath/fastpath.S, the patches and trampolines); this module
holds what happens during the run: the drains, the replay, the write-back, the failure.

The ring is drained (`drain`: each record replayed with the magazine layer's own hit
functions, validated against the mirror) before every hypercall, at every slice boundary
where the PC is outside the window, before an interrupt entry and at every emulated
return (the machine's context changes only there), before the machine files an error,
and at the end. After the slow path changed a magazine, `sync` writes it back. A record
the mirror contradicts (the firmware scribbled the window) is one `bad-hypercall` report,
then the wrappers are unpatched and the run goes on on the slow path.

Invariants:
 1. Off, nothing here runs: no window, no patch (install is never called).
 2. After a drain and a sync, the window's magazines equal kalloc.percpu's lists.
 3. The run loop delivers no interrupt while the PC is in the window (RunLoop.defer).
"""

from __future__ import annotations

import struct
from typing import Any

from kalloc import gfp as G
from kalloc import percpu
from kalloc.config import Caller, Context
from kalloc.errors import BadArgumentError
from kalloc.kinds import KIND_KMALLOC, KIND_MALLOC
from kalloc.percpu import SERVED_MAX, Magazines
from kalloc.slab import Slab
from kalloc_machine.fastreplay import replay_inline, valid_w0
from kalloc_machine.fastwindow import (
    BAD_GFP,
    H_ALLOWED,
    H_CAP,
    H_HEAD,
    MAGS,
    MAX_LIMIT,
    RECORD,
    RING,
    RING_CAP,
    WINDOW,
    WORD,
    map_ranges,
    map_window,
    patch_wrappers,
    unpatch_wrappers,
    write_layout,
)

# a record (fastpath.S): w0 (its frame count n in the top byte), object, gfp, (unused), then n return
# addresses (two unpacks: measured cheaper than one unpack of all and a slice, no per-field subscripts)
_HEAD3 = struct.Struct("<3I").unpack_from
_FRAMES = [struct.Struct(f"<{n}I").unpack_from for n in range(17)]  # by n, 1..16
_TASK = Context.TASK
_GFP_MALLOC = G.GFP_KERNEL
assert (KIND_KMALLOC, KIND_MALLOC) == (0, 1)  # a record's api bit is the kind


def _nth(off: int) -> int:
    """The index of the ring record at window offset `off` (for messages)."""
    return (off - RING) // RECORD


def why_off(options: Any, session: Any) -> str | None:
    """Why this run cannot have the fast path (None: it can), in the words the docs use."""
    if options.sanitize != "off":
        return f"--sanitize {options.sanitize} checks object bytes at every call"
    if options.heap != "kmalloc":
        return f"--heap {options.heap}"
    if options.fail_nth or options.fail_prob or session.faults is not None:
        return "fault injection decides per allocation"
    if options.irq_every or options.irq_at:
        return "injected interrupts land by instruction count"
    if session.bridge.intercept is not None:
        return "the run intercepts every call"
    if not session.machine.isa.name.startswith("rv32"):
        return "Cortex-M has no fast path"
    if session.ka.magazines is None:
        return "no per-CPU magazines"
    if session.ka.magazines.limit > MAX_LIMIT:
        return f"--percpu-cache above {MAX_LIMIT}"
    return None


class FastPath:
    """The window, the patches and the replay of one run (module docstring)."""

    def __init__(self, session: Any, mags: Magazines, buf: memoryview, banks: list[Any]) -> None:
        m = self.machine = session.machine
        self.session, self.mags, self.buf = session, mags, buf
        self.sites: dict[bytes, int] = {}  # a record's frames, raw -> depot handle (fastreplay.intern)
        self.valid_w0 = valid_w0(mags)
        self.bridge = session.bridge
        self.serve = session.bridge.__call__  # a bound method: no slot_tp_call per hypercall
        self.irq_state = m.irq_state  # (not `irq`: the run loop reads a device's `irq` line)
        self.depot = session.ka.depot
        self.records = session.ka.live.records
        self.page_owner = session.ka.live.page_owner
        self.ranges = map_ranges(banks)
        self.patched: dict[int, bytes] = {}
        self.served = self.drains = self.syncs = 0
        self.corrupt: str | None = None
        self.off_reason: str | None = None
        self._draining = False
        self._callers: dict[int, Caller] = {}

    # -- building ------------------------------------------------------------------------------

    def layout(self, stack: Any) -> None:
        """Write the header, class table, magazines (empty) and the blob (fastwindow.write_layout)."""
        self.mag_at, self.header = write_layout(self.buf, self.mags, self.ranges, stack)
        self.set_allowed()

    def patch(self, firmware: Any) -> str | None:
        """Patch the wrappers the ELF links (all of them or none); why not, or None when patched."""
        return patch_wrappers(self.machine.uc, self.buf, firmware, self.patched)

    def unpatch(self) -> None:
        """The wrappers' own bytes back (fastwindow.unpatch_wrappers: a task stopped inside a patch
        is sent back to the wrapper's entry); slow from here on."""
        unpatch_wrappers(self.machine.uc, self.buf, self.patched)

    # -- the machine's events ------------------------------------------------------------------

    def set_allowed(self) -> None:
        WORD.pack_into(self.buf, H_ALLOWED, int(bool(self.patched) and self.irq_state.depth == 0))

    def doorbell(self, service: int, block: int) -> None:
        """The hypercall: drain, serve it, write back what the slow path changed."""
        if WORD.unpack_from(self.buf, H_HEAD)[0]:
            self.drain()
        self.serve(service, block)
        if self.mags.dirty:
            self.sync()

    def in_window(self) -> bool:
        """RunLoop.defer: the PC is in the blob (no interrupt now, no drain)."""
        return WINDOW <= self.machine.isa.pc(self.machine.uc) < WINDOW + RING

    def service(self, now: int) -> None:
        """A slice boundary (the run loop's timed devices): drain when the PC is outside."""
        if WORD.unpack_from(self.buf, H_HEAD)[0] and not self.in_window():
            self.drain()

    def before_switch(self) -> None:
        """IrqState.watchers: an interrupt is taken or returns. A return's drain runs before the
        depth falls: a handler's records (a scribbled allowed word) fail the depth check."""
        self.drain()

    def after_switch(self) -> None:
        self.set_allowed()

    # -- replay --------------------------------------------------------------------------------

    def drain(self) -> None:
        """Replay the ring (fastreplay.py inline; from a record it does not take, `replay`)."""
        if self._draining:
            return
        buf = self.buf
        head = WORD.unpack_from(buf, H_HEAD)[0]
        if not head:
            return
        self._draining = True
        try:
            self.drains += 1
            if head > RING_CAP:
                return self.fail(f"its ring holds {head} records (capacity {RING_CAP})")
            if self.irq_state.depth:
                return self.fail(f"records made at interrupt depth {self.irq_state.depth}")
            if buf[H_CAP:MAGS] != self.header:
                return self.fail("its header, class table or magazine addresses changed")
            done = self.inline(head, 0)
            if done < head and not self.replay(head, done):
                return None
            self.served += head
            WORD.pack_into(buf, H_HEAD, 0)
            self.check_counts()
        finally:
            self._draining = False
        return None

    def inline(self, head: int, start: int) -> int:
        """fastreplay.replay_inline: records start.. replayed inline; the first one it left."""
        return replay_inline(self, head, start, RING, RECORD, _GFP_MALLOC, BAD_GFP)

    def replay(self, head: int, start: int = 0) -> bool:  # long: the replay loop (the exact path)
        """Replay records start.. through the magazine layer's hit functions (the reference the
        inline replay keeps to); a contradiction fails the fast path (`fail`: one report)."""
        buf = self.buf
        mags, records, page_owner = self.mags, self.records, self.page_owner
        lists, limit, class_of, caches = mags.mags, mags.limit, mags.class_of, mags.caches
        handles, save = self.depot.handles, self.depot.save
        hit_alloc, hit_free = mags.hit_alloc, mags.hit_free
        nclass = len(lists)
        head3, frames = _HEAD3, _FRAMES
        for off in range(RING + RECORD * start, RING + RECORD * head, RECORD):  # record i at RING + RECORD*i
            w0, addr, gfp = head3(buf, off)
            n = w0 >> 24
            if not 0 < n <= 16:
                return self.failed(f"record {_nth(off)} has {n} frames")
            stack = frames[n](buf, off + 16)
            site = handles.get(stack) or save(stack)
            ci = w0 >> 4 & 15
            if ci >= nclass:
                return self.failed(f"record {_nth(off)} names class {ci}")
            mag = lists[ci]
            if w0 & 1:
                live = records.get(addr)
                owner = page_owner.get(addr >> 12)
                if (live is None or live[1] != (w0 >> 1 & 1) or not isinstance(owner, Slab)
                        or owner.cache is not caches[ci] or len(mag) >= limit):  # fmt: skip
                    return self.failed(
                        f"record {_nth(off)}: a free of {addr:#x}, not a live object it serves"
                    )
                hit_free(addr, live, site, owner)
                mag.append(addr)
            else:
                size = w0 >> 8 & 0xFFFF
                if not (0 < size <= SERVED_MAX and class_of[size] == ci and mag and mag[-1] == addr
                        and (w0 & 2 or not gfp & BAD_GFP)):  # fmt: skip  # (w2: kmalloc's alone)
                    return self.failed(
                        f"record {_nth(off)}: an allocation of {addr:#x} the magazines did not hold"
                    )
                mag.pop()
                if w0 & 2:
                    hit_alloc(addr, size, KIND_MALLOC, site, _GFP_MALLOC)
                else:
                    hit_alloc(addr, size, KIND_KMALLOC, site, gfp)
        return True

    def check_counts(self) -> None:
        """Every magazine's count in the window equals the mirror's (invariant 2); not while the
        PC is in the blob (a run that ended there, by budget or timeout: its call is not committed)."""
        if self.in_window():
            return
        for ci, mag in enumerate(self.mags.mags):
            if WORD.unpack_from(self.buf, self.mag_at[ci])[0] != len(mag):
                self.fail(f"magazine {ci} holds a count the replay does not")
                return

    def set_byte(self, addr: int, value: int) -> None:
        for lo, hi, at in self.ranges:
            if lo <= addr < hi:
                self.buf[at + ((addr - lo) >> 3)] = value
                return

    def on_alloc(self, addr: int, ci: int, kind: int) -> None:
        """Magazines.on_alloc: a Python hit handed out a fast-class object: fast-freeable."""
        if not addr & 7:
            self.set_byte(addr, ci + 1 | (kind == KIND_MALLOC) << 4)

    def on_free(self, addr: int) -> None:
        """Magazines.on_free, and after krealloc / realloc (their old object may be gone): not
        fast-freeable from here on (the blob clears its own)."""
        if not addr & 7:
            self.set_byte(addr, 0)

    def sync(self) -> None:
        """Write the magazines the slow path changed into the window."""
        mags, buf = self.mags, self.buf
        for ci in mags.dirty:
            mag, at = mags.mags[ci], self.mag_at[ci]
            struct.pack_into(f"<{len(mag) + 1}I", buf, at, len(mag), *mag)
        mags.dirty.clear()
        self.syncs += 1

    def failed(self, what: str) -> bool:
        self.fail(what)
        return False

    def fail(self, what: str) -> None:
        """The window contradicts the replay: one report, the wrappers unpatched, slow from now on."""
        if self.corrupt is None:
            self.corrupt = what
            self.machine.report(BadArgumentError(f"the fast path's ring is corrupt: {what}; the run goes on"
                                                 " without the fast path"))  # fmt: skip
        WORD.pack_into(self.buf, H_HEAD, 0)
        self.unpatch()
        self.mags.dirty.update(range(len(self.mags.mags)))

    def section(self) -> dict[str, Any]:
        """The report's `fastpath` key (timing-dependent: how many calls the blob served)."""
        return {"on": bool(self.patched) or self.corrupt is not None, "served": self.served,
                "drains": self.drains, "corrupt": self.corrupt}  # fmt: skip


def magazines(ka: Any, options: Any) -> str | None:
    """--percpu-cache N (or --fastpath on's default): kalloc.percpu's magazines; why not, or None."""
    limit = options.percpu_cache or (percpu.DEFAULT_LIMIT if options.fastpath == "on" else 0)
    if not limit:
        return None
    if options.sanitize != "off":
        return f"the per-CPU magazines are served with --sanitize off only (not {options.sanitize})"
    percpu.enable(ka, limit)
    return None


def sections(session: Any) -> dict[str, Any]:
    """The report's additive keys: `percpu` (the magazines), `fastpath` (under --fastpath on)."""
    out: dict[str, Any] = {}
    mags = session.ka.magazines
    if mags is not None or session.percpu_note:
        out["percpu"] = mags.section() if mags is not None else {"off": session.percpu_note}
    if session.options.fastpath == "on":
        fp = session.fastpath
        out["fastpath"] = fp.section() if fp is not None else {"on": False, "off": session.fastpath_note}
    return out


def install(session: Any) -> tuple[FastPath | None, str | None]:
    """The fast path for a run about to start, or (None, why not)."""
    why = why_off(session.options, session)
    if why is not None:
        return None, why
    m = session.machine
    buf = map_window(session)
    if isinstance(buf, str):
        return None, buf
    fp = FastPath(session, session.ka.magazines, buf, list(m.phys.banks))
    why = fp.patch(session.firmware)
    if why is not None:
        return None, why
    fp.layout(m.phys.banks[0])
    _wire(fp, session)
    return fp, None


def _wire(fp: FastPath, session: Any) -> None:
    """The drains: hypercalls, slice boundaries, context changes (IrqState.watchers), filed errors
    (Machine.before_error); the defer; the magazines' hooks (the byte map)."""
    m = session.machine
    fp.mags.on_alloc, fp.mags.on_free = fp.on_alloc, fp.on_free  # (krealloc / realloc: Magazines.left)
    m.on_hypercall = fp.doorbell
    m.loop.add_timed(fp)
    m.loop.defer = fp.in_window
    m.irq_state.watchers.append(fp)
    m.before_error.append(fp.drain)
