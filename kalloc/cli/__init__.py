"""The `kalloc` command line: the one place in kalloc/ that composes the allocator and the machine.

One module per command, each a click command added to the `main` group here:

    run       kalloc.cli.run       boot a board, run firmware, report
    replay    kalloc.cli.replay    replay allocation traces through a heap policy
    explore   kalloc.cli.explore   search interrupt schedules / failure points, shrink
    campaign  kalloc.cli.campaign  fail every allocation / raise every interrupt point, dedupe bugs
    bench     kalloc.cli.bench     the performance figures
    boards    kalloc.cli.boards    list the shipped boards
    sdk       kalloc.cli.sdk       where the firmware SDK is installed
    lab       kalloc.cli.lab       grade a student's allocator (malloc lab) in firmware

kalloc.cli.options holds the option groups they share (the run options are defined
once in kalloc_machine.tools.options, with the pytest plugin's). Options, report
format and exit codes are contracts (docs/abi.md, docs/user-guide.md).

Invariants:
 1. No Python traceback for bad input or misbehaving firmware: bad board/ELF/trace →
    one line on stderr and status 3; usage errors → status 2 (click's own).
 2. `--json -` writes only the JSON to stdout (text reports go to stderr).
 3. Ctrl-C is one line, `kalloc: interrupted`, and status 130: while a command runs
    (`_Commands`), and before, while Python imports the command line (the console
    script is kalloc_machine.script, outside this package, so it catches that too).
"""

from __future__ import annotations

from typing import Any

import click
from kalloc_machine.ctrlc import interrupted

from kalloc.cli import bench, boards, campaign, explore, replay, run, sdk
from kalloc.cli import lab as lab_cli


class _Commands(click.Group):
    """The command group: Ctrl-C while a command runs (outside `kalloc run`'s own handling) is
    `kalloc: interrupted` and status 130, not click's "Aborted!" and 1 (invariant 3)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="kalloc")
def main() -> None:
    """kalloc: a kernel-style allocator for firmware on an emulated RISC-V machine."""


for _command in (run.run_cmd, bench.bench_cmd, replay.replay_cmd, explore.explore_cmd, boards.boards_cmd,
                 sdk.sdk_cmd, campaign.campaign_cmd):  # fmt: skip
    main.add_command(_command)
main.add_command(lab_cli.lab_cmd)  # kalloc lab (issue 17)

if __name__ == "__main__":
    main()
