"""Jobs on a real ``dask scheduler`` with two ``dask worker`` processes, started here on 127.0.0.1.

The workers run in another folder than the tests, as on a cluster: relative paths given to the
command line must still reach the right files.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr

import dasksr
from dasksr.cli import main
from dasksr.cluster import connect

WORKERS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dask_cluster(folder: Path, workers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A ``dask scheduler`` and ``workers`` single-thread ``dask worker`` processes on 127.0.0.1,
    run in ``folder``; yields the address and the worker processes, and stops them all."""
    from distributed import Client

    executable = Path(sys.executable).with_name("dask")
    assert executable.exists(), f"the dask console script is not installed beside {sys.executable}"
    folder.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    host = ["--host", "127.0.0.1", "--no-dashboard"]
    commands = [
        [
            str(executable),
            "scheduler",
            "--port",
            address.rsplit(":", 1)[1],
            *host,
            "--dashboard-address",
            f"127.0.0.1:{free_port()}",
        ],
        *(
            [
                str(executable),
                "worker",
                address,
                *host,
                "--nthreads",
                "1",
                "--no-nanny",
                "--memory-limit",
                "0",
                "--name",
                f"worker-{i}",
                "--local-directory",
                str(folder / f"worker-{i}"),
            ]
            for i in range(workers)
        ),
    ]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, command in enumerate(commands):
            log = open(folder / f"process-{i}.log", "wb")  # noqa: SIM115  (closed below)
            logs.append(log)
            processes.append(
                subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
            )
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, processes[1:]
    finally:
        stop_cluster(processes)
        for log in logs:
            log.close()


def stop_cluster(processes: list[subprocess.Popen[Any]]) -> None:
    """Stop a ``dask scheduler`` (first) and its workers. The scheduler goes first, alone: a
    closing scheduler closes its workers, while workers told to stop with it try to reach it
    again for 30 s (the killed-worker test took 38 s so)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a ``dask scheduler`` with two single-thread workers; stopped afterwards."""
    with dask_cluster(tmp_path_factory.mktemp("cluster"), WORKERS) as (address, _):
        yield address


def executed_tasks(address: str) -> int:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(counts) == WORKERS
    return int(sum(counts.values()))


def threaded(source: Path, output: Path, **options: Any) -> Path:
    """The same job as the command line's, on the threaded scheduler of this process."""
    fine = dasksr.open_raster(source, chunks=128).sr.upscale(scale=3, method="lanczos")
    with dask.config.set(scheduler="threads"):
        if output.suffix == ".zarr":
            return dasksr.to_zarr(fine, output, **options)
        return dasksr.to_geotiff(fine, output, **options)


