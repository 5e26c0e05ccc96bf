"""`kalloc sdk`: print the firmware SDK directory, for out-of-tree builds (`make -C "$(kalloc sdk)"`)."""

from __future__ import annotations

import click


@click.command("sdk")
def sdk_cmd() -> None:
    """Print the firmware SDK directory (for `make -C "$(kalloc sdk)" APP=... OUT=...`)."""
    from kalloc_machine.sdk import sdk_dir

    click.echo(str(sdk_dir()))
