"""Where the work runs: an embedded LocalCluster by default, or an existing ``dask scheduler``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import Any

import dask

from dasksr.errors import SchedulerError

__all__ = ["connect", "compute", "active_client", "SMALL_JOB_PIXELS", "THREADS"]

#: Output pixels (all bands) up to which a job runs on Dask's threaded scheduler in this process
#: instead of an embedded LocalCluster, when neither a scheduler nor a worker count is given.
#: Importing distributed and starting and closing the cluster cost 0.3 to 0.7 s, which jobs up to
#: a 2048 x 2048 x 3 input at x2 did not win back; at 4096 x 4096 x 3 the cluster was faster
#: (benchmarks/startup.py --parts rule; docs/cli.md has the measurements).
SMALL_JOB_PIXELS = 3 * 4096 * 4096

#: The ``address`` that asks for Dask's threaded scheduler in this process (no cluster).
THREADS = "threads"


@contextmanager
def connect(
    address: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    output_pixels: int | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> Iterator[Any]:
    """Start an embedded LocalCluster, or connect to the scheduler at ``address``; yield the client.

    The embedded default is one worker with a thread per core in this process (no data is copied
    between processes); ``workers=N`` starts N worker processes sharing the cores. With
    ``address="threads"``, or when ``output_pixels`` is at most `SMALL_JOB_PIXELS` and neither
    ``address`` nor ``workers`` is given, no cluster starts: the job runs on Dask's threaded
    scheduler in this process and None is yielded. ``on_start(client)`` is called once an embedded
    cluster has started (the command line prints its dashboard address).
    """
    if address == THREADS or (
        address is None
        and workers is None
        and output_pixels is not None
        and output_pixels <= SMALL_JOB_PIXELS
    ):
        from concurrent.futures import ThreadPoolExecutor

        from dask.threaded import get as threaded_get

        pool = ThreadPoolExecutor(threads_per_worker or os.cpu_count() or 1)
        try:
            # The function, not the name "threads": for a name, dask imports distributed
            # (0.25 s) to look for a client first.
            with dask.config.set(scheduler=threaded_get, pool=pool):
                yield None
        finally:
            # A failed job leaves its other running blocks behind: they end here, not while the
            # interpreter exits (zarr's abandoned writes would print tracebacks then).
            pool.shutdown(wait=True, cancel_futures=True)
        return

    from distributed import Client, LocalCluster

    if address is not None:
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(
                f"cannot reach the dask scheduler at {address!r} ({exc.__class__.__name__}): "
                "check that `dask scheduler` runs there and the address is tcp://HOST:PORT"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    cores = os.cpu_count() or 1
    n = max(1, workers or 1)
    threads = threads_per_worker or max(1, cores // n)
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=threads,
            processes=n > 1,
            dashboard_address=None,
            # The scheduler's HTTP server still starts without a dashboard, by default on
            # port 8787; when that is taken (another cluster) it warns on stderr. Any free port.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=memory_limit or "auto",
            # A failed task is reported once, as the job's error; worker logs would add lines.
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        if on_start is not None:
            on_start(client)
        yield client


class _AbandonedGather(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for distributed's per-future waits.

    An interrupted ``client.gather`` leaves one such task per future, each failing with
    distributed's internal ``AllExit``: thousands of tracebacks on stderr after a Ctrl-C.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "AllExit"


def _quiet_abandoned_gathers() -> None:
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _AbandonedGather) for f in log.filters):
        log.addFilter(_AbandonedGather())


def active_client() -> Any | None:
    """The distributed client that dask would use now, or None for the local schedulers."""
    if "distributed" not in sys.modules:
        return None  # no client can exist, and importing distributed costs a quarter second
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    return client if dask.config.get("scheduler", None) in (None, "dask.distributed") else None


def compute(collections: Sequence[Any], *, progress: bool = False) -> list[Any]:
    """Compute dask ``collections`` on the active scheduler, optionally with a progress bar.

    Only the (small) results travel to the caller: writers return a few bytes per block. When
    the job is interrupted (Ctrl-C), its tasks are cancelled before the interruption goes on.
    """
    client = active_client()
    if client is not None:
        futures = client.compute(list(collections))
        try:
            if progress:
                from distributed import progress as show_progress

                # The bar goes to stderr (distributed writes to stdout): stdout keeps the result.
                with redirect_stdout(sys.stderr):
                    show_progress(futures)
                    print(flush=True)
            return list(client.gather(futures))
        except KeyboardInterrupt:
            _quiet_abandoned_gathers()
            client.cancel(futures)
            raise
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            return list(dask.compute(*collections))
    return list(dask.compute(*collections))
