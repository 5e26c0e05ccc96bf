"""End to end: one firmware per memory-error class, under poison, KASAN hook and compiled KASAN.

Each case asserts the kind, the symbol of the faulting function, the
allocation site's file:line and the exit status (issue 5). The same program
runs as firmware/build/tests/<name>.elf (poison, and kasan through the memory
hook) and as kasan_<name>.elf (built with KASAN=1: compiled checks). Clean
workloads report nothing under every mode.
"""

from __future__ import annotations

from typing import Any

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

from kalloc import Kalloc
from kalloc.config import Config
from kalloc.failslab import FailConfig, FailSlab, Request
from kalloc.shadow import PAGE_FREE, SLAB_FREE, SLAB_REDZONE, Shadow, ShadowRegion


def run(name: str, **opts: Any) -> tuple[dict[str, Any], Session]:
    session = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}")), **opts))
    return session.run().report, session


def errors(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in report["errors"] if e["severity"] == "error" and (kind is None or e["kind"] == kind)]


# name, kind, faulting function (shadow modes), allocation line, poison mode detects it
SHADOW_CASES = [
    ("oob_one", "out-of-bounds", "write_past_end", 16, True),
    ("underflow", "out-of-bounds", "write_before_start", 15, True),
    ("uaf_read", "use-after-free", "read_after_free", 18, False),
    ("uaf_write", "use-after-free", "write_after_free", 18, True),
    ("cache_oob", "out-of-bounds", "fill_items", 22, True),
    ("pool_oob", "out-of-bounds", "fill_descriptor", 20, True),
]


@pytest.mark.parametrize("variant", ["hook", "compiled"])
@pytest.mark.parametrize(("name", "kind", "func", "line", "_poison"), SHADOW_CASES)
def test_shadow_modes_catch_the_access(name: str, kind: str, func: str, line: int, _poison: bool,
                                       variant: str) -> None:  # fmt: skip
    report, session = run(name if variant == "hook" else f"kasan_{name}", sanitize="kasan")
    assert session.kasan_mode == variant
    first = errors(report)[0]
    assert first["kind"] == kind
    assert first["symbol"] == func
    assert first["location"]["file"] == f"firmware/tests/{name}.c"
    assert first["alloc_site"]["location"] == {"file": f"firmware/tests/{name}.c", "line": line}
    assert first["access"]["type"] in ("read", "write") and first["access"]["size"] in (1, 4)
    assert first["instruction"].split()[0].lstrip("c.") in ("sb", "sw", "lw")
    assert first["object"]["size"] > 0 and "offset" in first
    if kind == "use-after-free":
        assert first["free_site"]["symbol"] == "main"
    assert report["exit_code"] == 64


@pytest.mark.parametrize(("name", "kind", "func", "line", "poison"), SHADOW_CASES)
def test_poison_mode(name: str, kind: str, func: str, line: int, poison: bool) -> None:
    report, _ = run(name)
    if not poison:  # a read changes no byte: only the shadow modes see it
        assert errors(report) == [] and report["exit_code"] == 0
        return
    first = errors(report)[0]
    assert first["kind"] == kind
    assert first["alloc_site"]["location"] == {"file": f"firmware/tests/{name}.c", "line": line}
    assert report["exit_code"] == 64


@pytest.mark.parametrize("sanitize", ["poison", "kasan", "off"])
def test_allocator_side_checks_in_every_mode(sanitize: str) -> None:
    report, _ = run("double_free", sanitize=sanitize)
    (err,) = errors(report, "double-free")
    assert err["symbol"] == "main" and err["alloc_site"]["location"]["line"] == 9
    report, _ = run("invalid_free", sanitize=sanitize)
    bad = errors(report, "invalid-free")
    assert len(bad) == 2 and {e["symbol"] for e in bad} == {"main"}  # interior pointer, then stack
    assert "bytes into a live object" in bad[0]["message"]
    assert report["exit_code"] == 64


def test_leak_names_its_allocation_site() -> None:
    report, _ = run("leak")
    (leak,) = errors(report, "leak")
    assert leak["symbol"] == "make_leaks" and leak["count"] == 3
    assert report["exit_code"] == 64


