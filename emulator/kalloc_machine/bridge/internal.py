"""kalloc's own crashes as report entries: kind `internal`, never the firmware's fault.

A Python exception that is not a `KallocError` (firmware misuse, reported as its own
kind) and escapes kalloc's code while the firmware runs — inside a hypercall service,
the KASAN access hook, the DMA engine's check, the commit meter, the end-of-run checks —
is a bug in kalloc. `internal_error()` turns it into an `InternalError` (severity error;
the run ends, exit status 64) naming the exception (type and message), the last frames
of kalloc's code it went through, and what kalloc was doing: the hypercall (service
name and number) or another phrase.

The report holds no host paths: a frame is named by its module (`kalloc.allocator`),
line and function, the same on every machine (docs/abi.md: the JSON is a function of
the inputs).

Invariants:
 1. Only exceptions that are not KallocError become `internal`; a KallocError keeps
    its own kind (callers catch KallocError first).
 2. `fields` stays JSON-able: strings and ints only.
"""

from __future__ import annotations

from typing import Any

from kalloc.errors import InternalError

FRAMES_KEPT = 6  # the innermost frames of kalloc's own code: where it broke and the way there
_OWN = ("kalloc", "kalloc_machine")


def _own(module: str) -> bool:
    return module.split(".", 1)[0] in _OWN


def kalloc_frames(exc: BaseException) -> list[dict[str, Any]]:
    """The innermost FRAMES_KEPT frames of kalloc's own modules in exc's traceback."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        module = str(tb.tb_frame.f_globals.get("__name__", "?"))
        if _own(module):
            frames.append({"module": module, "line": tb.tb_lineno, "function": code.co_name})
        tb = tb.tb_next
    return frames[-FRAMES_KEPT:]


def internal_error(
    exc: BaseException,
    during: str,
    *,
    service: tuple[int, str] | None = None,
    site: int | None = None,
) -> InternalError:
    """The report entry for `exc`, raised while kalloc was doing `during` (module docstring).

    service: (number, name) of the hypercall being served, if any; site: the caller's
    stack-depot handle, so the report names the firmware's call site.
    """
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    fields: dict[str, Any] = {
        "during": during,
        "exception": {"type": type(exc).__name__, "message": str(exc), "frames": kalloc_frames(exc)},
    }
    if service is not None:
        fields["service"] = service[1]
        fields["service_number"] = service[0]
    message = f"kalloc's own error (not the firmware's) while {during}: {what}"
    return InternalError(message, site=site, **fields)


def hypercall_phrase(number: int, name: str) -> str:
    """How `during` names a hypercall: 'serving hypercall KMALLOC (32)'."""
    return f"serving hypercall {name} ({number})"
