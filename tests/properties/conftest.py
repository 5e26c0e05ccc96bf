"""Hypothesis properties and state machines over the allocator's public API: pure Python, no machine.

The state machines run through the `run_machine` fixture: a modest number of examples by
default (a few seconds each), many more when the test is marked `slow`
(`pytest -m slow tests/properties`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

FAST = settings(max_examples=40, stateful_step_count=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
LONG = settings(FAST, max_examples=600, stateful_step_count=60)


@pytest.fixture
def run_machine(request: pytest.FixtureRequest) -> Callable[[type[RuleBasedStateMachine]], None]:
    """run_machine(MachineClass): run it as a test, FAST or (marked slow) LONG."""
    chosen = LONG if request.node.get_closest_marker("slow") else FAST

    def run(machine: type[RuleBasedStateMachine]) -> None:
        run_state_machine_as_test(machine, settings=chosen)

    return run
