"""`kalloc replay --firmware`: the same trace through firmware hypercalls gives the same figures."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kalloc_machine.tools.fwreplay import FirmwareHeap, board_banks, boot

from kalloc.cli import main
from kalloc.replay import TRACES_DIR
from kalloc.replay.measure import build
from kalloc.replay.replayer import replay
from kalloc.replay.trace import load

SMALL = TRACES_DIR / "cpp-demangle.trace"


@pytest.mark.parametrize("heap", ["firstfit", "kmalloc"])
def test_firmware_replay_matches_the_python_replay(heap):
    trace = load(str(SMALL))
    ka, h, _vm = build(board_banks("default"), heap, "off")
    plain = replay(trace, ka, h).summary()
    target = boot("default", heap, "off")
    through = replay(trace, target.ka, FirmwareHeap(target)).summary()
    for key in ("peak_payload_bytes", "peak_committed_bytes", "utilization", "failed_requests", "at_peak"):
        assert through[key] == plain[key], key
    # every allocation request was one hypercall made by firmware
    calls = target.session.bridge.call_counts()
    assert calls.get("MALLOC", 0) == sum(1 for op in trace.ops if op.kind == "a")
    assert calls.get("FREE", 0) == sum(1 for op in trace.ops if op.kind == "f")
    assert target.machine.errors == []


def test_replay_firmware_option_writes_json(tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["replay", "--firmware", "-q", "--json", str(out), str(SMALL)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["options"]["firmware"] is True
    assert doc["replays"][0]["failed_requests"] == 0
    assert doc["replays"][0]["ops"] == len(load(str(SMALL)).ops)
