"""The live-object table: every object any API handed out and has not taken back.

(Step 1 of issue 11: the table gets its public name; its record type and the
lookup and free-diagnosis paths move here next.)

Data structure:
    LiveTable: dict[addr, record]   the start address of every live object

Invariants:
 1. Every key is the first byte of exactly one live object.
"""

from __future__ import annotations


class LiveTable(dict):  # type: ignore[type-arg]
    """{addr: record} of every live object."""
