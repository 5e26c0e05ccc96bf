"""The Python functions one malloc + free pair runs on the hypercall path (issue 14), counted.

From the bridge's table entry to the slab: the services, the C library face and SLUB's
object paths, nothing else (no heap wrapper, no listener that ignores slab objects, no
separate forget/release/sized/fill helpers). Counted with sys.setprofile, so the test
says how much Python runs per call, not how long it takes.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

from kalloc import Caller, Context

HOT_PATH = [
    "LibcServices.svc_malloc", "LibcApi.malloc", "SlubPaths.alloc",  # Slub's object paths (kalloc.slubpaths)
    "VirtualPointerGuards.svc_free", "LibcServices.svc_free", "LibcApi.free", "SlubPaths.free",
]  # fmt: skip


def _python_calls(fn: Callable[[], Any]) -> list[str]:
    names: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            names.append(frame.f_code.co_qualname)

    enabled = gc.isenabled()
    gc.disable()  # a collection inside would run gc.callbacks (Hypothesis registers one): not the path
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        if enabled:
            gc.enable()
    return [n for n in names if not n.endswith("<locals>.pair")]


@pytest.mark.parametrize(("sanitize", "extra"), [("off", []), ("poison", [])])
def test_a_malloc_free_pair_runs_only_the_hot_path(sanitize: str, extra: list[str]) -> None:
    elf = str(prebuilt("bench/churn_kalloc"))
    session = Session(RunOptions(firmware=elf, board="default", sanitize=sanitize))
    malloc, free = session.bridge.handler("MALLOC"), session.bridge.handler("FREE")
    assert malloc is not None and free is not None
    caller = Caller(Context.TASK, session.ka.depot.save((0x8000_0100,)), 0)
    free(caller, malloc(caller, 100)[0])  # the class's current slab exists from here

    def pair() -> None:
        addr = malloc(caller, 100)[0]
        free(caller, addr)

    calls = _python_calls(pair)
    assert calls == HOT_PATH + extra, calls
    assert not session.ka.reports
