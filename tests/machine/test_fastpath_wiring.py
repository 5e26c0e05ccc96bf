"""How the fast path is told of the machine's events (issue 14, fifth session): it registers
with listener points (IrqState.watchers, Machine.before_error, Magazines.left) instead of
replacing the machine's and the allocator's methods on their instances."""

from __future__ import annotations

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def test_the_fast_path_registers_and_replaces_no_method() -> None:
    session = Session(RunOptions(firmware=str(prebuilt("bench/churn_kalloc")), sanitize="off", fastpath="on"))
    m, fp, mags = session.machine, session.fastpath, session.ka.magazines
    assert fp is not None and mags is not None
    assert fp in m.irq_state.watchers and fp.drain in m.before_error
    for obj, name in ((m.irq_state, "entered"), (m.irq_state, "returned"), (m, "report"), (m, "fatal")):
        assert name not in vars(obj), f"{name} replaced on the instance"
    assert m.sled.on_exception_return == m.irq_state.returned
    assert session.ka.krealloc == mags.krealloc and session.ka.realloc == mags.realloc

