#!/usr/bin/env python
"""A whole Sentinel-2 tile through ``dasksr upscale``: time, memory, tasks and transfers.

Run from the repository root::

    python benchmarks/tile.py --workdir /tmp/tile                  # 10980 x 10980, every config
    python benchmarks/tile.py --size 2048 --workdir /tmp/tile2k    # a quick smoke run
    python benchmarks/tile.py --configs local,workers2 --methods bicubic --json tile.json

The scene is a Sentinel-2 10 m tile's size (``--size``, default 10980 x 10980), 4 uint16 bands
(B02, B03, B04, B08) built from the native shared Sentinel-2 bands (`dasksr.scenes`), mirrored to
size so that it has real texture everywhere, with nodata 0 as the published Sentinel-2 COGs
declare. It is written once as a COG (512 x 512 tiles, DEFLATE, overviews) in ``--workdir`` and
reused by later runs.

Each job is ``dasksr upscale SCENE OUT.zarr --scale 2 --method M`` as a user runs it (a new
process: start-up, imports and cluster start included in its wall time), on these configs:

- ``local``: the default (an embedded LocalCluster, one worker of a thread per core, in-process);
- ``workers2``: ``--workers 2`` (two worker processes of one thread);
- ``cluster``: a ``dask scheduler`` and two ``dask worker --nthreads 1 --no-nanny --preload
  dasksr.worker`` processes started here (before the job's clock starts), each in its own
  working folder and ``TMPDIR``, on local paths;
- ``s3``: the same cluster reading the COG from and writing the Zarr to a local S3 server (moto's
  ``ThreadedMotoServer``, in a process of its own, its objects spilled to disk);
- ``local-load`` and ``workers2-load``: ``local`` and ``workers2`` while a CPU hog
  (``python -c 'while True: pass'``, nice 0) runs beside them.

For each job it reports the wall time and output MPix/s; the peak RSS of every process (client,
scheduler, each worker; sampled every 0.2 s with psutil over the job's process tree and the
cluster's processes); the tasks the scheduler ran and received, and the graph's serialized size;
and the bytes sent between worker processes (each worker's ``transfer_outgoing_bytes_total``).
The scheduler and worker figures come from this file itself, loaded into them as a distributed
preload (``dask_setup``/``dask_teardown`` below), which writes them to a JSON file when they close.

``--model`` also measures what the scaling model of docs/scaling.md needs: the per-task overhead
of each cluster (a graph of trivial tasks), the read, compute and write costs of one block on one
thread, and the fixed cost of a job (a tiny scene through the same command); it then predicts the
measured jobs' wall times and prints the prediction error, and the wall time of a year of
Sentinel-2 over a country on 1, 8 and 64 nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 2**30
MIB = 2**20
SCALE = 2
#: The 10 m bands of Sentinel-2, in file order.
BANDS = ("B02", "B03", "B04", "B08")
TILE = 512
CONFIGS = ("local", "workers2", "cluster", "s3", "local-load", "workers2-load")
METHODS = ("bicubic", "cnn-sensor")
#: The environment variable that names the folder where the preloads write their figures.
STATS_ENV = "DASKSR_TILE_STATS"
THIS = Path(__file__).resolve()

# ----------------------------------------------------------------------------------------------
# The preload: loaded by distributed into the scheduler and every worker of a measured job.
# ----------------------------------------------------------------------------------------------


def _stats_file(kind: str) -> Path | None:
    folder = os.environ.get(STATS_ENV)
    if not folder:
        return None
    return Path(folder) / f"{kind}-{os.getpid()}-{id(object())}.json"


class _SchedulerCounts:
    """Tasks received and run (per key prefix, with their compute seconds) and graph bytes."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.graphs = 0
        self.tasks_received = 0
        self.graph_bytes = 0
        self.prefixes: dict[str, list[float]] = {}  # name: [tasks run, compute seconds]
        self.edges: dict[str, int] = {}  # "task prefix <- dependency prefix": count
        self.first_start = math.inf
        self.last_stop = -math.inf

    def update_graph(self, scheduler: Any, *, tasks: Any = (), **kwargs: Any) -> None:
        from dask.utils import key_split

        self.graphs += 1
        self.tasks_received += len(tasks)
        for key in tasks:
            ts = scheduler.tasks.get(key)
            for dep in ts.dependencies if ts is not None else ():
                edge = f"{key_split(key)} <- {key_split(dep.key)}"
                self.edges[edge] = self.edges.get(edge, 0) + 1

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start != "processing" or finish != "memory":
            return
        from dask.utils import key_split

        entry = self.prefixes.setdefault(key_split(key), [0, 0.0])
        entry[0] += 1
        for span in kwargs.get("startstops", ()):
            if span.get("action") == "compute":
                entry[1] += span["stop"] - span["start"]
                self.first_start = min(self.first_start, span["start"])
                self.last_stop = max(self.last_stop, span["stop"])

    def figures(self) -> dict[str, Any]:
        span = self.last_stop - self.first_start if self.prefixes else 0.0
        return {
            "pid": os.getpid(),
            "graphs": self.graphs,
            "tasks_received": self.tasks_received,
            "tasks_run": int(sum(n for n, _ in self.prefixes.values())),
            "graph_bytes": self.graph_bytes,
            "compute_span_s": span,
            "edges": self.edges,
            "prefixes": {
                k: {"tasks": int(n), "compute_s": s} for k, (n, s) in self.prefixes.items()
            },
        }


