"""End-to-end: real firmware ELFs booted on the emulated machine through `kalloc run`'s composer.

Each test runs a committed firmware from firmware/build/ and asserts what a user relies
on: the UART text, the exit status, and the JSON report's errors (kind, symbol, file:line).
"""

from __future__ import annotations

import pytest
from kalloc_machine.report.json_report import dumps
from kalloc_machine.tools.pytest_plugin import assert_clean, assert_exit, assert_uart


def kinds(outcome) -> list[str]:
    return [e["kind"] for e in outcome.report["errors"]]


def test_demo_runs_clean_and_exits_zero(run_fw):
    out = run_fw("demo")
    rep = out.report
    assert out.exit_status == 0, rep["errors"]
    assert rep["end"] == "exit"
    assert rep["errors"] == []
    assert rep["uart"]
    assert rep["instructions"] > 0
    # the demo goes through every part of the allocator
    calls = rep["hypercalls"]
    for svc in (
        "KMALLOC",
        "KFREE",
        "CACHE_ALLOC",
        "ALLOC_PAGES",
        "MALLOC",
        "DMA_ALLOC_COHERENT",
        "DMA_POOL_ALLOC",
    ):
        assert calls.get(svc, 0) > 0, svc
    assert rep["allocator"]["zones"]


def test_demo_runs_on_tiny_and_big_boards(run_fw):
    for board in ("tiny", "big"):
        out = run_fw("demo", board=board)
        assert out.exit_status == 0, (board, out.report["errors"], out.report["uart"][-500:])


def test_same_seed_same_json_bytes(run_fw):
    a = dumps(run_fw("demo", seed=3).report)
    b = dumps(run_fw("demo", seed=3).report)
    assert a == b


# These use the pytest plugin's fixtures (kalloc/pytest_plugin.py), as a user's suite would.


def test_hello_prints_through_printf(kalloc_run):
    out = kalloc_run("tests/hello")
    assert_exit(out, 0)
    assert "hello" in out.report["uart"].lower()


def test_firmware_exit_code_is_the_status(kalloc_run):
    out = kalloc_run("tests/exit7")
    assert_exit(out, 7)
    assert out.report["firmware_exit_code"] == 7


def test_unmodified_c_mallocs(kalloc_run):
    out = kalloc_run("tests/mallocs")
    assert_clean(out)
    assert_exit(out, 0)
    assert_uart(out, "ok")


def error_of(outcome, kind):
    matches = [e for e in outcome.report["errors"] if e["kind"] == kind]
    assert matches, (kind, outcome.report["errors"], outcome.report["uart"])
    return matches[0]


def test_double_free_reported_with_site(run_fw):
    out = run_fw("tests/double_free")
    assert out.exit_status == 64
    err = error_of(out, "double-free")
    assert err["severity"] == "error"
    assert err["symbol"] and err["location"]["file"].endswith("double_free.c")
    assert err["location"]["line"] > 0
    assert err.get("alloc_site") and err.get("free_site")


def test_invalid_free_reported(run_fw):
    out = run_fw("tests/invalid_free")
    assert out.exit_status == 64
    err = error_of(out, "invalid-free")
    assert err["location"]["file"].endswith("invalid_free.c")


def test_leak_reported_at_exit_grouped_by_site(run_fw):
    out = run_fw("tests/leak")
    assert out.exit_status == 64  # the firmware returned 0, but kalloc's code wins
    assert out.report["firmware_exit_code"] == 0
    err = error_of(out, "leak")
    assert err["count"] == 3
    assert err["location"]["file"].endswith("leak.c")
    assert out.report["leaks"]["count"] == 3


def test_illegal_instruction_is_a_cpu_fault_with_disassembly(run_fw):
    out = run_fw("tests/illegal")
    assert out.exit_status == 65
    err = error_of(out, "cpu-fault")
    assert err["symbol"] == "do_illegal"
    assert err["location"]["file"].endswith("illegal.c")
    assert err.get("instruction")
    assert "registers" in err


def test_null_dereference_is_a_cpu_fault(run_fw):
    out = run_fw("tests/null_deref")
    assert out.exit_status == 65
    err = error_of(out, "cpu-fault")
    assert "0x0" in err["message"] or "0x00000000" in err["message"]


def test_infinite_loop_hits_the_budget(run_fw):
    out = run_fw("tests/spin", max_instructions=2_000_000)
    assert out.exit_status == 66
    error_of(out, "timeout")


def test_bad_hypercall_reported_not_crashing(run_fw):
    out = run_fw("tests/bad_hypercall")
    assert out.exit_status == 64
    error_of(out, "bad-hypercall")


def test_gfp_kernel_in_timer_handler_is_invalid_context(run_fw):
    out = run_fw("tests/irq_kernel")
    err = error_of(out, "invalid-context")
    assert out.exit_status == 64
    assert err["severity"] == "error"


def test_gfp_kernel_with_irqs_off_is_invalid_context(run_fw):
    out = run_fw("tests/irqs_off")
    error_of(out, "invalid-context")
    assert out.exit_status == 64


def test_oom_is_a_warning_and_firmware_sees_null(run_fw):
    out = run_fw("tests/oom", board="tiny")
    assert out.exit_status == 0, out.report["errors"]
    warn = error_of(out, "oom")
    assert warn["severity"] == "warning"


def test_nofail_that_cannot_be_met_ends_the_run(run_fw):
    out = run_fw("tests/nofail", board="tiny")
    assert out.exit_status == 64
    err = error_of(out, "oom")
    assert err["severity"] == "error"


@pytest.mark.parametrize("sanitize", ["off", "poison"])
def test_demo_clean_under_sanitizers(run_fw, sanitize):
    out = run_fw("demo", sanitize=sanitize)
    assert out.report["errors"] == [], out.report["errors"]
