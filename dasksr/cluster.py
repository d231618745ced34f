"""Where the work runs: an embedded LocalCluster by default, or an existing ``dask scheduler``."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, redirect_stdout, suppress
from typing import Any

import dask

from dasksr.errors import InvalidArgumentError, OutputError, SchedulerError

__all__ = [
    "connect",
    "compute",
    "active_client",
    "starting",
    "check_scheduler",
    "check_workers_write",
    "SMALL_JOB_PIXELS",
    "THREADS",
]

#: Output pixels (all bands) up to which a job runs on Dask's threaded scheduler in this process
#: instead of an embedded LocalCluster, when neither a scheduler nor a worker count is given.
#: Importing distributed and starting and closing the cluster cost 0.3 to 0.7 s, which jobs up to
#: an 8192 x 8192 x 3 input at x2 did not win back (benchmarks/startup.py --parts rule; docs/cli.md
#: has the measurements; larger jobs were not compared).
SMALL_JOB_PIXELS = 3 * 16384 * 16384

#: The ``address`` that asks for Dask's threaded scheduler in this process (no cluster).
THREADS = "threads"

#: The protocols of a scheduler address that distributed's clients speak.
_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")

#: Seconds that a scheduler address has to accept a connection before the job starts.
PROBE_TIMEOUT = 3.0

#: Dask settings of the embedded cluster's worker processes. distributed's Nanny starts them with
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap threshold at 128 KiB: every
#: block-sized array is then mapped and zero-filled afresh, and a worker process ran the tasks of
#: the 8192 x 8192 benchmark scene 2.3x slower than the in-process worker (0.143 s against 0.063 s
#: a task on one thread). Unset, glibc keeps its adaptive thresholds; a value in the user's
#: environment still wins (docs/cluster.md says how to do the same on a cluster of one's own).
WORKER_PROCESS_CONFIG: dict[str, Any] = {
    "distributed.worker.daemon": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}

#: Modules that the embedded cluster's worker processes import once, in the fork server they are
#: forked from (where the platform has one), instead of each process in its first task
#: (:mod:`dasksr.worker`). Forked processes also end without the interpreter's teardown: closing
#: two workers took 0.05 s instead of 0.48 s with spawned ones.
WORKER_PRELOAD = ("distributed", "dasksr.worker")

#: Clusters being started by `starting`, by their settings, until `connect` takes them.
_early: dict[tuple[Any, ...], Future[Any]] = {}
_early_lock = threading.Lock()


def _settings(
    workers: int | None, threads_per_worker: int | None, memory_limit: str | None
) -> tuple[int, int, str]:
    """Worker processes, threads each and memory limit of the embedded cluster."""
    cores = os.cpu_count() or 1
    n = max(1, workers or 1)
    return n, threads_per_worker or max(1, cores // n), memory_limit or "auto"


def _local_cluster(n: int, threads: int, memory_limit: str) -> Any:
    """Start the embedded LocalCluster: ``n`` workers of ``threads`` threads; processes if n > 1."""
    from distributed import LocalCluster

    config = dict(WORKER_PROCESS_CONFIG)
    if n > 1 and _fork_server():
        config["distributed.worker.multiprocessing-method"] = "forkserver"
        _preload_fork_server()
    with dask.config.set(config):
        return LocalCluster(
            n_workers=n,
            threads_per_worker=threads,
            processes=n > 1,
            dashboard_address=None,
            # The scheduler's HTTP server still starts without a dashboard, by default on
            # port 8787; when that is taken (another cluster) it warns on stderr. Any free port.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=memory_limit,
            # A failed task is reported once, as the job's error; worker logs would add lines.
            silence_logs=logging.CRITICAL,
        )


def _start_fork_server() -> None:
    """Give the fork server `WORKER_PRELOAD` and start it now: its imports run in its own process."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))
    forkserver.ensure_running()


def _preload_fork_server() -> None:
    """Start the fork server with `WORKER_PRELOAD`, and keep distributed's list from replacing it.

    distributed sets its own list the first time it makes a fork server, after importing in this
    process every package that it knows of (pandas among them: 0.3 s and more); its flag says that
    a list is set already.
    """
    import distributed.utils

    _start_fork_server()
    distributed.utils._forkserver_preload_set = True


def _fork_server() -> bool:
    """Whether worker processes are forked from a fork server here (POSIX), not spawned."""
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods()


def check_scheduler(address: str, *, shown: str = "--scheduler") -> str:
    """Return ``address`` if it is `THREADS` or ``PROTOCOL://HOST:PORT`` (``HOST:PORT`` is TCP);
    otherwise raise `InvalidArgumentError` naming it as ``shown``. Nothing is contacted."""
    if address == THREADS:
        return address
    protocol, sep, rest = address.partition("://")
    if not sep:
        protocol, rest = "tcp", address
    host, colon, port = rest.rpartition(":")
    if protocol in _PROTOCOLS and colon and host and port.isdigit() and 0 < int(port) < 65536:
        return address
    hint = " (did you mean threads?)" if address.startswith("thread") else ""
    accepted = f"{THREADS} for this process, or the address of a running `dask scheduler`"
    raise InvalidArgumentError(
        f"{shown} {address!r} is not a scheduler{hint}: give {accepted} as tcp://HOST:PORT"
    )


