"""The `kalloc` console script (pyproject `[project.scripts]`) and `python -m kalloc.cli`.

Ctrl-C at any time is one line on stderr, `kalloc: interrupted`, and status 130, never a
Python traceback. The script lives here, outside the `kalloc` package, because a script
inside it would run `import kalloc` before any code of ours: the allocator, then the
command line (click, rich, Unicorn, capstone, pyelftools) take most of a second to import,
and a Ctrl-C then used to print a traceback. This module imports nothing until `main()`
is inside its `try`. Once a command runs, the command group (kalloc.cli) catches Ctrl-C
the same way (click's own "Aborted!" and status 1 are not used); `kalloc run` reports an
interrupted run itself (the report so far, status 130: hostlimits.py).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import NoReturn

EXIT_INTERRUPTED = 130


def interrupted() -> NoReturn:
    """`kalloc: interrupted` on stderr, status 130 (a second Ctrl-C meanwhile is ignored)."""
    with contextlib.suppress(ValueError):  # not the main thread: nothing to protect
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stderr.write("kalloc: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the status still says it
        pass
    raise SystemExit(EXIT_INTERRUPTED)


def main() -> None:
    """Import the command line and run it; Ctrl-C anywhere is `interrupted()`."""
    try:
        from kalloc.cli import main as cli

        cli(prog_name="kalloc")
    except KeyboardInterrupt:
        interrupted()


if __name__ == "__main__":
    main()
