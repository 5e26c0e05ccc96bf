"""RV32's call-site memo (bridge/callsite.py): `ChainMemo.walk` is `stack_above`, whatever the stack
holds between two calls from the same (ra, fp), and a snapshot shares it."""

from __future__ import annotations

import copy
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from kalloc_machine.bridge.callsite import DEPTH, ChainMemo
from kalloc_machine.bridge.doorbell import BACKTRACE_DEPTH, stack_above

from kalloc.physmem import RamBank

BASE, SIZE = 0x8000_0000, 256


def bank_with(words: list[int]) -> RamBank:
    data = bytearray(SIZE)
    struct.pack_into(f"<{len(words)}I", data, 0, *words)
    return RamBank("stack", BASE, SIZE, memoryview(data))


# frame pointers into the bank (aligned mostly, some not, some outside), return addresses, zeros
_word = st.one_of(
    st.integers(BASE, BASE + SIZE + 16).map(lambda a: a & ~3),
    st.integers(BASE, BASE + SIZE),
    st.sampled_from([0, 0x1000]),
    st.integers(0, 0xFFFF_FFFF),
)
_words = st.lists(_word, min_size=SIZE // 4, max_size=SIZE // 4)
_fp = st.integers(BASE, BASE + SIZE + 8).map(lambda a: a & ~3)


@settings(max_examples=300, deadline=None)
@given(_words, _fp, st.lists(st.tuples(st.integers(0, SIZE // 4 - 1), _word), max_size=6))
def test_the_memo_answers_what_stack_above_walks_after_any_change(
    words: list[int], fp: int, changes: list[tuple[int, int]]
) -> None:
    bank, memo, ra = bank_with(words), ChainMemo(), 0x8000_1234
    assert memo.walk(ra, fp, bank) == stack_above(ra, fp, bank)
    assert memo.walk(ra, fp, bank) == stack_above(ra, fp, bank)  # remembered, unchanged stack
    for index, value in changes:  # the stack changes under a remembered walk, one word at a time
        struct.pack_into("<I", bank.buf, 4 * index, value)
        assert memo.walk(ra, fp, bank) == stack_above(ra, fp, bank)


def test_a_chain_deeper_than_kept_and_another_bank() -> None:
    """A 30-frame chain keeps DEPTH frames (the bridge's BACKTRACE_DEPTH); the same (ra, fp) in
    another bank is walked there, not answered from the first."""
    assert DEPTH == BACKTRACE_DEPTH
    words = [0] * (SIZE // 4)
    for i in range(30):  # frame i at BASE + 8*(i+1): [fp-8] = next frame, [fp-4] = its ra
        fp = BASE + 8 * (i + 1)
        words[(fp - 8 - BASE) // 4] = fp + 8
        words[(fp - 4 - BASE) // 4] = 0x8000_0100 + i
    one = bank_with(words)
    other = RamBank("other", BASE + 0x1000, SIZE, memoryview(bytearray(one.buf)))  # same words, elsewhere
    memo = ChainMemo()
    deep = memo.walk(0x8000_0004, BASE + 8, one)
    assert len(deep) == DEPTH and deep == stack_above(0x8000_0004, BASE + 8, one)
    assert (
        memo.walk(0x8000_0004, BASE + 8, other) == (0x8000_0004,) == stack_above(0x8000_0004, BASE + 8, other)
    )


def test_a_snapshot_shares_the_memo() -> None:
    memo = ChainMemo()
    assert copy.deepcopy([memo])[0] is memo
