"""Freeing a stack address says so, and whose frame (issue 13, "Exact facts").

The allocator alone only knows "never allocated"; the machine knows the stack
(`__kalloc_stack_bottom`..`__kalloc_stack_top`) and the frame-pointer chain at the call.
The kind stays `invalid-free`; the message and the additive `stack` field say which
frame holds the address, and whether it is an interrupt handler's (handlers run on the
task stack on this machine: there is no separate interrupt stack).
"""

from __future__ import annotations

from typing import Any

from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session


def errors(name: str) -> tuple[list[dict[str, Any]], int]:
    out = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}")), timeout_s=60)).run()
    return out.report["errors"], out.exit_status


def test_a_freed_task_local_names_its_frame_on_the_task_stack() -> None:
    errs, status = errors("free_stack")
    assert status == 64 and [e["kind"] for e in errs] == ["invalid-free"] * 3
    local, mains, dead = errs
    # kfree() in release() of a local of task_local(), its caller: the frame is task_local's
    assert local["symbol"] == "release"
    assert local["stack"] == {"stack": "task", "frame": "task_local", "context": "task"}
    assert "a stack address: a local in the frame of task_local() on the task stack" in local["message"]
    assert local["message"].startswith("kfree() of 0x")
    assert mains["stack"] == {"stack": "task", "frame": "main", "context": "task"}
    assert mains["message"].startswith("free() of 0x") and "frame of main()" in mains["message"]
    assert dead["stack"] == {"stack": "task", "frame": None, "context": None, "dead": True}
    assert "a dead frame (a local of a function that returned)" in dead["message"]
    assert not any("never allocated" in e["message"] for e in errs)


def test_a_handler_local_is_a_handler_frame_and_the_interrupted_local_a_task_frame() -> None:
    errs, status = errors("free_stack_irq")
    assert status == 64 and [e["kind"] for e in errs] == ["invalid-free"] * 2
    mine, interrupted = errs
    assert mine["stack"] == {"stack": "task", "frame": "on_timer", "context": "interrupt"}
    assert "frame of on_timer(), an interrupt handler's frame" in mine["message"]
    assert interrupted["stack"] == {"stack": "task", "frame": "main", "context": "task"}
    assert "frame of main() on the task stack" in interrupted["message"]


def test_other_invalid_frees_are_unchanged() -> None:
    errs, _ = errors("invalid_free")
    interior, stack = errs
    assert interior["message"] == "free() of a pointer 16 bytes into a live object (not its start)"
    assert "stack" not in interior
    assert stack["stack"]["frame"] == "main"
