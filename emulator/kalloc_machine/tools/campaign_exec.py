"""Running a campaign's jobs: in this process, on a local process pool, or on a Dask cluster.

    execute(jobs, on_result, workers=N)                 N == 1: here, one after another
                                                        N > 1:  a ProcessPoolExecutor of N processes
    execute(jobs, on_result, scheduler="tcp://h:8786")  an existing Dask distributed cluster
    execute(jobs, on_result, dask=True, workers=N)      a LocalCluster of N workers, for this campaign

Every job is independent (kalloc_machine.tools.campaign `run_job`: a restored snapshot
or a fresh Session), so they run in any order; `on_result` is called in this process as each one finishes, and
the campaign orders the results itself (campaign.Campaign, invariant 1). Dask is an
optional extra (`pip install 'kalloc[cluster]'`), imported only here and only when asked
for; missing, it is `MissingDask` (the command line makes it one line, status 2). On a
cluster the files a run reads travel with the tasks (`ship()`): the firmware ELF, a board
file, suppressions files, each written on the worker under its own name (the report
names the firmware by its file name, so the reports are the same bytes).

A library caller that runs a pool (workers > 1) from a script needs the usual
`if __name__ == "__main__":` guard: the workers start from a fork server, which
imports the main module as spawn does.

Invariants:
 1. `execute` returns True when every job ran, False when the wall-clock `deadline`
    (time.monotonic()) stopped it: no job starts after it; jobs under way finish.
 2. Ctrl-C (KeyboardInterrupt) cancels the jobs not started and propagates; the workers
    ignore SIGINT, so the only line about it is the command's own.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import multiprocessing
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kalloc_machine.tools.campaign import Job, JobResult, run_job

INSTALL_HINT = "--scheduler/--dask need Dask, which is not installed: pip install 'kalloc[cluster]'"

Blobs = dict[str, tuple[str, bytes]]  # option path -> (file name, bytes)


class MissingDask(RuntimeError):
    """Dask (dask.distributed) is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def execute(jobs: Sequence[Job], on_result: Callable[[JobResult], None], *, workers: int = 1,
            scheduler: str | None = None, dask: bool = False,
            deadline: float | None = None) -> bool:  # fmt: skip
    """Run every job, calling `on_result` with each result as it comes (module docstring)."""
    if scheduler or dask:
        return _on_dask(jobs, on_result, scheduler, workers, deadline)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            if _expired(deadline):
                return False
            on_result(run_job(job))
        return True
    return _on_pool(jobs, on_result, workers, deadline)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent alone answers Ctrl-C (invariant 2)


def _context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that imported the machine once (about 1 s for the pool, against
    1-2 s per spawned worker); never a fork of this process, which may run a progress thread."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__.rsplit(".", 1)[0] + ".campaign"])
    return context


def _on_pool(jobs: Sequence[Job], on_result: Callable[[JobResult], None], workers: int,
             deadline: float | None) -> bool:  # fmt: skip
    """At most two jobs per worker in flight (a wait walks every pending future's lock), and
    Ctrl-C taken only between waits (invariant 2): a KeyboardInterrupt raised inside
    `cf.wait` while it holds the futures' locks would leave one held, and the pool's
    shutdown would then wait on it for ever."""
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_ignore_sigint)
    todo = iter(jobs)
    with _sigint_deferred() as interrupted:
        try:
            pending = {pool.submit(run_job, job) for job in itertools.islice(todo, 2 * workers)}
            while pending:
                timeout = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
                done, pending = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                if interrupted():
                    raise KeyboardInterrupt
                for future in done:
                    on_result(future.result())
                if _expired(deadline):
                    return False
                pending |= {pool.submit(run_job, job) for job in itertools.islice(todo, len(done))}
            return True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_POLL = 0.1  # seconds between looks at a deferred Ctrl-C


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[Callable[[], bool]]:
    """SIGINT sets a flag the caller polls, in the main thread; elsewhere Python's own handling."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: seen.append(1))
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


# -- Dask ------------------------------------------------------------------------------------------


def ship(jobs: Sequence[Job]) -> Blobs:
    """The files the jobs read (firmware, board file, suppressions), by the path the options give."""
    blobs: Blobs = {}
    for job in jobs:
        o = job.options
        for path in (o.firmware, o.board, *o.suppress):
            if path and path not in blobs and Path(path).is_file():
                blobs[path] = (Path(path).name, Path(path).read_bytes())
    return blobs


def run_shipped(job: Job, blobs: Blobs) -> JobResult:
    """`run_job` on a worker: the shipped files written locally first, under their own names."""
    local = {path: str(_materialize(name, data)) for path, (name, data) in blobs.items()}
    o = job.options
    options = dataclasses.replace(o, firmware=local.get(o.firmware or "", o.firmware),
                                  board=local.get(o.board, o.board),
                                  suppress=tuple(local.get(s, s) for s in o.suppress))  # fmt: skip
    result = run_job(dataclasses.replace(job, options=options))
    name = str(o.firmware)  # the signatures name the firmware as the campaign was given it
    bugs = tuple(dataclasses.replace(b, firmware=name) for b in result.bugs)
    return dataclasses.replace(result, bugs=bugs)


def _materialize(name: str, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "kalloc-campaign" / digest / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{time.monotonic_ns()}")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: two tasks on one worker may race
    return path


def _on_dask(jobs: Sequence[Job], on_result: Callable[[JobResult], None], scheduler: str | None,
             workers: int, deadline: float | None) -> bool:  # fmt: skip
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MissingDask() from None
    cluster: Any = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=":0")  # any free port: never "port 8787 in use" warnings
        client = Client(cluster)
    try:
        blobs = client.scatter(ship(jobs), broadcast=True)
        futures = client.map(run_shipped, list(jobs), blobs=blobs, pure=False)
        for future in as_completed(futures):
            on_result(future.result())
            if _expired(deadline):
                client.cancel(futures)
                return False
        return True
    finally:
        client.close()
        if cluster is not None:
            # a busy machine's workers may take over 4 s to exit: the nanny then kills them and logs it
            logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
            cluster.close()
