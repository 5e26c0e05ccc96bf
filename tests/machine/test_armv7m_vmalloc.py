"""vmalloc on the Cortex-M machine: no MMU on the part, kalloc's software translation all the same.

The choice issue 16 asked for (docs/user-guide.md, "A Cortex-M board"): vmalloc stays
available on stm32f4 and its areas are guarded as on RV32; the same C sources give the same
report kinds and facts on both machines.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kalloc.cli import main


def _report(board: str, name: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["run", "--board", board, f"tests/{name}", "--json", "-", "-q"])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize(
    "name, fact",
    [
        ("vmalloc_overflow", "8192 bytes past the start of the 8192-byte vmalloc area at 0xc0000000"),
        ("vmalloc_uaf", "a vmalloc area that was freed with vfree() (a use after vfree)"),
    ],
)
def test_vmalloc_areas_are_guarded_on_both_machines(name: str, fact: str) -> None:
    for board in ("default", "stm32f4"):
        status, report = _report(board, name)
        assert status == 65, board
        (err,) = report["errors"]
        assert err["kind"] == "page-fault" and fact in err["message"], (board, err["message"])
    assert report["isa"] == "armv7m"
