"""`kalloc: interrupted`, status 130: what the command line does on Ctrl-C outside a run's report.

Imported by the console script (kalloc_machine.script) before anything else, and by the
command group (kalloc.cli): it imports nothing at import time but `sys`, and installs
nothing (importing kalloc.cli in a test process leaves its SIGINT handler alone).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time (kalloc_machine.script)
if TYPE_CHECKING:
    from typing import NoReturn

EXIT_INTERRUPTED = 130


def interrupted() -> NoReturn:
    """`kalloc: interrupted` on stderr, status 130 (a second Ctrl-C meanwhile is ignored)."""
    try:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, KeyboardInterrupt):  # not the main thread, or a second Ctrl-C already
        pass
    try:
        sys.stderr.write("kalloc: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the status still says it
        pass
    raise SystemExit(EXIT_INTERRUPTED)
