"""Hostile hypercall arguments on the real machine (issue 12: host memory, memory handed out twice).

Each firmware of firmware/tests/hostile_args_*.c runs in a subprocess, so its peak RSS is the
run's own (VmHWM of /proc/self/status: ru_maxrss would carry the parent's peak across fork and
exec); the subprocess also runs the allocator's and vmalloc's
full check() after the run and prints one JSON line with what the test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from kalloc_machine.bridge.services.slab import CacheServices
from kalloc_machine.sdk import prebuilt

from kalloc.slub import MAX_USER_CACHES

RSS_BOUND_MIB = 300  # Python + Unicorn + a 16 MiB board is ~50 MiB; before the fix one call took 24 GB
WALL_BOUND_S = 20.0

_CHILD = r"""
import json, re, sys
from kalloc_machine.session import RunOptions, Session
s = Session(RunOptions(firmware=sys.argv[1], timeout_s=30))
out = s.run()
s.ka.check()
s.vm.check()
print(json.dumps({"exit": out.exit_status, "report": out.report,
                  "rss_mib": int(re.search(r"VmHWM:\s*(\d+)", open("/proc/self/status").read())[1]) // 1024}))
"""


def run_isolated(name: str) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(prebuilt(name))], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def test_huge_arguments_are_refused_before_the_host_allocates() -> None:
    got, wall = run_isolated("tests/hostile_args_huge")
    report = got["report"]
    assert "hostile args ok" in report["uart"], report["uart"]
    assert f"caches made: {MAX_USER_CACHES} of 2000" in report["uart"]
    assert "still works" in report["uart"]
    assert got["exit"] == 64  # bad-hypercall errors; the oom entries are warnings
    kinds = {e["kind"] for e in report["errors"]}
    assert kinds == {"bad-hypercall", "oom"}, kinds
    text = " ".join(e["message"] for e in report["errors"])
    for words in ("exceed the largest slab", "has no NUL", "exceed the largest block",
                  "overflows 32 bits", "order 31 is outside", "more pages than the machine has",
                  "vmap() of 4294967295 pages", "CONSOLE_WRITE", "caches exist already"):  # fmt: skip
        assert words in text, words
    assert got["rss_mib"] < RSS_BOUND_MIB, got["rss_mib"]
    assert wall < WALL_BOUND_S


def test_free_of_a_vmapped_page_is_refused_and_its_next_owner_is_safe() -> None:
    got, wall = run_isolated("tests/hostile_args_vmap_free")
    report = got["report"]
    assert "vmap free ok" in report["uart"] and "still works" in report["uart"], report["uart"]
    assert got["exit"] == 64
    (err,) = report["errors"]
    assert err["kind"] == "invalid-free"
    assert "still mapped by the vmap area at 0xc0000000" in err["message"]
    assert err["vmap_area"] == 0xC000_0000
    assert err["symbol"] == "main"
    assert got["rss_mib"] < RSS_BOUND_MIB and wall < WALL_BOUND_S


def test_linux_no_ops_are_no_ops() -> None:
    got, wall = run_isolated("tests/hostile_args_linux_noops")
    report = got["report"]
    assert "still works" in report["uart"]
    assert report["errors"] == [], report["errors"]  # no bad-hypercall, and the vmalloc area is no leak
    assert got["exit"] == 0
    assert wall < WALL_BOUND_S


def test_cache_destroy_of_handle_zero_is_a_no_op_at_the_service() -> None:
    from kalloc_machine.bridge.services.common import IrqAccounting
    from kalloc_machine.bridge.services.dma import DmaServices

    from kalloc import TASK, Kalloc

    ka = Kalloc.standalone(size=1 << 20, dma_size=1 << 19)
    irq = IrqAccounting(None)
    assert CacheServices(ka, irq).svc_cache_destroy(TASK, 0) == (0, 0)
    assert DmaServices(ka, irq).svc_dma_pool_destroy(TASK, 0) == (0, 0)
    assert ka.reports == []
    ka.check()


def test_kalloc_replay_of_a_size_beyond_32_bits_exits_3_with_one_line(tmp_path) -> None:
    from click.testing import CliRunner

    from kalloc.cli import main

    trace = tmp_path / "big.trace"
    trace.write_text("Alloc(4294967296),\nFree(0),\n")
    res = CliRunner().invoke(main, ["replay", str(trace)])
    assert res.exit_code == 3, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == [
        "kalloc: error: big.trace:1: 4294967296 does not fit in 32 bits (a size_t of this machine)"
    ]
    assert "Traceback" not in res.output