@pytest.mark.parametrize("ext", [".zarr", ".tif"])
def test_job_on_a_scheduler_equals_the_threaded_result(
    scheduler: str,
    tmp_path: Path,
    make_geotiff: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ext: str,
) -> None:
    raster = make_geotiff(
        tmp_path / "scene.tif", dtype="int16", nodata=-9999, height=300, width=330, tile=64
    )
    reference = threaded(raster.path, tmp_path / f"reference{ext}")
    monkeypatch.chdir(tmp_path)  # relative paths; the workers run in another folder
    before = executed_tasks(scheduler)
    status = main(
        [
            "upscale",
            "scene.tif",
            f"out{ext}",
            "--scale",
            "3",
            "--method",
            "lanczos",
            "--chunks",
            "128",
            "--scheduler",
            scheduler,
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    assert executed_tasks(scheduler) >= before + 9  # 3 x 3 blocks were written by the workers
    out = tmp_path / f"out{ext}"
    if ext == ".zarr":
        got, want = (
            xr.open_zarr(out, mask_and_scale=False)["data"],
            xr.open_zarr(reference, mask_and_scale=False)["data"],
        )
        assert got.dtype == want.dtype == np.int16
        np.testing.assert_array_equal(got.values, want.values)
        xr.testing.assert_identical(got.compute(), want.compute())
    else:
        with rasterio.open(out) as got_tif, rasterio.open(reference) as want_tif:
            assert got_tif.profile == want_tif.profile
            assert got_tif.descriptions == want_tif.descriptions
            np.testing.assert_array_equal(got_tif.read(), want_tif.read())
    assert {p.name for p in tmp_path.iterdir()} == {"scene.tif", f"reference{ext}", f"out{ext}"}


def test_progress_bar_on_a_scheduler(
    scheduler: str, tmp_path: Path, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.zarr"
    status = main(
        [
            "upscale",
            str(uint16_tif.path),
            str(out),
            "--chunks",
            "128",
            "--scheduler",
            scheduler,
            "--progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0
    assert "100% Completed" in captured.err
    assert captured.out.startswith("wrote ")
    np.testing.assert_array_equal(
        xr.open_zarr(out, mask_and_scale=False)["data"].values,
        dasksr.upscale(uint16_tif.data, scale=2, nodata=0),
    )


def test_damaged_input_on_a_scheduler_is_one_line(
    scheduler: str,
    tmp_path: Path,
    damaged_geotiff: Callable[[Path], Any],
    names_damaged_tile: Callable[[str], bool],
    capsys: pytest.CaptureFixture[str],
) -> None:
    raster = damaged_geotiff(tmp_path / "damaged.tif")
    status = main(
        [
            "upscale",
            str(raster.path),
            str(tmp_path / "out.tif"),
            "--chunks",
            "128",
            "--scheduler",
            scheduler,
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dasksr: error: input ") and names_damaged_tile(err)
    assert {p.name for p in tmp_path.iterdir()} == {"damaged.tif"}


def test_a_worker_killed_mid_job_leaves_the_output_unchanged(
    tmp_path: Path, make_geotiff: Callable[..., Any]
) -> None:
    # Three workers; one is killed (SIGKILL) while it runs its tasks. The scheduler gives its
    # tasks to the others, some chunks may be written twice, and the store equals a clean run.
    import os
    import signal
    import threading
    import time

    from distributed import Client

    raster = make_geotiff(tmp_path / "scene.tif", height=1024, width=1024, tile=64)
    reference = threaded(raster.path, tmp_path / "reference.zarr")
    out = tmp_path / "out.zarr"
    progress = tmp_path / "out.zarr.partial" / ".dasksr-progress"
    blocks = 8 * 8
    killed: dict[str, Any] = {}
    with dask_cluster(tmp_path / "cluster", 3) as (address, workers):
        victim = workers[0]

        def kill_when_busy(client: Client, stop: threading.Event) -> None:
            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
            while not stop.is_set():
                busy = [a for a, keys in client.processing().items() if keys]
                done = len(list(progress.glob("data.*"))) if progress.exists() else 0
                if any(names.get(a) == "worker-0" for a in busy) and done >= 3:
                    os.kill(victim.pid, signal.SIGKILL)
                    killed["done"] = done
                    return
                time.sleep(0.01)

        fine = dasksr.open_raster(raster.path, chunks=128).sr.upscale(scale=3, method="lanczos")
        stop = threading.Event()
        with connect(address) as client:
            killer = threading.Thread(target=kill_when_busy, args=(client, stop))
            killer.start()
            try:
                dasksr.to_zarr(fine, out)
            finally:
                stop.set()
                killer.join()
            assert victim.wait(timeout=10) == -signal.SIGKILL
            assert len(client.scheduler_info()["workers"]) == 2
    assert 3 <= killed.get("done", -1) < blocks, "the worker was not killed mid-job"
    got, want = (
        xr.open_zarr(out, mask_and_scale=False)["data"],
        xr.open_zarr(reference, mask_and_scale=False)["data"],
    )
    np.testing.assert_array_equal(got.values, want.values)
    xr.testing.assert_identical(got.compute(), want.compute())
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]  # no torn chunk files


# ------------------------------------------------------------------------------------------------
# The embedded cluster of worker processes (`--workers N`)


def _environ(name: str) -> str | None:
    import os

    return os.environ.get(name)


def test_embedded_worker_processes_keep_glibc_adaptive_malloc(monkeypatch: Any) -> None:
    """distributed's Nanny gives worker processes MALLOC_TRIM_THRESHOLD_=65536, which made every
    task 2.3x slower there than in-process; the embedded cluster's processes do without it."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with connect(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        found = client.run(_environ, "MALLOC_TRIM_THRESHOLD_")
        threads = client.run(_environ, "OMP_NUM_THREADS")
    assert set(found.values()) == {None}
    assert set(threads.values()) == {"1"}  # distributed's other settings stay


def test_a_cluster_started_early_is_taken_by_connect_or_closed() -> None:
    import psutil

    from dasksr import cluster

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with cluster.starting(workers=2):
        assert cluster._early  # being started in the background
        with connect(workers=2) as client:
            assert not cluster._early  # taken
            assert len(client.scheduler_info()["workers"]) == 2
            total = client.submit(sum, [1, 2, 3]).result()
    assert total == 6
    with cluster.starting(workers=2):
        pass  # the job failed before connecting: the cluster is closed, not left running
    assert not cluster._early
    # Only the fork server (it serves later clusters) may remain.
    left = [p for p in me.children(recursive=True) if p.pid not in before and p.is_running()]
    assert len(left) <= 1, [p.cmdline() for p in left]


def test_cli_workers_2_equals_the_in_process_result(
    tmp_path: Path, make_geotiff: Callable[..., Any]
) -> None:
    source = make_geotiff(tmp_path / "in.tif", dtype="uint16", nodata=0, height=300, width=260).path
    outputs = {}
    for label, extra in (("threads", ["--scheduler", "threads"]), ("workers", ["--workers", "2"])):
        out = tmp_path / f"{label}.zarr"
        argv = [
            "upscale",
            str(source),
            str(out),
            "--scale",
            "2",
            "--chunks",
            "128",
            "--no-progress",
        ]
        assert main([*argv, *extra]) == 0
        outputs[label] = xr.open_zarr(out, mask_and_scale=False)["data"].values
    np.testing.assert_array_equal(outputs["threads"], outputs["workers"])
