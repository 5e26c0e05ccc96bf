"""Hypothesis properties and state machines over the allocator's public API: pure Python, no machine.

Each runs a modest number of examples by default (a few seconds); the long runs are
marked `slow` (`pytest -m slow tests/properties`).
"""
