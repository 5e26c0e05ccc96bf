"""The idle sled without code hooks (sled.py): laps counted in a register, wfi marked.

Every UC_HOOK_CODE hook costs every instruction of a counted slice, however narrow its
range, so a run installs none: these tests hold that, and what it rests on — the
firmware's t6 (the sled's counter) survives every early stop, a marked wfi still
idles and still reads as `wfi` in reports.
"""

from __future__ import annotations

import unicorn
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def test_t6_survives_cuts_and_wfi_stops():
    session = Session(RunOptions(firmware=str(prebuilt("tests/sled_t6"))))
    outcome = session.run()
    assert outcome.report["uart"] == "t6 kept\n" and outcome.exit_status == 0
    assert session.machine.cuts >= 40  # each mtimecmp store in the first loop ended a slice


def test_a_run_installs_no_code_hook(monkeypatch):
    code_hooks = []
    real = unicorn.Uc.hook_add

    def spy(self, htype, callback, user_data=None, begin=1, end=0, *rest):
        if htype & unicorn.UC_HOOK_CODE:
            code_hooks.append((begin, end))
        return real(self, htype, callback, user_data, begin, end, *rest)

    monkeypatch.setattr(unicorn.Uc, "hook_add", spy)
    session = Session(RunOptions(firmware=str(prebuilt("tests/sled_t6"))))  # wfi, cuts, a handler
    assert not code_hooks, "building the machine installed a code hook"
    assert session.run().exit_status == 0
    assert not code_hooks, "the run installed a code hook (the handler's mret is marked: irqstate.py)"
    assert session.machine.irq_state.returns > 0


def test_a_marked_wfi_reads_as_wfi_in_reports():
    session = Session(RunOptions(firmware=str(prebuilt("tests/sled_t6"))))
    wfis = session.firmware.wfi_pcs
    assert wfis
    for pc in wfis:
        assert session.machine.faults.instruction_at(pc) == "wfi"
        assert session.machine.phys.read(pc, 4) == session.machine.isa.idle_mark
