"""Jobs on a real ``dask scheduler`` with two ``dask worker`` processes, started here on 127.0.0.1.

The workers run in another folder than the tests, as on a cluster: relative paths given to the
command line must still reach the right files.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr

import dasksr
from dasksr.cli import main

WORKERS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a ``dask scheduler`` with two single-thread workers; stopped afterwards."""
    from distributed import Client

    executable = Path(sys.executable).with_name("dask")
    assert executable.exists(), f"the dask console script is not installed beside {sys.executable}"
    folder = tmp_path_factory.mktemp("cluster")
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
            for i in range(WORKERS)
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
            client.wait_for_workers(WORKERS, timeout=60)
        yield address
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


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
        got, want = xr.open_zarr(out)["data"], xr.open_zarr(reference)["data"]
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
        xr.open_zarr(out)["data"].values, dasksr.upscale(uint16_tif.data, 2, nodata=0)
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