def test_missing_null_check_found_by_fault_injection() -> None:
    clean, _ = run("null_check")
    assert errors(clean) == [] and clean["exit_code"] == 0
    report, _ = run("null_check", fail_site="make_name", fail_nth=(3,))
    (warn,) = [e for e in report["errors"] if e["kind"] == "oom"]
    assert warn["severity"] == "warning" and warn["injected"] is True
    assert warn["request"]["api"] == "MALLOC" and warn["symbol"] == "make_name"
    (fault,) = errors(report, "cpu-fault")
    assert fault["symbol"] == "make_name"
    assert fault["after_injected_failure"]["nth"] == 3
    assert fault["after_injected_failure"]["site"]["location"] == {"file": "firmware/tests/null_check.c",
                                                                   "line": 12}  # fmt: skip
    assert report["exit_code"] == 65


def test_fault_injection_filters_and_probability_are_deterministic() -> None:
    a, _ = run("mallocs", fail_prob=0.3, seed=7)
    b, _ = run("mallocs", fail_prob=0.3, seed=7)
    injected = [e for e in a["errors"] if e.get("injected")]
    assert injected and a["errors"] == b["errors"]
    c, _ = run("mallocs", fail_cache="kmalloc-64")
    assert all(e["request"].get("cache") == "kmalloc-64" for e in c["errors"] if e.get("injected"))
    d, _ = run("mallocs", fail_context="irq")
    assert not [e for e in d["errors"] if e.get("injected")]  # mallocs allocates in task context only


@pytest.mark.parametrize("sanitize", ["off", "poison", "kasan"])
def test_the_demo_is_clean_under_every_sanitizer(sanitize: str) -> None:
    session = Session(RunOptions(sanitize=sanitize))
    report = session.run().report
    assert report["errors"] == [] and report["exit_code"] == 0
    if sanitize == "kasan":
        assert session.kasan_mode == "hook"


@pytest.mark.parametrize("elf", ["kasan_demo", "tests/kasan_mallocs"])
def test_kasan_builds_are_clean_under_compiled_checks(elf: str) -> None:
    session = Session(RunOptions(firmware=str(prebuilt(elf)), sanitize="kasan"))
    report = session.run().report
    assert session.kasan_mode == "compiled"
    assert [e for e in report["errors"] if e["kind"] not in ("oom",)] == []
    assert report["allocator"]["totals"]["reserved_bytes"]["shadow"] > 0


def test_kasan_build_runs_without_a_shadow_under_poison() -> None:
    session = Session(RunOptions(firmware=str(prebuilt("tests/kasan_uaf_read")), sanitize="poison"))
    report = session.run().report
    assert session.kasan_mode is None and errors(report) == []


def test_quarantine_option_reaches_the_allocator() -> None:
    _, session = run("hello", sanitize="kasan", quarantine=4096)
    assert session.ka.slub.quarantine is not None and session.ka.slub.quarantine.budget == 4096


# -- units ---------------------------------------------------------------------------------


def test_shadow_follows_alloc_free_and_resize() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    regions = [ShadowRegion(b.base, b.size, bytearray(b.size // 8)) for b in ka.phys.banks]
    shadow = Shadow(regions)
    shadow.attach(ka)
    p = ka.kmalloc(13, 0xCC0)
    assert shadow.check(p, 13) is None
    assert shadow.check(p + 12, 2) == p + 13
    assert shadow.code(p + 8) == 5 and shadow.code(p + 16) != 0 and shadow.check(p - 1, 1) == p - 1
    big = ka.kmalloc(100, 0xCC0)  # kmalloc-128: bytes 100..127 are the tail red zone
    assert shadow.code(big + 104) == SLAB_REDZONE
    ka.ksize(p)
    assert shadow.check(p, 16) is None
    ka.kfree(p)
    assert shadow.code(p) == SLAB_FREE and shadow.check(p, 1) == p
    assert shadow.code(ka.phys.banks[-1].end - 8) == PAGE_FREE


def test_realloc_moves_and_frees_are_quarantined_under_kasan() -> None:
    ka = Kalloc.standalone(config=Config(sanitize="kasan"))
    p = ka.malloc(40)
    q = ka.realloc(p, 41)
    assert q != p and ka.describe(p)["state"] == "quarantined"


def test_failslab_nth_and_nofail() -> None:
    fs = FailSlab(FailConfig(nth=(2,)))
    reqs = [Request("MALLOC", 8), Request("MALLOC", 8, nofail=True), Request("MALLOC", 8)]
    assert [fs.decide(r) for r in reqs] == [False, False, True]
