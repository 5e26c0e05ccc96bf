"""`kalloc bench` times every span on two clocks (tools/benchkit.py `Span`): this thread's CPU time,
the figure's value, and the wall clock beside it. Time the process did not run (another process
had the core, here a sleep standing in for it) is in the wall clock only.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner
from kalloc_machine.machine import Machine
from kalloc_machine.tools.benchkit import Figure, Span, Stopwatch, interleaved, median, run_bench

from kalloc.cli import main


def test_a_span_computes_each_clock_from_that_clocks_values_only() -> None:
    a, b = Span(wall=4.0, cpu=2.0), Span(wall=1.0, cpu=0.5)
    assert (a - b) / 2 == Span(1.5, 0.75) and a / b == Span(4.0, 4.0) and 8 / a == Span(2.0, 4.0)
    assert 2 * a + 1 == Span(9.0, 5.0) and (b - a).positive is False and b.positive
    assert median([Span(1, 30), Span(2, 10), Span(3, 20)]) == Span(2, 20)  # each clock's own median
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_time_off_the_cpu_is_in_the_wall_clock_only() -> None:
    watch = Stopwatch()
    time.sleep(0.2)
    span = watch.elapsed()
    assert span.wall >= 0.2 and span.cpu < 0.05


def test_a_bench_run_whose_process_is_descheduled_keeps_its_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = Machine.run

    def descheduled(self: Machine) -> Any:  # another process takes the core for 0.3 s mid-run
        time.sleep(0.3)
        return real_run(self)

    monkeypatch.setattr(Machine, "run", descheduled)
    loaded, _ = run_bench("compute", 2000, board="default", sanitize="off")
    assert loaded.wall - loaded.cpu >= 0.29  # the 0.3 s off the CPU is in the wall clock only
    assert loaded.cpu < 0.3  # the run's own CPU time (~10 ms)


def test_figures_take_the_cpu_clock_and_keep_the_wall_clock_beside() -> None:
    fig = Figure.timed("x / y", Span(wall=0.7, cpu=0.9), "×", "≥ 0.8", lambda v: v >= 0.8)
    assert (fig.value, fig.wall, fig.ok) == (0.9, 0.7, True)
    assert Figure.timed("n/a", None, "×").value is None
    assert interleaved({"a": lambda: Span(1.0, 2.0)}, 3, lambda: None) == {"a": Span(1.0, 2.0)}


def test_the_bench_json_and_table_show_both_clocks(tmp_path: Any) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--quick", "--only", "emulation", "--json", str(out)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["settings"]["clock"].startswith("cpu")
    for f in data["figures"]:
        assert f["value"] is not None and f["wall"] is not None, f["name"]
    assert "wall clock" in res.output and "CPU time" in res.output
