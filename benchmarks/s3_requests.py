#!/usr/bin/env python
"""The CPU cost of one S3 upload and one tile read, on both sides of the wire.

Run from the repository root::

    python benchmarks/s3_requests.py             # 3 rounds of 8 uploads of 4 MiB per setting
    python benchmarks/s3_requests.py --rounds 5

It starts the S3 server of ``benchmarks/tile.py`` (moto's ``ThreadedMotoServer`` in a process of
its own, on a plain-http localhost endpoint) and measures, for each setting, the wall time and
the CPU seconds of the server process and of this process per request:

- uploads of 4 MiB objects (a Zarr chunk of dasksr's tile output is about that size) with s3fs,
  with the body signed (botocore's default for an ``http://`` endpoint), unsigned (dasksr's
  setting, `dasksr.io.objectstore.storage_options`), and unsigned without botocore's CRC32
  checksum (for comparison only: dasksr keeps the checksum);
- ``rasterio.Env`` entered with AWS keys in the environment, with rasterio's default session (a
  boto3 session per ``Env``) and with the ``DummySession`` that dasksr's tile reads use.

The objects are random bytes (incompressible, as compressed chunks are).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import tile  # the sibling benchmark: its S3 server (the script's folder is on the path)

OBJECT_MIB = 4
PER_ROUND = 8


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _uploads(
    env: dict[str, str], server: Any, rounds: int
) -> list[tuple[str, float, float, float]]:
    import numpy as np
    import psutil
    import s3fs

    from dasksr.io.objectstore import storage_options

    dasksr_config = storage_options("s3://bucket/key")["config_kwargs"]
    settings = {
        "signed body (botocore's default on http)": {},
        "unsigned body (dasksr)": dasksr_config,
        "unsigned body, no CRC32 checksum": {
            **dasksr_config,
            "request_checksum_calculation": "when_required",
        },
    }
    rng = np.random.default_rng(0)
    bodies = [rng.bytes(OBJECT_MIB * 2**20) for _ in range(PER_ROUND)]
    me = psutil.Process()
    rows = []
    for name, config in settings.items():
        fs = s3fs.S3FileSystem(
            key=env["AWS_ACCESS_KEY_ID"],
            secret=env["AWS_SECRET_ACCESS_KEY"],
            client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]},
            skip_instance_cache=True,
            config_kwargs=config,
        )
        if not fs.exists("bench"):
            fs.mkdir("bench")
        fs.pipe({f"bench/warm{i}": bodies[i] for i in range(2)})
        walls, servers, clients = [], [], []
        for r in range(rounds):
            s0, c0, t0 = _cpu(server), _cpu(me), time.perf_counter()
            fs.pipe({f"bench/r{r}/{i}": body for i, body in enumerate(bodies)})
            walls.append((time.perf_counter() - t0) / PER_ROUND)
            servers.append((_cpu(server) - s0) / PER_ROUND)
            clients.append((_cpu(me) - c0) / PER_ROUND)
        rows.append(
            (
                name,
                statistics.median(walls),
                statistics.median(servers),
                statistics.median(clients),
            )
        )
    return rows


def _envs(count: int = 50) -> list[tuple[str, float]]:
    import rasterio
    from rasterio.session import DummySession

    rows = []
    with rasterio.Env():
        pass  # imports and GDAL's first set-up, in neither figure
    for name, session in (("default session", None), ("DummySession (dasksr)", DummySession)):
        t0 = time.perf_counter()
        for _ in range(count):
            options: dict[str, Any] = {"GDAL_CACHEMAX": 16 * 2**20}
            if session is not None:
                options["session"] = session()
            with rasterio.Env(**options):
                pass
        rows.append((name, (time.perf_counter() - t0) / count))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of uploads (median)")
    args = parser.parse_args()
    import psutil

    with tempfile.TemporaryDirectory() as folder, tile.s3_server(Path(folder)) as (env, proc):
        os.environ.update(env)
        uploads = _uploads(env, psutil.Process(proc.pid), args.rounds)
        envs = _envs()
    print(
        f"{OBJECT_MIB} MiB uploads to moto's server (plain http, localhost), per upload, median of"
    )
    print(f"{args.rounds} rounds of {PER_ROUND}:\n")
    print("| setting | wall ms | server CPU ms | client CPU ms |")
    print("|---|---:|---:|---:|")
    for name, wall, srv, cli in uploads:
        print(f"| {name} | {wall * 1e3:.1f} | {srv * 1e3:.1f} | {cli * 1e3:.1f} |")
    print("\n`rasterio.Env` with AWS keys in the environment, per Env (mean of 50):\n")
    print("| session | ms |")
    print("|---|---:|")
    for name, seconds in envs:
        print(f"| {name} | {seconds * 1e3:.2f} |")


if __name__ == "__main__":
    main()
