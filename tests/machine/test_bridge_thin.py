"""Issue 14, part 2: the thinner hypercall path, and that it changes nothing a report says.

The doorbell is mapped without the Unicorn binding's per-call wrappers (kalloc_machine/rawmmio.py)
but keeps the binding's contract: an exception escaping a callback is raised by the run. The
commit meter samples through the bridge's page watchers, only after calls that moved pages.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.board import load_board
from kalloc_machine.elf import load_firmware
from kalloc_machine.machine import Machine
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.benchkit import MODES, bare_doorbell, poke

DATA = Path(__file__).resolve().parents[1] / "data"


def doorbell_machine() -> Machine:
    return Machine(load_board("default"), load_firmware(DATA / "doorbell.elf"), max_instructions=20_000_000)


def test_the_doorbell_callback_has_no_binding_frame() -> None:
    m = doorbell_machine()
    frames: list[tuple[str, str]] = []

    def handler(service: int, block: int) -> None:
        frames.extend((Path(f.filename).name, f.function) for f in inspect.stack()[1:])
        m.phys.write_u32(block, 42)

    m.on_hypercall = handler
    assert m.run().exit_code == 42
    # the doorbell, then straight to emu_start's caller: none of the binding's callback wrappers
    callback = frames[: [fn for _, fn in frames].index("emu_start")]
    assert callback == [("machine.py", "_doorbell")]  # the ctypes callback itself (map_raw guarded)


class Boom(BaseException):
    pass


@pytest.mark.parametrize("exc", [Boom, RuntimeError, KeyboardInterrupt])
def test_an_exception_in_the_doorbell_is_raised_by_the_run(exc: type[BaseException]) -> None:
    m = doorbell_machine()

    def handler(service: int, block: int) -> None:
        raise exc("from the doorbell")

    m.on_hypercall = handler
    with pytest.raises(exc, match="from the doorbell"):
        m.run()


def test_the_commit_meter_samples_only_when_pages_moved() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("tests/bench")), sanitize="off"))
    poke(s, "bench_mode", MODES["pages"])
    poke(s, "bench_iters", 20)
    samples = [0]
    sample = s.commit.sample

    def counted() -> None:
        samples[0] += 1
        sample()

    s.bridge.page_watchers[:] = [counted]
    s.machine.run()
    calls = sum(s.bridge.call_counts().values())
    assert 40 <= samples[0] < calls  # each alloc_pages and free_pages moved pages; BOOTINFO and exit did not
    assert s.commit.high_water["pages"] == 8  # the order-3 block, sampled while it was held


def test_the_bare_doorbell_still_boots_and_ends_the_bench() -> None:
    s = Session(RunOptions(firmware=str(prebuilt("tests/bench")), sanitize="off"))
    bare_doorbell(s)
    poke(s, "bench_mode", MODES["nop"])
    poke(s, "bench_iters", 50)
    r: Any = s.machine.run()
    assert r.exit_code == 0 and not r.errors
    assert "NOP" not in s.bridge.call_counts()  # the NOPs never reached the bridge