def dask_setup(server: Any) -> None:
    """distributed's preload hook: count a scheduler's tasks and the bytes of its graphs."""
    from distributed import Scheduler
    from distributed.diagnostics.plugin import SchedulerPlugin
    from distributed.utils import nbytes

    if not isinstance(server, Scheduler):
        return
    counts = type("TileCounts", (_SchedulerCounts, SchedulerPlugin), {})(server)
    server.add_plugin(counts, name="dasksr-tile-counts")
    original = server.stream_handlers["update-graph"]

    async def update_graph(**msg: Any) -> Any:
        serialized = msg.get("expr_ser")
        if serialized is not None:
            counts.graph_bytes += sum(nbytes(f) for f in serialized.frames)
        return await original(**msg)

    server.stream_handlers["update-graph"] = update_graph


def dask_teardown(server: Any) -> None:
    """distributed's preload hook: write the scheduler's or the worker's figures."""
    from distributed import Scheduler

    if isinstance(server, Scheduler):
        plugin = server.plugins.get("dasksr-tile-counts")
        figures, kind = (plugin.figures() if plugin else {"pid": os.getpid()}), "scheduler"
    else:
        kind = "worker"
        figures = {
            "pid": os.getpid(),
            "name": str(server.name),
            "nthreads": server.state.nthreads,
            "outgoing_bytes": server.transfer_outgoing_bytes_total,
            "outgoing_transfers": server.transfer_outgoing_count_total,
            "incoming_transfers": server.state.transfer_incoming_count_total,
        }
    path = _stats_file(kind)
    if path is not None:
        path.write_text(json.dumps(figures))


# ----------------------------------------------------------------------------------------------
# The scene
# ----------------------------------------------------------------------------------------------


def build_scene(workdir: Path, size: int) -> Path:
    """The ``size`` x ``size`` 4-band COG of mirrored native Sentinel-2 bands, made once."""
    import numpy as np
    import rasterio
    import rasterio.shutil

    from dasksr.scenes import SENTINEL2_NATIVE, read_bands

    path = workdir / f"tile_{size}.tif"
    if path.exists():
        with contextlib.suppress(rasterio.errors.RasterioIOError), rasterio.open(path) as src:
            if src.shape == (size, size) and src.count == len(BANDS):
                return path
    bands, transform = read_bands([SENTINEL2_NATIVE[b] for b in BANDS])
    _, height, width = bands.shape
    plain = workdir / f".tile_{size}.gtiff.tif"
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": len(BANDS),
        "dtype": "uint16", "crs": "EPSG:32618", "transform": transform, "nodata": 0,
        "tiled": True, "blockxsize": TILE, "blockysize": TILE, "compress": "deflate",
        "interleave": "band", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with rasterio.open(plain, "w", **profile) as dst:
        for i, (name, band) in enumerate(zip(BANDS, bands, strict=True), start=1):
            pad = ((0, max(0, size - height)), (0, max(0, size - width)))
            dst.write(np.pad(band, pad, mode="symmetric")[:size, :size], i)
            dst.set_band_description(i, name)
    partial = workdir / f".tile_{size}.partial.tif"
    rasterio.shutil.copy(
        plain, partial, driver="COG", blocksize=TILE, compress="deflate", interleave="band",
        bigtiff="IF_SAFER", num_threads="ALL_CPUS",
    )  # fmt: skip
    plain.unlink()
    partial.replace(path)
    return path


# ----------------------------------------------------------------------------------------------
# Processes: memory sampling, the cluster, the S3 server, the CPU hog
# ----------------------------------------------------------------------------------------------


