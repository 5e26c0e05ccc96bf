"""Interrupts and DMA end to end (issue 4): firmware/tests/irq_dma.c and the irq tests."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt, sdk_dir
from kalloc_machine.session import RunOptions, Session

from kalloc.cli import main

IRQ_DMA = str(prebuilt("tests/irq_dma"))
ATOMIC, UNREACHABLE, BOUNDARY, TRANSFERS, RESERVE, SCHEDULE, COHERENT_FREE, OVERRUN = range(8)


def session(mode: int | None = None, fw: str = IRQ_DMA, **options: Any) -> Session:
    s = Session(RunOptions(firmware=fw, max_instructions=5_000_000, **options))
    if mode is not None:
        addr = s.firmware.symbol_addr("irq_dma_mode")
        assert addr is not None
        s.machine.phys.write(addr, mode.to_bytes(4, "little"))
    return s


def run(mode: int | None = None, fw: str = IRQ_DMA, **options: Any) -> dict[str, Any]:
    return session(mode, fw, **options).run().report


def only(report: dict[str, Any], kind: str) -> dict[str, Any]:
    errs = report["errors"]
    assert [e["kind"] for e in errs] == [kind], errs
    return errs[0]


def test_gfp_atomic_in_a_handler_succeeds() -> None:
    r = run(ATOMIC)
    assert (r["exit_code"], r["errors"]) == (0, [])
    line = r["interrupts"]["per_line"]["0"]
    assert line["count"] == 1 and line["allocs"] == 1 and line["bytes"] == 48 and line["failures"] == 0


def test_gfp_kernel_in_a_handler_names_the_handler_and_the_interrupted_pc() -> None:
    s = session(fw=str(prebuilt("tests/irq_kernel")))
    r = s.run().report
    err = only(r, "invalid-context")
    assert err["symbol"] == "on_timer" == err["handler"]
    assert err["location"]["file"] == "firmware/tests/irq_kernel.c"
    assert all(f["symbol"] != "main" for f in err["backtrace"])  # the handler's frames only
    assert err["interrupted"]["pc"] == err["interrupted_pc"]
    assert err["interrupted"]["symbol"] == "main"  # the interrupt landed in main's wait loop
    assert s.firmware.symbolize(err["interrupted_pc"]).symbol == "main"
    assert "interrupted main" in err["message"]


def test_irqs_disabled_section_is_invalid_context() -> None:
    err = only(run(fw=str(prebuilt("tests/irqs_off"))), "invalid-context")
    assert err["context"] == "irqs_off" and err["symbol"] == "main"
    assert "interrupted" not in err


def test_dma_free_coherent_from_a_handler_is_invalid_context() -> None:
    err = only(run(COHERENT_FREE), "invalid-context")
    assert err["api"] == "dma_free_coherent" and err["handler"] == "on_timer_coherent_free"


def test_dma_from_a_normal_zone_buffer_names_its_allocation_site() -> None:
    r = run(UNREACHABLE)
    err = only(r, "dma-unreachable")
    site = err["alloc_site"]
    assert site["location"]["file"] == "firmware/tests/irq_dma.c"  # (static helpers inline into main)
    src = (sdk_dir() / "tests" / "irq_dma.c").read_text().splitlines()
    assert "kmalloc(256, GFP_KERNEL)" in src[site["location"]["line"] - 1]
    assert "GFP_DMA" in err["message"] and "dma_alloc_coherent" in err["message"]
    assert err["symbol"] == "dma_engine_start"  # the store that started the transfer
    assert any(f["file"] == "firmware/tests/irq_dma.c" for f in err["backtrace"])
    assert r["dma"]["failed"] == 1 and r["dma"]["errors"] == 1


def test_dma_across_a_64k_boundary() -> None:
    err = only(run(BOUNDARY), "dma-boundary")
    assert err["crossing"] % 65536 == 0
    assert err["alloc_site"]["location"]["file"] == "firmware/tests/irq_dma.c"


def test_coherent_pool_and_gfp_dma_buffers_transfer() -> None:
    s = session(TRANSFERS)
    r = s.run().report
    assert (r["exit_code"], r["errors"]) == (0, []), r["uart"]
    assert r["dma"]["transfers"] == 6 == r["dma"]["completed"]
    # the last transfer wrote the device buffer's pattern back into RAM: the host sees it too
    assert bytes(s.machine.dma.buffer[:4]) == bytes(i ^ 3 for i in range(4))


def test_dma_past_the_end_of_an_object_under_a_sanitizer() -> None:
    err = only(run(OVERRUN), "out-of-bounds")
    assert err["object"]["size"] == 100
    assert err["alloc_site"]["location"]["file"] == "firmware/tests/irq_dma.c"
    unchecked = run(OVERRUN, sanitize="off")
    assert unchecked["firmware_exit_code"] == 1  # no sanitizer: the engine copies (and corrupts)
    assert not any(e.get("dma") for e in unchecked["errors"])


def test_reserve_lets_atomic_succeed_where_gfp_kernel_fails() -> None:
    r = run(RESERVE)
    assert (r["exit_code"], r["errors"]) == (0, []), r["uart"]
    line = r["interrupts"]["per_line"]["0"]
    assert line["allocs"] == 4 and line["failures"] == 0
    zones = {z["name"]: z for z in r["allocator"]["zones"]}
    lowest = r["interrupts"]["lowest_free_pages"]
    assert any(lowest[n] < zones[n]["watermarks"]["min"] for n in lowest)  # into the reserve


def test_same_seed_same_interrupt_times(cli_json) -> None:
    args = ("--irq-every", "4000", "--irq-jitter", "1500", "--seed")
    (sa, a), (sb, b) = cli_json(*args, "11"), cli_json(*args, "11")
    assert sa == sb == 0 and a == b
    times = json.loads(a)["interrupts"]["injected"]["times"]
    assert times and all(4000 * k <= t <= 4000 * k + 1500 for k, t in enumerate(times, 1))
    c = json.loads(cli_json(*args, "12")[1])
    assert c["interrupts"]["injected"]["times"] != times


def test_irq_at_option_and_bad_values(cli_json) -> None:
    status, text = cli_json("--irq-at", "5000,20000")
    assert status == 0 and json.loads(text)["interrupts"]["injected"]["times"] == [5000, 20000]
    assert CliRunner().invoke(main, ["run", "--irq-at", "5,x"]).exit_code == 2


def test_timer_interrupts_are_taken_on_time() -> None:
    s = session(None, fw=None)
    late: list[int] = []
    enter = s.machine.isa.enter_interrupt

    def spy(uc: Any, cause: int) -> None:
        if cause == 0x8000_0007:
            late.append(s.machine.clock.now - s.machine.clint.mtimecmp)
        enter(uc, cause)

    s.machine.isa.enter_interrupt = spy  # type: ignore[method-assign]
    assert s.run().report["exit_code"] == 0
    assert len(late) >= 12 and max(late) <= 4  # was: up to a whole 100k-instruction slice


def test_demo_report_shows_interrupts_and_dma() -> None:
    r = run(fw=None)
    lines = r["interrupts"]["per_line"]
    assert lines["0"]["allocs"] > 0 and lines["1"]["frees"] > 0  # timer allocs, DMA completion frees
    assert r["dma"]["completed"] >= 8 and r["dma"]["errors"] == 0
    assert "lowest free pages" in _text(r)


def _text(report: dict[str, Any]) -> str:
    from io import StringIO

    from kalloc_machine.report.render import render_text
    from rich.console import Console

    buf = StringIO()
    render_text(report, Console(file=buf, width=120))
    return buf.getvalue()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=20_000), max_size=12))
def test_any_interrupt_schedule_keeps_the_invariants(times: list[int]) -> None:
    s = session(SCHEDULE, irq_at=tuple(times))
    out = s.run()
    assert out.report["exit_code"] == 0, (times, out.report["uart"], out.report["errors"])
    s.ka.check()
    assert dumps(out.report)  # serializable
