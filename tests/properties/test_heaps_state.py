"""A Hypothesis state machine over every heap policy behind the C library face (kalloc.heaps).

The program under test calls malloc, calloc, realloc, aligned_alloc and free on one
heap (`make_heap(name, …)`, as `--heap NAME` does) and never misbehaves. The model is
the live bytes: {pointer: the pattern written into the object}. After every step:

 1. live objects do not overlap, and each one's usable size covers its request;
 2. every live object still holds its pattern (written and read through the heap's
    byte access: guest RAM, or the arena's page tables);
 3. calloc's bytes are zero; aligned_alloc's pointer is aligned; realloc keeps
    min(old, new) bytes; a failed realloc (NULL) leaves the old object as it was;
 4. the heap's live set is the model's, heap.check() and ka.check() pass, and no
    error report appears (any would be a false positive; oom warnings are fine);
 5. the edges of the contract: free(NULL) does nothing, realloc(NULL, n) is malloc(n),
    a request above Config.heap_max, a calloc beyond 32 bits and an aligned_alloc whose
    alignment is not a power of two are NULL, and freeing a pointer already given back
    raises DoubleFreeError or InvalidFreeError and changes nothing (1-4 still hold).

Pointers live in a Bundle and free/realloc `consumes()` them, so a shrunk failure reads
as a short program: `ptrs_0 = state.malloc(size=24)`, `ptrs_1 = state.realloc(p=ptrs_0,
size=5000)`, `state.free(p=ptrs_1)`.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from kalloc import Config, Kalloc
from kalloc.errors import DoubleFreeError, InvalidFreeError
from kalloc.heaps import HEAPS, make_heap
from kalloc.vmalloc import Vmalloc

SIZES = st.one_of(
    st.integers(0, 64),
    st.sampled_from([15, 16, 17, 96, 192, 1000, 2048, 4095, 4096, 4097, 8191, 8192, 8193]),
    st.integers(65, 24_000),
)
ALIGNS = st.sampled_from([1, 8, 16, 32, 64, 256, 2048, 4096, 8192, 0, 3, 48])  # 0, 3, 48: not powers of two


class HeapMachine(RuleBasedStateMachine):
    """One heap policy, driven through its C library face (module docstring)."""

    ptrs = Bundle("ptrs")
    heap_name = "kmalloc"

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, bytes] = {}
        self.freed: list[int] = []  # the latest pointers given back
        self.tag = 0

    @initialize(
        sanitize=st.sampled_from(["poison", "off", "kasan"]),
        zero=st.sampled_from(["unique", "null"]),
        mib=st.sampled_from([1, 4]),
        heap_max=st.sampled_from([1 << 30, 12_000]),
        slabs_at_once=st.booleans(),
    )
    def boot(self, sanitize: str, zero: str, mib: int, heap_max: int, slabs_at_once: bool) -> None:
        config = Config(sanitize=sanitize, zero_size_policy=zero, quarantine_bytes=8192, heap_max=heap_max)
        self.ka = Kalloc.standalone(size=mib << 20, dma_size=(mib << 20) // 4, config=config)
        self.heap = make_heap(self.heap_name, self.ka, Vmalloc(self.ka))
        if slabs_at_once and hasattr(self.heap, "slab_after"):  # segfit: every small class in slabs
            self.heap.slab_after = 0

    # ---------------------------------------------------------------- the model

    def pattern(self, n: int) -> bytes:
        self.tag = self.tag % 251 + 1
        return bytes((self.tag + i) & 0xFF or 1 for i in range(n))

    def add(self, p: int | None, size: int) -> int | None:
        """Record a fresh object: write its pattern; None (NULL) adds nothing."""
        if size > self.ka.config.heap_max:
            assert p is None, f"a request of {size} bytes above heap_max was served"
        if p is None:
            return None
        assert p not in self.live, f"{p:#x} handed out while live"
        assert self.heap.malloc_usable_size(p) >= size
        data = self.pattern(size)
        self.heap.write(p, data)
        self.live[p] = data
        return p

    def forget(self, p: int) -> None:
        self.freed = [*self.freed[-15:], p]

    @staticmethod
    def kept(p: int | None) -> object:
        """A rule's result: the pointer for the bundle, or nothing (NULL)."""
        return multiple() if p is None else p

    # ---------------------------------------------------------------- the C library face

    @rule(target=ptrs, size=SIZES)
    def malloc(self, size: int) -> object:
        p = self.heap.malloc(size)
        if p is not None:
            assert p % (16 if size >= 16 else 8) == 0, hex(p)
        return self.kept(self.add(p, size))

    @rule(target=ptrs, n=st.integers(0, 40), size=st.integers(0, 600))
    def calloc(self, n: int, size: int) -> object:
        p = self.heap.calloc(n, size)
        if p is not None:
            assert self.heap.read(p, n * size) == bytes(n * size), "calloc memory is not zeroed"
        return self.kept(self.add(p, n * size))

    @rule(target=ptrs, align=ALIGNS, size=SIZES)
    def aligned_alloc(self, align: int, size: int) -> object:
        p = self.heap.aligned_alloc(align, size)
        if align <= 0 or align & (align - 1):
            assert p is None, f"aligned_alloc({align}) is not a power of two and must be NULL"
        if p is not None:
            assert p % align == 0, f"aligned_alloc({align}) gave {p:#x}"
        return self.kept(self.add(p, size))

    @rule(target=ptrs, p=consumes(ptrs), size=SIZES)
    def realloc(self, p: int, size: int) -> object:
        old = self.live[p]
        q = self.heap.realloc(p, size)
        if q is None:  # failed (or the "null" zero-size policy): p is untouched and still live
            assert self.heap.read(p, len(old)) == old, "a failed realloc changed the object"
            return p
        keep = min(len(old), size)
        assert self.heap.read(q, keep) == old[:keep], "realloc lost the object's bytes"
        del self.live[p]
        if q != p:
            self.forget(p)
        return self.kept(self.add(q, size))

    @rule(target=ptrs, size=SIZES)
    def realloc_null_is_malloc(self, size: int) -> object:
        return self.kept(self.add(self.heap.realloc(0, size), size))

    @rule(n=st.sampled_from([1 << 16, 1 << 20]), size=st.sampled_from([65_537, 1 << 17]))
    def calloc_overflow_is_null(self, n: int, size: int) -> None:
        assert self.heap.calloc(n, size) is None  # n * size is beyond the firmware's 32-bit size_t

    @rule()
    def free_null_is_a_no_op(self) -> None:
        self.heap.free(0)

    @precondition(lambda self: any(p not in self.live for p in self.freed))
    @rule(i=st.integers(0, 1 << 16))
    def free_again_is_refused(self, i: int) -> None:
        stale = [p for p in self.freed if p not in self.live]
        with pytest.raises((DoubleFreeError, InvalidFreeError)):
            self.heap.free(stale[i % len(stale)])

    @rule(p=consumes(ptrs))
    def free(self, p: int) -> None:
        assert self.heap.read(p, len(self.live[p])) == self.live[p]
        del self.live[p]
        self.heap.free(p)
        self.forget(p)

    # ---------------------------------------------------------------- after every step

    @invariant()
    def objects_are_disjoint_and_intact(self) -> None:
        end = 0
        for p in sorted(self.live):
            data = self.live[p]
            assert p >= end, f"object {p:#x} overlaps the one before it"
            end = p + max(len(data), 1)
            assert self.heap.read(p, len(data)) == data, f"object {p:#x} lost its bytes"

    @invariant()
    def heap_and_allocator_are_consistent(self) -> None:
        if not hasattr(self, "heap"):
            return
        held = [*self.heap.live_allocations(), *self.ka.live_allocations()]  # its own, or the allocator's
        model = {p: len(d) for p, d in self.live.items()}
        assert {a.addr: a.size for a in held if a.kind == "malloc"} == model
        self.heap.check()
        self.ka.check()
        bad = [r for r in self.ka.reports if r.severity == "error"]  # oom is a warning
        assert not bad, bad


@pytest.mark.parametrize("runs", ["short", pytest.param("long", marks=pytest.mark.slow)])
@pytest.mark.parametrize("heap", sorted(HEAPS))
def test_heap_policy_keeps_the_c_library_contract(run_machine, heap: str, runs: str) -> None:
    run_machine(type(f"HeapMachine_{heap}", (HeapMachine,), {"heap_name": heap}))