class Sampler:
    """Peak RSS of every process in the trees of ``roots``, sampled every ``every`` seconds."""

    def __init__(self, roots: list[int], every: float = 0.2) -> None:
        self.roots, self.every = roots, every
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, list[float]] = {}  # pid: [CPU seconds when first seen, last seen]
        self.names: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self.peak_total = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for root in self.roots:
            try:
                procs = [psutil.Process(root)]
                procs += procs[0].children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                    used = times.user + times.system
                    self.cpu.setdefault(p.pid, [used if p.pid in self.roots else 0.0, used])[1] = (
                        used
                    )
                    total += rss
                    self.peaks[p.pid] = max(rss, self.peaks.get(p.pid, 0))
                    if p.pid not in self.names:
                        line = " ".join(p.cmdline())
                        known = [n for n in ("forkserver", "resource_tracker") if n in line]
                        self.names[p.pid] = known[0].replace("_", " ") if known else line[-40:]
                        self.parents[p.pid] = p.ppid()
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(processes: list[subprocess.Popen[Any]]) -> None:
    """SIGTERM each in turn, then kill it if it has not ended in 30 s. A closing scheduler closes
    its workers (which run their preload's teardown then); workers told to stop at the same time
    as their scheduler try to reach it again for a while instead."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def spawn(command: list[str], home: Path, env: dict[str, str]) -> subprocess.Popen[Any]:
    """``command`` run in ``home``, with ``home/tmp`` as its TMPDIR and its output in ``home/log``."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with open(home / "log", "w") as log:  # the child keeps its own copy of the descriptor
        full_env = {**os.environ, **env, "TMPDIR": str(tmp)}
        return subprocess.Popen(command, cwd=home, env=full_env, stdout=log, stderr=log)


@contextlib.contextmanager
def dask_cluster(folder: Path, env: dict[str, str], workers: int = 2) -> Iterator[Any]:
    """A ``dask scheduler`` and ``workers`` one-thread ``dask worker --no-nanny`` processes, each
    in a folder of its own with its own TMPDIR, all loading this file as their preload; yields
    ``(address, pids)``. The workers also preload `dasksr.worker` (dasksr's readers, writers and
    compiled kernels), as a long-running cluster has them loaded before a job comes."""
    dask = str(Path(sys.executable).with_name("dask"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    common = ["--host", "127.0.0.1", "--preload", str(THIS)]
    commands = [
        [dask, "scheduler", "--port", str(port), "--dashboard-address", ":0", *common],
        *(
            [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--name", f"w{i}",
             "--no-dashboard", "--preload", "dasksr.worker", *common]
            for i in range(workers)
        ),
    ]  # fmt: skip
    processes: list[subprocess.Popen[Any]] = []
    try:
        for i, command in enumerate(commands):
            processes.append(spawn(command, folder / f"process-{i}", env))
            if i == 0:
                wait_port(port)
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, [p.pid for p in processes]
    finally:
        stop(processes)


S3_SERVER = """\
import logging, sys
from moto.s3 import models
from moto.server import ThreadedMotoServer

# moto reads a whole object (under its lock) for every GET, then slices the range: each of GDAL's
# range reads of the COG would cost the COG's size. Keep each object's bytes once read, so that
# a range costs its own length, as on S3.
stored = models.FakeKey.value
def value(key):
    cached = key.__dict__.get("_bench_value")
    if cached is None:
        cached = key.__dict__["_bench_value"] = stored.fget(key)
    return cached
def set_value(key, new):
    key.__dict__.pop("_bench_value", None)
    stored.fset(key, new)
models.FakeKey.value = property(value, set_value)

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
sys.stdin.read()
server.stop()
"""


def aws_env(endpoint: str) -> dict[str, str]:
    """The standard AWS settings of a user of ``endpoint``, and nothing from ~/.aws."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[tuple[dict[str, str], subprocess.Popen[Any]]]:
    """moto's S3 server in a process of its own (objects over 64 KiB spill to files in
    ``folder``; an object once read is kept in memory, see `S3_SERVER`); yields the AWS
    settings that reach it and the process."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "TMPDIR": str(folder), "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": "65536"}
    proc = subprocess.Popen(
        [sys.executable, "-c", S3_SERVER, str(port)], stdin=subprocess.PIPE, env=env
    )
    try:
        wait_port(port)
        yield aws_env(f"http://127.0.0.1:{port}"), proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        stop([proc])


def s3fs_of(env: dict[str, str]) -> Any:
    """An s3fs file system on the S3 server of ``env``, uploading as dasksr's writers do."""
    import s3fs

    from dasksr.io.objectstore import storage_options

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]},
        skip_instance_cache=True,
        config_kwargs=storage_options("s3://bucket/key").get("config_kwargs", {}),
    )


@contextlib.contextmanager
def cpu_hog(on: bool) -> Iterator[None]:
    """A process that spins one core (nice 0) while the block runs, when ``on``."""
    if not on:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        stop([hog])


