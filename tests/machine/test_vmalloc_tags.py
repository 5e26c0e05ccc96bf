"""vmalloc areas carry the tag pushed when they were created (issue 18), end to end from firmware.

firmware/tests/tags_vmalloc.c: an untagged 5000-byte area; under "textures" areas of 300000 and
200000 bytes with a "scratch" area of 10000 nested between them; the scratch area freed while
"net" is pushed; a 1500-byte kmalloc under "net"; marks 1 and 2; everything freed."""

from __future__ import annotations

ELF = "firmware/build/tests/tags_vmalloc.elf"


def _rows(rep):
    return {r["tag"]: r for r in rep["tags"]["table"]}


def test_an_area_is_one_object_of_its_requested_size_under_its_creation_tag(cli_report):
    status, rep = cli_report(ELF)
    assert status == 0 and rep["errors"] == []
    rows = _rows(rep)
    assert list(rows) == ["net", "scratch", "textures", "untagged"]
    # requested bytes, one object per area (not 74 + 49 pages of 4096 bytes)
    assert rows["textures"]["high_water_bytes"] == 500000 and rows["textures"]["allocations"] == 2
    assert rows["scratch"]["high_water_bytes"] == 10000 and rows["scratch"]["allocations"] == 1
    # freed while "net" was pushed: it left "scratch"; net holds only its kmalloc object
    assert rows["net"]["high_water_bytes"] == 1500 and rows["net"]["allocations"] == 1
    # made before the first push: counted as untagged from the start, never lost from the totals
    assert rows["untagged"]["high_water_bytes"] == 5000
    assert rows["textures"]["high_water"]["mark"] == 1 and rows["net"]["high_water"]["mark"] == 2
    assert all(r["live_bytes"] == 0 and r["live_objects"] == 0 for r in rows.values())


def test_a_vmalloc_area_over_budget_names_its_vmalloc_call(cli_report, tmp_path):
    b = tmp_path / "budgets.toml"
    b.write_text('textures = "400KiB"\n')
    status, rep = cli_report(ELF, "--budgets", str(b))
    assert status == 0
    (err,) = rep["errors"]
    assert err["kind"] == "over-budget" and err["severity"] == "warning"
    assert (err["tag"], err["size"], err["live_bytes"], err["budget_bytes"]) == ("textures", 200000, 500000,
                                                                                 409600)  # fmt: skip
    top = err["backtrace"][0]
    assert top["symbol"] == "main" and top["file"].endswith("tags_vmalloc.c") and top["line"] == 28


def test_strict_budgets_make_the_area_an_error(cli_report, tmp_path):
    b = tmp_path / "budgets.toml"
    b.write_text('scratch = 4096\n')
    status, rep = cli_report(ELF, "--budgets", str(b), "--budgets-strict")
    assert status == 64
    (err,) = rep["errors"]
    assert err["kind"] == "over-budget" and err["severity"] == "error" and err["size"] == 10000
