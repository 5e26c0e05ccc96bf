"""Where an iteration of the churn goes, in host instructions (issue 14): run under callgrind.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=cg.N \
        python -m kalloc_machine.tools.churnsplit N [fastpath|kalloc|tlsf]

runs `benchchurn.run_churn` for N iterations with each part of the machine called through a
distinct C-level builtin, so `callgrind_annotate --inclusive=yes cg.N` names each part's
inclusive cost (take the difference of two N: boot and exit cancel):

    _operator_call      FastPath.drain (the ring replay)
    context_run         the bridge's service of a hypercall (the Python slab work per call)
    _CallPythonObject   every ctypes callback: the doorbell's (mmio_write_wrapper, drains
                        and services included) and the TLB fills' (the rest)
    cpu_exec_riscv32    the emulation, the callbacks above included (outside it: the run
                        loop's slice boundaries, their drains included)

Measurement only: the wrappers change no result.
"""

from __future__ import annotations

import contextvars
import operator
import sys
from typing import Any

from kalloc_machine.tools import benchchurn


def _through(via: Any, fn: Any) -> Any:
    return lambda *args: via(fn, *args)


def main(argv: list[str]) -> None:
    iters = int(argv[0])
    churn = benchchurn.CHURNS[argv[1] if len(argv) > 1 else "fastpath"]
    original = benchchurn.Session

    def session(opts: Any) -> Any:
        s = original(opts)
        ctx = contextvars.copy_context()
        if s.fastpath is not None:
            fp = s.fastpath
            fp.drain = _through(operator.call, fp.drain)  # type: ignore[method-assign]
            fp.serve = _through(ctx.run, fp.serve)
        else:
            m = s.machine
            m.on_hypercall = _through(ctx.run, m.on_hypercall)
        return s

    benchchurn.Session = session  # type: ignore[misc,assignment]
    print(benchchurn.run_churn(churn, iters, "default"))


if __name__ == "__main__":
    main(sys.argv[1:])
