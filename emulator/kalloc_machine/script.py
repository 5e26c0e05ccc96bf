"""The `kalloc` console script (pyproject `[project.scripts]`) and `python -m kalloc.cli`.

Ctrl-C at any time is one line on stderr, `kalloc: interrupted`, and status 130, never a
Python traceback. The script lives here, outside the `kalloc` package, because a script
inside it would run `import kalloc` before any code of ours: the allocator, then the
command line (click, rich, Unicorn, capstone, pyelftools) take most of a second to import,
and a Ctrl-C then used to print a traceback.

Importing this module imports nothing heavy (not even `typing`) and, when SIGINT has
Python's default handler, replaces it with one that only records the signal: the rest
of pip's wrapper (`sys.argv[0] = re.sub(...)`) and the command line's imports then run
undisturbed, and `main()` says `kalloc: interrupted` once they are done. Before the
command runs, Python's handler is back (a run installs its own: hostlimits.py). A
SIGINT that was ignored when Python started stays ignored. Once a command runs, the
command group (kalloc.cli) catches Ctrl-C the same way (not click's "Aborted!" and
status 1); `kalloc run` reports an interrupted run itself (the report so far, status
130). What no code of ours can cover: Python's own start-up and the wrapper's first
line, `import re` (a few milliseconds). Only the console script and `python -m
kalloc.cli` import this module (it changes the SIGINT handler when imported).
"""

from __future__ import annotations

from kalloc_machine.ctrlc import interrupted

TYPE_CHECKING = False  # typing is not imported at run time: ~10 ms, a window for Ctrl-C
if TYPE_CHECKING:
    from types import FrameType

_seen: list[int] = []  # SIGINTs recorded while the command line was imported


def _record(signum: int, _frame: FrameType | None) -> None:
    _seen.append(signum)


def _defer_sigint() -> bool:
    """Record SIGINT instead of raising, if Python's default handler is in place. True if so."""
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False  # ignored (a background job), or someone else's handler: left alone
    signal.signal(signal.SIGINT, _record)
    return True


def _restore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


try:
    _DEFERRED = _defer_sigint()
except (ValueError, KeyboardInterrupt):  # not the main thread; or Ctrl-C already
    _DEFERRED = False


def main() -> None:
    """Import the command line and run it; Ctrl-C anywhere is `interrupted()`."""
    try:
        from kalloc.cli import main as cli

        if _DEFERRED:
            _restore_sigint()
        if _seen:
            interrupted()
        cli(prog_name="kalloc")
    except KeyboardInterrupt:
        interrupted()


if __name__ == "__main__":
    main()
