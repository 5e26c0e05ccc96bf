"""A page fault's offset and text name the exact byte the instruction read, not its page.

`vmalloc_uaf.c` reads `p[100]` (byte 400) of an 8 KiB area after vfree(); the translation hook
sees the fill of page 0xc0000000 and the decoder finds the exact address 0xc0000190. The
report's `offset` and its "N bytes past the start" must be 400, on both machines (before, they
came from the fill page: 0).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kalloc.cli import main


@pytest.mark.parametrize("board", ["default", "stm32f4"])
def test_use_after_vfree_names_the_byte_read(board: str) -> None:
    result = CliRunner().invoke(main, ["run", "--board", board, "tests/vmalloc_uaf", "--json", "-", "-q"])
    (err,) = json.loads(result.stdout)["errors"]
    assert err["kind"] == "page-fault"
    assert err["access"]["addr"] == 0xC0000190
    assert err["offset"] == 400
    assert "read at 0xc0000190" in err["message"]
    assert "400 bytes past the start of the 8192-byte vmalloc area at 0xc0000000" in err["message"]