# ----------------------------------------------------------------------------------------------
# One job
# ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One measured ``dasksr upscale`` run and its figures."""

    config: str
    method: str
    size: int
    wall_s: float
    mpix_s: float
    rss_gib: dict[str, float]
    cpu_s: dict[str, float]
    peak_worker_gib: float
    peak_total_gib: float
    tasks_run: int | None
    tasks_received: int | None
    graph_mib: float | None
    transfer_mib: float | None
    transfers: int | None
    output_mib: float
    compute_span_s: float | None
    prefixes: dict[str, Any] = field(default_factory=dict)
    load: str = ""


def output_pixels(size: int) -> int:
    return len(BANDS) * (size * SCALE) ** 2


def read_stats(folder: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    scheduler, workers = None, []
    for f in sorted(folder.glob("*.json")):
        figures = json.loads(f.read_text())
        if f.name.startswith("scheduler-"):
            scheduler = figures
        else:
            workers.append(figures)
    return scheduler, workers


def roles(sampler: Sampler, client: int, scheduler: Any, workers: list[Any], extra: dict[int, str]):
    """A name for each sampled process: client, scheduler, worker NAME, or what it is."""
    worker_pids = {w["pid"]: f"worker {w['name']}" for w in workers}
    scheduler_pid = scheduler["pid"] if scheduler else None
    named = {}
    for pid in sampler.peaks:
        parts = []
        if pid == client:
            parts.append("client")
        if pid == scheduler_pid:
            parts.append("scheduler")
        if pid in worker_pids:
            parts.append(worker_pids[pid])
        if not parts:
            parts.append(extra.get(pid) or sampler.names.get(pid, "?"))
        named[pid] = " + ".join(parts)
    return named, set(worker_pids)


def run_job(
    config: str,
    method: str,
    size: int,
    source: str,
    output: str,
    *,
    args: list[str],
    env: dict[str, str],
    stats: Path,
    cluster: Any = None,
    extra: dict[int, str] | None = None,
) -> Job:
    """Run ``dasksr upscale`` once as a new process and measure it; remove its output.

    ``cluster`` is a context manager that yields ``(address, pids)`` of a cluster of one's own
    (its figures are written when it closes, after the job), or None for an embedded one.
    """
    shutil.rmtree(stats, ignore_errors=True)
    stats.mkdir(parents=True)
    preload = json.dumps([str(THIS)])
    env = {
        **os.environ, **env, STATS_ENV: str(stats),
        "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": preload,
        "DASK_DISTRIBUTED__WORKER__PRELOAD": preload,
    }  # fmt: skip
    exe = str(Path(sys.executable).with_name("dasksr"))
    command = [exe, "upscale", source, output, "--scale", str(SCALE), "--method", method]
    command += ["--no-progress", *args]
    with cluster or contextlib.nullcontext(("", [])) as (address, pids):
        command += ["--scheduler", address] if address else []
        load = os.getloadavg()
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with Sampler([proc.pid, *pids, *(extra or {})]) as sampler:
            _, err = proc.communicate()
            wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{err.decode()}")
    return _figures(config, method, size, wall, sampler, proc.pid, stats, output, extra, load)


def _figures(config, method, size, wall, sampler, client, stats, output, extra, load) -> Job:
    scheduler, workers = read_stats(stats)
    named, worker_pids = roles(sampler, client, scheduler, workers, extra or {})
    rss = {named[pid]: round(peak / GIB, 3) for pid, peak in sorted(sampler.peaks.items())}
    in_process = scheduler is not None and not worker_pids and scheduler["pid"] == client
    worker_peak = [sampler.peaks[p] for p in worker_pids if p in sampler.peaks]
    if in_process or not worker_peak:  # the worker is the client's process
        worker_peak = [sampler.peaks.get(client, 0)]
    sent = [w["outgoing_bytes"] for w in workers]
    return Job(
        config=config,
        method=method,
        size=size,
        wall_s=round(wall, 3),
        mpix_s=round(output_pixels(size) / 1e6 / wall, 2),
        rss_gib=rss,
        cpu_s={named[p]: round(b - a, 1) for p, (a, b) in sorted(sampler.cpu.items())},
        peak_worker_gib=round(max(worker_peak) / GIB, 3),
        peak_total_gib=round(sampler.peak_total / GIB, 3),
        tasks_run=scheduler["tasks_run"] if scheduler else None,
        tasks_received=scheduler["tasks_received"] if scheduler else None,
        graph_mib=round(scheduler["graph_bytes"] / MIB, 3) if scheduler else None,
        transfer_mib=round(sum(sent) / MIB, 2) if workers else None,
        transfers=sum(w["outgoing_transfers"] for w in workers) if workers else None,
        output_mib=round(stored_bytes(output) / MIB, 1),
        compute_span_s=round(scheduler["compute_span_s"], 3) if scheduler else None,
        prefixes=scheduler["prefixes"] if scheduler else {},
        load=" ".join(f"{x:.2f}" for x in load),
    )


_S3: dict[str, Any] = {}


def stored_bytes(output: str) -> int:
    """The bytes of the output store (local or on the S3 server); then remove it."""
    if output.startswith("s3://"):
        fs = _S3["fs"]
        size = int(fs.du(output))
        fs.rm(output, recursive=True)
        return size
    path = Path(output)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path)
    return size