def _unreachable(address: str, exc: BaseException) -> SchedulerError:
    return SchedulerError(
        f"cannot reach the dask scheduler at {address!r} ({exc.__class__.__name__}): "
        "check that `dask scheduler` runs there and the address is tcp://HOST:PORT"
    )


def probe_scheduler(address: str) -> None:
    """Raise `SchedulerError` if the TCP scheduler at ``address`` does not accept a connection
    within `PROBE_TIMEOUT` seconds (distributed's client would retry for its whole timeout)."""
    import socket

    check_scheduler(address, shown="scheduler")
    protocol, sep, rest = address.partition("://")
    if sep and protocol != "tcp":
        return
    host, _, port = (rest if sep else address).rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        raise _unreachable(address, exc) from None


@contextmanager
def starting(address: str | None = None, **settings: Any) -> Iterator[None]:
    """Start the worker processes that `connect` will start for these settings, in the background.

    ``settings`` are `connect`'s ``workers``, ``threads_per_worker`` and ``memory_limit``.

    The command line opens the input and builds the graph meanwhile, on one core, while the
    processes start on the other ones; `connect` with the same settings inside the block takes the
    cluster. One not taken (the job failed first) is closed when the block ends. Nothing starts
    early for a scheduler address, or for the in-process worker (it starts in 0.1 s); a scheduler
    address is checked to accept connections instead (`probe_scheduler`), before any work.
    """
    workers = settings.get("workers")
    if address is not None and address != THREADS:
        probe_scheduler(address)
    if address is not None or workers is None or workers < 2:
        yield
        return
    key = _settings(workers, settings.get("threads_per_worker"), settings.get("memory_limit"))
    if _fork_server():
        _start_fork_server()
    future: Future[Any] = Future()

    def start() -> None:
        try:
            future.set_result(_local_cluster(*key))
        except BaseException as exc:  # handed to connect, which raises it
            future.set_exception(exc)

    with _early_lock:
        _early[key] = future
    threading.Thread(target=start, name="dasksr-cluster-start", daemon=True).start()
    try:
        yield
    finally:
        with _early_lock:
            left = _early.pop(key, None)
        if left is not None:
            with suppress(Exception):  # one that did not start has nothing to close
                left.result().close()


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
    if address is not None:
        check_scheduler(address, shown="scheduler")
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

    from distributed import Client

    if address is not None:
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise _unreachable(address, exc) from None
        try:
            yield client
        finally:
            client.close()
        return
    key = _settings(workers, threads_per_worker, memory_limit)
    with _early_lock:
        early = _early.pop(key, None)
    cluster = early.result() if early is not None else _local_cluster(*key)
    with cluster, Client(cluster) as client:
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


def check_workers_write(folder: os.PathLike[str] | str, *, shown: str) -> None:
    """Check that every worker of a remote scheduler can write in the local ``folder``.

    Workers of a cluster that this process did not start may run on other machines, where the
    output's folder is another one, or none. This process writes a probe file there; each worker
    (`distributed.Client.run`) must find it and write its own beside it. If one cannot,
    `OutputError` names it and suggests an object-store URL, before any task has run. An embedded
    cluster (one started by this process) shares its disk and is not probed.
    """
    import uuid

    client = active_client()
    if client is None or getattr(client, "cluster", None) is not None:
        return
    token = uuid.uuid4().hex
    probe = os.path.join(os.fspath(folder), f".dasksr-probe-{token}")
    try:
        with open(probe, "w") as f:
            f.write(token)
        answers = client.run(_probe_folder, os.fspath(folder), token)
    finally:
        with suppress(OSError):
            os.remove(probe)
    failed = {address: why for address, why in sorted(answers.items()) if why}
    if failed:
        address, why = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise OutputError(
            f"output {shown!r}: the worker at {address}{more} cannot write its folder "
            f"{os.fspath(folder)!r} ({why}): the workers do not share this disk; write to "
            "object storage instead, e.g. s3://BUCKET/NAME.zarr"
        )


def _probe_folder(folder: str, token: str) -> str | None:
    """On a worker: None when ``folder`` holds the client's probe and takes a file, else why not."""
    import socket

    probe = os.path.join(folder, f".dasksr-probe-{token}")
    try:
        with open(probe) as f:
            if f.read() != token:
                return "the client's probe file differs there"
    except OSError as exc:
        return f"the client's probe file is not there: {exc.strerror or exc}"
    mine = f"{probe}-{socket.gethostname()}-{os.getpid()}"
    try:
        with open(mine, "w") as f:
            f.write(token)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        with suppress(OSError):
            os.remove(mine)
    return None
