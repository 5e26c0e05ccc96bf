"""Leaks split as Valgrind's Memcheck splits them: definitely vs indirectly lost, still reachable apart.

firmware/tests/leak_lost_kinds.c leaks a 4-node list, a 7-node tree and a two-object
cycle, and keeps a 2-node list a global points to (kalloc/kmemleak.py, report/leaks.py).
"""

from __future__ import annotations

from typing import Any

from kalloc_machine.report.json_report import dumps
from kalloc_machine.sdk import prebuilt
from kalloc_machine.session import RunOptions
from kalloc_machine.tools.harness import Target


def _leaks(report: dict[str, Any], symbol: str | None = None) -> list[dict[str, Any]]:
    return [e for e in report["errors"] if e["kind"] == "leak" and symbol in (None, e["symbol"])]


def _by_class(entries: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for e in entries:
        n, b = out.get(e["lost"], (0, 0))
        out[e["lost"]] = (n + e["count"], b + e["bytes"])
    return out


def test_lost_list_head_definitely_and_its_nodes_indirectly_in_separate_entries(run_fw):
    report = run_fw("tests/leak_lost_kinds").report
    head, rest = _leaks(report, "list_node")  # one site, two classes: two entries, definite first
    assert (head["lost"], head["count"], head["bytes"]) == ("definitely", 1, 24)
    assert (rest["lost"], rest["count"], rest["bytes"]) == ("indirectly", 3, 72)
    assert head["backtrace"][1]["symbol"] == "leak_list"
    assert "definitely lost" in head["message"] and "indirectly lost" in rest["message"]


def test_lost_tree_root_is_the_one_definite_node(run_fw):
    report = run_fw("tests/leak_lost_kinds").report
    assert _by_class(_leaks(report, "tree_node")) == {"definitely": (1, 40), "indirectly": (6, 240)}
    (root,) = [e for e in _leaks(report, "tree_node") if e["lost"] == "definitely"]
    assert root["backtrace"][1]["symbol"] == "leak_tree"  # the root, not a recursive child


def test_pure_cycle_one_definite_one_indirect(run_fw):
    """Memcheck's rule (docs/user-guide.md, Leaks): the cycle's lowest-address object is definite."""
    report = run_fw("tests/leak_lost_kinds").report
    cycle = _leaks(report, "cycle_a") + _leaks(report, "cycle_b")
    assert sorted((e["lost"], e["count"], e["bytes"]) for e in cycle) == [("definitely", 1, 56),
                                                                         ("indirectly", 1, 56)]  # fmt: skip
    (definite,) = [e for e in cycle if e["lost"] == "definitely"]
    (other,) = [e for e in cycle if e["lost"] == "indirectly"]
    assert definite["addr"] < other["addr"]


def test_leaks_section_totals_by_class_and_still_reachable_apart(run_fw):
    outcome = run_fw("tests/leak_lost_kinds")
    leaks = outcome.report["leaks"]
    assert leaks["definitely_lost"] == {"count": 3, "bytes": 24 + 40 + 56}
    assert leaks["indirectly_lost"] == {"count": 10, "bytes": 72 + 240 + 56}
    assert (leaks["count"], leaks["bytes"]) == (13, 120 + 368)
    assert leaks["still_reachable"] == {"count": 2, "bytes": 48}  # kept_list: not an error
    assert all(e["lost"] in ("definitely", "indirectly") and e["count"] >= 1 and e["bytes"] > 0
               for e in _leaks(outcome.report))  # fmt: skip
    assert outcome.exit_status == 64


def test_every_leak_entry_carries_lost_count_bytes_even_a_single_site(run_fw):
    report = run_fw("tests/leak").report
    (leak,) = _leaks(report)
    assert (leak["lost"], leak["count"], leak["bytes"]) == ("definitely", 3, 24 + 32 + 40)
    assert report["leaks"]["indirectly_lost"] == {"count": 0, "bytes": 0}


def test_text_says_definitely_and_indirectly_lost_and_the_leak_summary():
    target = Target(RunOptions(firmware=str(prebuilt("tests/leak_lost_kinds"))))
    target.finish()
    text = target.text()
    assert "allocated here: definitely lost at exit" in text
    assert "allocated here: indirectly lost at exit" in text
    assert (
        "leak summary: definitely lost 120 bytes in 3 object(s), indirectly lost 368 bytes in 10 "
        "object(s); still reachable 48 bytes in 2 object(s) (not errors)"
    ) in text


def test_the_split_is_deterministic(run_fw):
    a = dumps(run_fw("tests/leak_lost_kinds").report)
    assert a == dumps(run_fw("tests/leak_lost_kinds").report)
