"""`kalloc boards`: list the shipped boards (name and description, one a line)."""

from __future__ import annotations

import click


@click.command("boards")
def boards_cmd() -> None:
    """List the shipped boards."""
    from kalloc_machine.board import list_boards
    from kalloc_machine.report.console import report_console

    console = report_console()  # one board a line, even piped
    for name, description in list_boards():
        console.print(f"{name:<10} {description}", markup=False)
