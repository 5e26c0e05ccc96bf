"""Issue 13, "exact facts" (allocator side): each report states the fact the firmware made.

One small firmware per case (firmware/tests/<name>.c, built into firmware/build/tests/):

    freed_requested_size   a use-after-free and a double free name the size asked for
                           (177, 100 bytes), with the slot beside it, never "a 192-byte
                           kmalloc-192" object
    realloc_inplace_site   realloc / krealloc in place: the leak and the overflow name the
                           realloc's line (Valgrind's realloc3)
    ksize_after_free       ksize() of a freed pointer: use-after-free with both sites
    cache_destroy_poison   kmem_cache_destroy() checks its freed objects before the slabs go
    overflow_once          under KASAN (hook and compiled) each bad write is reported once,
                           at the store; under poison the free/exit checks still find it

Lines are found by the marker comments in the sources, so an edit of a comment
does not break the tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions, Session

SOURCES = Path(__file__).resolve().parents[2] / "firmware" / "tests"


def run(name: str, **opts: Any) -> tuple[dict[str, Any], Session]:
    session = Session(RunOptions(firmware=str(prebuilt(f"tests/{name}")), **opts))
    return session.run().report, session


def line_of(name: str, marker: str) -> int:
    """The line of firmware/tests/<name>.c whose comment holds `marker`."""
    lines = (SOURCES / f"{name}.c").read_text().splitlines()
    (n,) = [i for i, text in enumerate(lines, 1) if re.search(rf"/\* {marker}\b(?!_)", text)]
    return n


def site_line(entry: dict[str, Any], key: str) -> int:
    return entry[key]["location"]["line"]


def by_kind(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in report["errors"] if e["kind"] == kind]


# -- requested sizes -------------------------------------------------------------------------


@pytest.mark.parametrize("sanitize", ["poison", "kasan"])
def test_use_after_free_and_double_free_name_the_requested_size(sanitize: str) -> None:
    name = "freed_requested_size"
    report, _ = run(name, sanitize=sanitize)
    (uaf,) = by_kind(report, "use-after-free")
    assert "freed 177-byte malloc object in a 192-byte slot of kmalloc-192" in uaf["message"]
    assert "192-byte kmalloc-192" not in uaf["message"]
    assert uaf["object"] == {"addr": uaf["object"]["addr"], "size": 177, "kind": "malloc",
                             "usable": 192, "cache": "kmalloc-192"}  # fmt: skip
    assert site_line(uaf, "alloc_site") == line_of(name, "UAF_ALLOC")
    assert site_line(uaf, "free_site") == line_of(name, "UAF_FREE")
    (df,) = by_kind(report, "double-free")
    assert df["message"] == (
        "kfree() of an object that was already freed: a 100-byte kmalloc object"
        " in a 128-byte slot of kmalloc-128"
    )
    assert df["object"]["size"] == 100 and df["object"]["kind"] == "kmalloc"
    assert df["location"]["line"] == line_of(name, "DF_AGAIN")
    assert site_line(df, "alloc_site") == line_of(name, "DF_ALLOC")
    assert site_line(df, "free_site") == line_of(name, "DF_FREE")


# -- realloc in place ------------------------------------------------------------------------


@pytest.mark.parametrize("sanitize", ["poison", "kasan"])
def test_realloc_in_place_becomes_the_allocation_site(sanitize: str) -> None:
    """Under poison both reallocs stay in place (kasan always moves): the sites are the same."""
    name = "realloc_inplace_site"
    report, _ = run(name, sanitize=sanitize)
    (leak,) = by_kind(report, "leak")
    assert leak["symbol"] == "leak_grown" and leak["bytes"] == 50
    assert leak["location"]["line"] == line_of(name, "REALLOC_LEAK")
    (oob,) = by_kind(report, "out-of-bounds")
    assert oob["object"]["size"] == 30
    assert site_line(oob, "alloc_site") == line_of(name, "KREALLOC_OOB")


# -- ksize after free ------------------------------------------------------------------------


def test_ksize_of_a_freed_pointer_is_use_after_free() -> None:
    name = "ksize_after_free"
    report, _ = run(name)
    uaf, bad = report["errors"]
    assert uaf["kind"] == "use-after-free" and uaf["service"] == "KSIZE"
    assert uaf["message"] == "ksize() of a freed 100-byte kmalloc object in a 128-byte slot of kmalloc-128"
    assert uaf["location"]["line"] == line_of(name, "KSIZE_UAF")
    assert site_line(uaf, "alloc_site") == line_of(name, "KSIZE_ALLOC")
    assert site_line(uaf, "free_site") == line_of(name, "KSIZE_FREE")
    # a pointer that was never allocated keeps its kind
    assert bad["kind"] == "bad-hypercall" and bad["location"]["line"] == line_of(name, "KSIZE_BAD")
    assert report["uart"] == "ksize 0 0\n"


# -- kmem_cache_destroy ----------------------------------------------------------------------


def test_cache_destroy_reports_writes_into_its_freed_objects() -> None:
    name = "cache_destroy_poison"
    report, _ = run(name)
    uaf, oob = report["errors"]
    destroy = line_of(name, "DESTROY")
    assert uaf["kind"] == "use-after-free" and uaf["location"]["line"] == destroy
    assert uaf["message"] == (
        "write to a freed object: 1 byte(s) of poison changed at offset 4"
        " of a freed 24-byte cache:items object"
    )
    assert site_line(uaf, "alloc_site") == line_of(name, "DESTROY_ALLOC_A")
    assert site_line(uaf, "free_site") == line_of(name, "DESTROY_FREE_A")
    assert oob["kind"] == "out-of-bounds" and oob["location"]["line"] == destroy
    assert oob["message"] == (
        "red zone after a free object overwritten: 1 byte(s) changed at offset 24"
        " of a freed 24-byte cache:items object"
    )
    assert site_line(oob, "alloc_site") == line_of(name, "DESTROY_ALLOC_B")
    assert site_line(oob, "free_site") == line_of(name, "DESTROY_FREE_B")


def test_cache_destroy_under_kasan_reports_each_write_once() -> None:
    report, _ = run("cache_destroy_poison", sanitize="kasan")
    assert [e["kind"] for e in report["errors"]] == ["use-after-free", "out-of-bounds"]
    assert all("access" in e for e in report["errors"])  # both at the store, none at the destroy


# -- KASAN: one report per bad write ---------------------------------------------------------

ONCE = [("OOB_KMALLOC", "out-of-bounds"), ("OOB_MALLOC", "out-of-bounds"), ("OOB_CACHE", "out-of-bounds"),
        ("OOB_PAGES", "out-of-bounds"), ("UAF_WRITE", "use-after-free")]  # fmt: skip


@pytest.mark.parametrize("variant", ["hook", "compiled"])
def test_kasan_reports_each_bad_write_once_at_the_store(variant: str) -> None:
    name = "overflow_once"
    report, session = run(name if variant == "hook" else f"kasan_{name}", sanitize="kasan")
    assert session.kasan_mode == variant
    # the store is in write_at(); the line that called it is the next frame
    got = [(e["kind"], e["symbol"], e["backtrace"][1]["line"]) for e in report["errors"]]
    assert got == [(kind, "write_at", line_of(name, marker)) for marker, kind in ONCE]
    for e in report["errors"]:
        assert "access" in e and "overwritten" not in e["message"] and "poison" not in e["message"]


def test_poison_mode_still_finds_each_bad_write_at_free() -> None:
    report, _ = run("overflow_once")
    kinds = [e["kind"] for e in report["errors"]]
    assert kinds == [kind for _, kind in ONCE]
    assert all("access" not in e for e in report["errors"])  # found by the checks, not at the store
    assert sum("red zone after the object overwritten" in e["message"] for e in report["errors"]) == 4
