"""A cluster without a shared disk: a ``dask scheduler`` and two ``dask worker`` processes, each in
its own working folder and TMPDIR, read from and write to an S3 server (moto, on 127.0.0.1).

And the check that keeps a local output from hanging or being half-written on such a cluster:
workers that cannot write the output's folder stop the job before it starts, in one line.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from test_distributed import stop_cluster
from test_s3 import _free_port, aws_settings, bucket, endpoint, s3  # noqa: F401

import dasksr
from dasksr.cli import main
from dasksr.cluster import _probe_folder


@contextmanager
def cluster(folder: Path, env: dict[str, str], *, limit_writes: bool = False) -> Iterator[str]:
    """A scheduler and two one-thread workers, each run in a folder of its own with its own
    TMPDIR; ``limit_writes`` forbids the workers to write any byte to a file (RLIMIT_FSIZE 0)."""
    from distributed import Client

    dask_script = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    common = ["--host", "127.0.0.1"]
    commands = [
        [dask_script, "scheduler", "--port", port, "--dashboard-address", ":0", *common],
        *(
            [dask_script, "worker", address, "--nthreads", "1", "--no-nanny", "--memory-limit",
             "0", "--name", f"w{i}", "--no-dashboard", *common]
            for i in range(2)
        ),
    ]  # fmt: skip

    processes = []
    try:
        for i, command in enumerate(commands):
            home = folder / f"process-{i}"
            (home / "tmp").mkdir(parents=True)
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=home,
                    env={**os.environ, **env, "TMPDIR": str(home / "tmp")},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, [p.pid for p in processes[1:]]
    finally:
        stop_cluster(processes)


def test_workers_without_the_clients_disk_write_s3_and_refuse_a_local_output(
    bucket: str,  # noqa: F811  (the fixture of test_s3)
    tmp_path: Path,
    make_geotiff: Callable[..., Any],
    capsys: Any,
) -> None:
    raster = make_geotiff(
        tmp_path / "scene.tif", dtype="int16", nodata=-9999, height=260, width=300, tile=64
    )
    s3().put_file(str(raster.path), f"{bucket}/scene.tif")
    source, url = f"s3://{bucket}/scene.tif", f"s3://{bucket}/out.zarr"
    argv = ["upscale", source, url, "--scale", "2", "--method", "lanczos", "--chunks", "128"]
    assert main([*argv[:2], str(tmp_path / "local.zarr"), *argv[3:], "--scheduler", "threads"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    env = {k: os.environ[k] for k in aws_settings("x") if k in os.environ}
    with cluster(tmp_path / "cluster", env) as (address, workers):
        assert main([*argv, "--scheduler", address, "--no-progress"]) == 0, capsys.readouterr().err
        # The workers' disk is now full (not a byte more to any file): a local output, which
        # the client's folder would take, is refused before any task runs.
        for pid in workers:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, 0))
        for name in ("o.zarr", "o.tif"):
            status = main(["upscale", str(raster.path), str(out / name), "--scheduler", address])
            err = capsys.readouterr().err
            assert status == 2, err
            assert len(err.splitlines()) == 1, err
            assert "cannot write its folder" in err and "s3://" in err, err
    # Nothing finished, and no partial store left: the refused job wrote no block to resume.
    assert not list(out.iterdir())
    got = dasksr.open_raster(url).compute()
    want = dasksr.open_raster(tmp_path / "local.zarr").compute()
    assert got.dtype == np.int16 and got.rio.nodata == -9999
    xr.testing.assert_identical(got, want)
    # Nothing was written in the client's folder but the local reference.
    assert {p.name for p in tmp_path.iterdir()} == {"scene.tif", "local.zarr", "cluster", "out"}


def test_the_probe_tells_a_folder_the_client_did_not_write(tmp_path: Path) -> None:
    assert "not there" in str(_probe_folder(str(tmp_path), "0123abcd"))
    (tmp_path / ".dasksr-probe-0123abcd").write_text("0123abcd")
    assert _probe_folder(str(tmp_path), "0123abcd") is None
    assert [p.name for p in tmp_path.iterdir()] == [".dasksr-probe-0123abcd"]