# ----------------------------------------------------------------------------------------------
# The model's measurements: per-task overhead, per-block costs, fixed cost
# ----------------------------------------------------------------------------------------------


def _noop(i: int) -> int:
    return i


def task_overhead(client: Any, tasks: int) -> float:
    """Seconds per trivial task on ``client``'s cluster: submitted, scheduled, run, gathered."""
    from distributed import wait

    wait(client.map(_noop, range(200), pure=False))  # warm the workers
    start = time.perf_counter()
    futures = client.map(_noop, range(tasks), pure=False)
    wait(futures)
    del futures
    return (time.perf_counter() - start) / tasks


def local_overheads(tasks: int) -> dict[str, float]:
    """`task_overhead` of the embedded clusters of ``local`` and ``workers2``."""
    from distributed import Client, LocalCluster

    out = {}
    for name, workers, threads, processes in (("local", 1, 2, False), ("workers2", 2, 1, True)):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=threads, processes=processes,
                dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            ) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            out[name] = task_overhead(client, tasks)
    return out


def block_costs(
    source: str, fs: Any, root: str, method: str, chunk: int, samples: int, gdal: dict[str, str]
) -> dict[str, float]:
    """Read, compute and write seconds of one ``chunk`` x ``chunk`` block on one thread (medians
    over ``samples`` blocks spread over the scene).

    Read: the block and its halo from ``source`` (GDAL, as dasksr's reader; ``gdal`` its options).
    Compute: the method's kernel on it, from a worker thread (a network then runs one intra-op
    thread, as in a worker thread of a 2-core cluster). Write: its fine block encoded as
    dasksr's Zarr chunks are (Blosc zstd 1, bit-shuffle), one object per band, put under
    ``root`` of the fsspec file system ``fs`` (local disk or S3).
    """
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import numcodecs
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from dasksr.methods import get_method

    m = get_method(method)
    halo = m.halo(SCALE)
    codec = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE)
    times: dict[str, list[float]] = {"read": [], "compute": [], "write": []}
    with (
        rasterio.Env(**gdal),
        rasterio.open(source) as src,
        ThreadPoolExecutor(1) as pool,
        dask.config.set(num_workers=2),
    ):
        n = max(1, src.width // chunk)
        for k in range(samples):
            bi, bj = (k * 7 + 1) % n, (k * 3 + 2) % n
            edge = chunk + 2 * halo
            t0 = time.perf_counter()
            window = Window(bj * chunk - halo, bi * chunk - halo, edge, edge)
            block = src.read(window=window, boundless=True, fill_value=0)
            t1 = time.perf_counter()
            fine = pool.submit(m.block, block, SCALE, nodata=0).result()
            t2 = time.perf_counter()
            fs.makedirs(f"{root}/b{k}", exist_ok=True)
            for b, plane in enumerate(np.ascontiguousarray(fine)):
                fs.pipe_file(f"{root}/b{k}/{b}", codec.encode(plane))
            t3 = time.perf_counter()
            for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[name].append(seconds)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(root, recursive=True)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

#: The assumptions of the country-scale prediction (docs/scaling.md explains each).
COUNTRY_KM2 = 100_000
TILE_KM2 = 100 * 100  # a 109.8 km tile with its overlap covers about 100 x 100 km of new ground
REVISIT_DAYS = 5
CLEAR_FRACTION = 0.3  # scenes clear enough to be worth upscaling
NODE_CORES = 16
NODE_S3_BYTES_S = 1.0e9  # 10 Gbit/s of S3 traffic per node, less protocol overhead
NODES = (1, 8, 64)


def scene_count() -> float:
    """Tile-scenes to upscale in a year over the country."""
    return COUNTRY_KM2 / TILE_KM2 * (365 / REVISIT_DAYS) * CLEAR_FRACTION


def predict_year(
    block_s: float, tasks_per_block: float, overhead: float, io_bytes: float, fixed: float,
    chunk: int, size: int = 10980,
) -> dict[int, dict[str, float]]:  # fmt: skip
    """Hours of a year over the country on each of `NODES` nodes of `NODE_CORES` cores.

    The work is the largest of four limits: the cores (every block's core-seconds), one
    scheduler (every task's overhead, one after the other), the nodes' network (every scene's
    input and output bytes) and the clients (each job's fixed cost, one job per node at a time).
    """
    scenes = scene_count()
    blocks = (size / chunk) ** 2 * scenes
    out = {}
    for nodes in NODES:
        limits = {
            "cpu_h": blocks * block_s / (nodes * NODE_CORES),
            "scheduler_h": blocks * tasks_per_block * overhead,
            "network_h": scenes * io_bytes / (nodes * NODE_S3_BYTES_S),
            "clients_h": scenes * fixed / nodes,
        }
        out[nodes] = {k: v / 3600 for k, v in limits.items()}
        out[nodes]["hours"] = max(limits.values()) / 3600
    return out


def balanced_chunk(
    block_s: float, chunk: int, tasks_per_block: float, overhead: float, cores: int
) -> int:
    """The chunk edge at which one scheduler just keeps ``cores`` cores busy: the block's
    core-seconds (scaled by area from ``chunk``) = cores x tasks per block x per-task overhead."""
    return int(chunk * math.sqrt(cores * tasks_per_block * overhead / block_s))


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(jobs: list[Job]) -> str:
    head = (
        "| config | method | wall s | output MPix/s | peak RSS GiB by process | peak worker GiB "
        "| tasks run / received | graph MiB | sent by workers MiB (transfers) | output MiB | load |"
    )
    lines = [head, "|" + "---|" * 11]
    for j in jobs:
        rss = ", ".join(f"{k} {v:.2f}" for k, v in j.rss_gib.items())
        tasks = "-" if j.tasks_run is None else f"{j.tasks_run} / {j.tasks_received}"
        moved = "-" if j.transfer_mib is None else f"{j.transfer_mib:.1f} ({j.transfers})"
        lines.append(
            f"| {j.config} | {j.method} | {j.wall_s:.1f} | {j.mpix_s:.1f} | {rss} | "
            f"{j.peak_worker_gib:.2f} | {tasks} | {fmt(j.graph_mib)} | {moved} | "
            f"{j.output_mib:.0f} | {j.load} |"
        )
    return "\n".join(lines)


def median_job(runs: list[Job]) -> Job:
    """The run of median wall time (its other figures are that run's)."""
    return sorted(runs, key=lambda j: j.wall_s)[(len(runs) - 1) // 2]


def targets(jobs: list[Job]) -> str:
    by = {(j.config, j.method): j for j in jobs}
    rows = ["| target | method | figure | met |", "|---|---|---|---|"]
    for method in {j.method for j in jobs}:
        worst = max((j.peak_worker_gib for j in jobs if j.method == method), default=None)
        if worst is not None:
            rows.append(
                f"| peak worker RSS <= 2 GiB | {method} | {worst:.2f} GiB | {'yes' if worst <= 2 else '**no**'} |"
            )
        for name, a, b, goal in (
            ("s3 / cluster on local disk >= 0.8", "s3", "cluster", 0.8),
            ("s3 / workers2 (local disk) >= 0.8", "s3", "workers2", 0.8),
            ("workers2 / local >= 0.85", "workers2", "local", 0.85),
            ("workers2-load / local-load >= 0.85", "workers2-load", "local-load", 0.85),
        ):
            if (a, method) in by and (b, method) in by:
                ratio = by[a, method].mpix_s / by[b, method].mpix_s
                rows.append(
                    f"| {name} | {method} | {ratio:.2f}x | {'yes' if ratio >= goal else '**no**'} |"
                )
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="scene edge (default 10980)")
    ap.add_argument("--workdir", type=Path, help="where the scene is kept (default: a temp dir)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help="methods to run")
    ap.add_argument(
        "--repeats", type=int, default=1, help="runs per job; medians reported (default 1)"
    )
    ap.add_argument("--chunks", type=int, help="dasksr's --chunks (default: its own, ~1024)")
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    ap.add_argument("--model", action="store_true", help="also measure the scaling model's costs")
    ap.add_argument(
        "--overhead-tasks", type=int, default=2000, help="trivial tasks per overhead run"
    )
    ap.add_argument(
        "--calibrate", type=int, default=4096, help="scene edge of the model's calibration jobs"
    )
    ap.add_argument("--block-samples", type=int, default=5, help="blocks timed per block cost")
    args = ap.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configs {sorted(unknown)}: choose from {','.join(CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="dasksr_tile_"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        return run(args, workdir, stack)


def commit() -> str:
    """The checkout's commit, with ``+`` when it has changes."""
    git = ["git", "-C", str(THIS.parent)]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", str(THIS.parent.parent / "dasksr")],
            capture_output=True,
            text=True,
        ).stdout
        return head.stdout.strip() + ("+" if dirty.strip() else "")
    return "?"


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"load average before: {load_before}; {os.cpu_count()} cores; dasksr at {commit()}",
        flush=True,
    )
    start = time.perf_counter()
    scene = build_scene(workdir, args.size)
    took = time.perf_counter() - start
    print(
        f"scene {scene} ({scene.stat().st_size / MIB:.0f} MiB), ready in {took:.0f} s", flush=True
    )
    bench = Bench(args, workdir, scene)
    if "s3" in args.configs:
        s3_env, s3_proc = stack.enter_context(s3_server(workdir / "s3"))
        fs = _S3["fs"] = s3fs_of(s3_env)
        fs.mkdir(BUCKET)
        bench.s3_env, bench.extra = s3_env, {s3_proc.pid: "S3 server"}
    jobs: list[Job] = []
    for method in args.methods:
        for config in args.configs:
            runs = []
            for _ in range(args.repeats):
                runs.append(bench.job(config, method))
                j = runs[-1]
                print(
                    f"{config} {method}: {j.wall_s:.1f} s, {j.mpix_s:.1f} MPix/s, "
                    f"worker {j.peak_worker_gib:.2f} GiB, load {j.load}",
                    flush=True,
                )
            jobs.append(median_job(runs))
    result: dict[str, Any] = {
        "size": args.size, "repeats": args.repeats, "cores": os.cpu_count(),
        "load_before": load_before, "commit": commit(),
        "jobs": [asdict(j) for j in jobs],
    }  # fmt: skip
    print(
        f"\n{args.size} x {args.size} x {len(BANDS)} uint16 -> x{SCALE} Zarr, "
        f"median of {args.repeats} run(s) each\n\n{table(jobs)}\n\n{targets(jobs)}",
        flush=True,
    )
    if args.model:
        result["model"] = model(args, bench, jobs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


BUCKET = "tile-bench"


class Bench:
    """The measured jobs' settings: where the scene is, and the S3 server when there is one."""

    def __init__(self, args: argparse.Namespace, workdir: Path, scene: Path) -> None:
        self.args, self.workdir, self.scene = args, workdir, scene
        self.s3_env: dict[str, str] = {}
        self.extra: dict[int, str] = {}

    def job(
        self, config: str, method: str, scene: Path | None = None, flags: list[str] = ()
    ) -> Job:
        scene = scene or self.scene
        base = config.removesuffix("-load")
        flags = [*flags, *(["--chunks", str(self.args.chunks)] if self.args.chunks else [])]
        flags += ["--workers", "2"] if base == "workers2" else []
        source, output = str(scene), str(self.workdir / "out.zarr")
        env: dict[str, str] = {}
        extra = {}
        if base == "s3":
            source, output = f"s3://{BUCKET}/{scene.name}", f"s3://{BUCKET}/out.zarr"
            env, extra = self.s3_env, self.extra
            if not _S3["fs"].exists(source):
                _S3["fs"].put_file(str(scene), source)
        cluster = None
        if base in ("cluster", "s3"):
            shutil.rmtree(self.workdir / "cluster", ignore_errors=True)
            stats = {STATS_ENV: str(self.workdir / "stats")}
            cluster = dask_cluster(self.workdir / "cluster", {**env, **stats})
        with cpu_hog(config.endswith("-load")):
            return run_job(
                config, method, size_of(scene), source, output, args=flags, env=env,
                stats=self.workdir / "stats", cluster=cluster, extra=extra,
            )  # fmt: skip


def size_of(scene: Path) -> int:
    import rasterio

    with rasterio.open(scene) as src:
        return int(src.width)


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process's environment while the block runs."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def model(args: argparse.Namespace, bench: Bench, jobs: list[Job]) -> dict[str, Any]:
    """The scaling model's measured costs, its predictions of ``jobs`` and of a year.

    Calibrated on other jobs than the ones it predicts: a one-block scene (the fixed cost) and a
    ``--calibrate`` scene (the cost of a block: every task's compute seconds over its blocks).
    """
    from distributed import Client

    from dasksr.io.objectstore import gdal_options, remote_fs

    chunk = args.chunks or 1024
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"chunk": chunk, "calibrate": args.calibrate}
    # 1. Per-task overhead: wall seconds per trivial task on each kind of cluster.
    overhead = local_overheads(args.overhead_tasks)
    with dask_cluster(bench.workdir / "overhead", {}) as (address, _), Client(address) as client:
        overhead["cluster"] = task_overhead(client, args.overhead_tasks)
    overhead["s3"] = overhead["cluster"]
    out["overhead_s"] = overhead
    print(f"\nper-task overhead ms: { {k: round(v * 1e3, 3) for k, v in overhead.items()} }")
    # 2. Fixed cost and the cost of a block, per config and method, from smaller jobs.
    tiny, small = build_scene(bench.workdir, 256), build_scene(bench.workdir, args.calibrate)
    configs = [c for c in ("local", "workers2", "cluster", "s3") if c in args.configs]
    fixed, block, per_block = {}, {}, {}
    for config in configs:
        flags = ["--workers", "1"] if config == "local" else []
        fixed[config] = bench.job(config, "bicubic", tiny, flags).wall_s
        for method in args.methods:
            cal = bench.job(config, method, small, flags)
            blocks = (args.calibrate / chunk) ** 2
            block[config, method] = sum(p["compute_s"] for p in cal.prefixes.values()) / blocks
            per_block[config, method] = (cal.tasks_run or 0) / math.ceil(
                args.calibrate / chunk
            ) ** 2
    out["fixed_s"] = fixed
    out["block_core_s"] = {f"{c} {m}": v for (c, m), v in block.items()}
    out["tasks_per_block"] = {f"{c} {m}": v for (c, m), v in per_block.items()}
    print(f"fixed cost s: {fixed}")
    # 3. What a block's time is made of, on one thread: read, compute, write; disk and S3.
    parts: dict[str, dict[str, dict[str, float]]] = {}
    local = (str(bench.scene), *remote_fs(str(bench.workdir / "blocks")))
    for method in args.methods:
        parts[method] = {"local": block_costs(*local, method, chunk, args.block_samples, {})}
        if bench.s3_env:
            with environ(bench.s3_env):
                fs, root = remote_fs(f"s3://{BUCKET}/blocks")
                source = f"/vsis3/{BUCKET}/{bench.scene.name}"
                parts[method]["s3"] = block_costs(
                    source, fs, root, method, chunk, args.block_samples, gdal_options()
                )
    out["block_parts_s"] = parts
    print("\n| method | store | read s | compute s | write s | block task core-s |")
    print("|---|---|---|---|---|---|")
    for method, by in parts.items():
        for where, p in by.items():
            task = block.get(("s3" if where == "s3" else "local", method))
            print(
                f"| {method} | {where} | {p['read']:.3f} | {p['compute']:.3f} | {p['write']:.3f} | {fmt(task, 3)} |"
            )
    # 4. The measured jobs predicted: fixed + blocks x block cost / cores + tasks x overhead.
    rows = []
    for j in jobs:
        key = (j.config.removesuffix("-load"), j.method)
        if j.config.endswith("-load") or key not in block:
            continue
        blocks = (j.size / chunk) ** 2
        predicted = (
            fixed[key[0]] + blocks * block[key] / cores + (j.tasks_run or 0) * overhead[key[0]]
        )
        rows.append({"config": j.config, "method": j.method, "measured_s": j.wall_s,
                     "predicted_s": round(predicted, 2),
                     "error": round(predicted / j.wall_s - 1, 3)})  # fmt: skip
    out["validation"] = rows
    print("\n| config | method | measured s | predicted s | error |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['method']} | {r['measured_s']:.1f} | {r['predicted_s']:.1f} | {r['error']:+.0%} |"
        )
    # 5. A year over the country, per method, on 1, 8 and 64 nodes (the s3 config's costs).
    out["year"] = {}
    ref = next((c for c in ("s3", "cluster", "workers2", "local") if c in configs), None)
    print(f"\ntile-scenes a year: {scene_count():.0f} (costs of the {ref} config)")
    print(
        "\n| method | block core-s | tasks / block | balanced chunk at 16 / 1024 cores "
        "| nodes | CPU h | scheduler h | network h | clients h | predicted h |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    scene_in = scene_bytes(bench.scene)
    for method in args.methods:
        if ref is None:
            break
        job = next((j for j in jobs if j.method == method and j.config == ref), None)
        # Bytes a whole tile reads and writes (the measured scene's, scaled by its area).
        io_bytes = (scene_in + (job.output_mib * MIB if job else 0.0)) * (10980 / args.size) ** 2
        c, k = block[ref, method], per_block[ref, method]
        year = predict_year(c, k, overhead[ref], io_bytes, fixed[ref], chunk, 10980)
        balance = [balanced_chunk(c, chunk, k, overhead[ref], n) for n in (16, 1024)]
        out["year"][method] = {"block_core_s": c, "tasks_per_block": k, "io_bytes": io_bytes,
                               "balanced_chunk": balance, "nodes": year}  # fmt: skip
        for nodes, y in year.items():
            print(f"| {method} | {c:.3f} | {k:.1f} | {balance[0]} / {balance[1]} | {nodes} "
                  f"| {y['cpu_h']:.2f} | {y['scheduler_h']:.2f} | {y['network_h']:.2f} "
                  f"| {y['clients_h']:.2f} | {y['hours']:.2f} |")  # fmt: skip
    return out


def scene_bytes(scene: Path) -> int:
    """The stored bytes of the scene's full-resolution tiles (what a job reads; no overviews)."""
    import rasterio

    with rasterio.open(scene) as src:
        return sum(
            src.block_size(b, i, j) for b in src.indexes for (i, j), _ in src.block_windows(b)
        )


if __name__ == "__main__":
    main()
