#!/usr/bin/env python
"""Speed of the learned methods (issue 9): the engine, the blockwise wiring and the command line.

    python benchmarks/cnn_speed.py                 # 2048 x 2048 band, 1 and 2 threads
    python benchmarks/cnn_speed.py --scene 8192    # also `dasksr upscale` on the 8192 scene

For each thread count T the process is pinned to T cores (``os.sched_setaffinity``), so that
onnxruntime, NumPy's BLAS and dask all see T cores, and measured (median of ``--runs``):

- the float32 matrix-product rate (NumPy ``matmul`` of 2048 x 2048 matrices), the machine's
  reference;
- the engine: the network on the whole 2048 x 2048 band (``ModelRecord.run``: its row strips on
  T one-thread onnxruntime calls at once), as output MPix/s and GFLOP/s (2 x multiply-adds per
  low-resolution pixel x pixels / time), and that rate as a fraction of the matrix-product rate;
- the same band upscaled through dask (``dasksr.upscale`` on 512-pixel chunks, threaded scheduler,
  T threads), and its time over the engine's whole-image time.

``--scene N`` runs ``dasksr upscale --method cnn`` and ``--method bicubic`` on the speed benchmark's
N x N 3-band uint16 scene (``benchmarks/speed.py``'s generator) to Zarr, one run each, and prints
output MPix/s of both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def _time(fn, runs: int) -> float:
    fn()  # warm up: sessions, caches, compiled code
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(runs: int) -> float:
    """NumPy's float32 matrix product on the cores this process may use (the BLAS's own kernel:
    run without OPENBLAS_CORETYPE, which pins OpenBLAS to an older one on some machines)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(len(os.sched_getaffinity(0))):
        t = _time(lambda: a @ a, runs)
    return 2 * 2048**3 / t / 1e9


def bench_threads(threads: int, size: int, runs: int, method: str, scale: int) -> dict:
    import dask
    import dask.array as da

    import dasksr
    from dasksr import models as cnn
    from dasksr.models import ProcessResource

    os.sched_setaffinity(0, set(range(threads)))
    ProcessResource.clear()
    record = cnn.load_records()[method][scale]
    rng = np.random.default_rng(0)
    band = (1000 + 3000 * rng.random((size, size))).astype(np.float32)
    halo = record.layers
    padded = np.pad(band, halo, mode="symmetric")[None]
    with dask.config.set(num_workers=threads, scheduler="threads"):
        engine = _time(lambda: record.run(padded), runs)
        lazy = dasksr.upscale(da.from_array(band, chunks=512), scale=scale, method=method)
        chunked = _time(lambda: lazy.compute(), runs)
    macs = record.record["macs_per_lr_pixel"]
    gflops = 2 * macs * size * size / engine / 1e9
    peak = matmul_gflops(runs)
    return {
        "threads": threads,
        "engine_s": engine,
        "mpix_s": size * size * scale * scale / engine / 1e6,
        "gflops": gflops,
        "matmul_gflops": peak,
        "fraction": gflops / peak,
        "chunked_s": chunked,
        "chunked_ratio": chunked / engine,
    }


def bench_scene(size: int, workdir: Path, method: str) -> dict:
    """`dasksr upscale` of speed.py's scene with ``method`` and bicubic, at speed.py's scale.

    ``speed`` is the sibling script: `python benchmarks/cnn_speed.py` puts its folder first on
    sys.path."""
    from speed import SCALE, _dasksr, make_input

    workdir.mkdir(parents=True, exist_ok=True)
    src = make_input(workdir / f"scene_{size}.tif", size)
    out = {}
    for m in (method, "bicubic"):
        argv = _dasksr(m)(src, workdir / f"out_{m}.zarr", size)
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        seconds = time.perf_counter() - t
        out[m] = {"seconds": seconds, "mpix_s": 3 * (size * SCALE) ** 2 / seconds / 1e6}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--method", default="cnn")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scene", type=int, default=0, help="edge of the end-to-end scene (0: skip)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dasksr-cnn-bench"))
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')}" for i in threadpool_info())
    print(
        f"{args.method} x{args.scale}, {args.size} x {args.size} float32 band, "
        f"median of {args.runs} runs; CPU: {os.cpu_count()} cores; BLAS: {blas}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )
    header = (
        "threads",
        "engine s",
        "out MPix/s",
        "GFLOP/s",
        "matmul GFLOP/s",
        "fraction",
        "dask s",
        "dask/engine",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for threads in args.threads:
        r = bench_threads(threads, args.size, args.runs, args.method, args.scale)
        print(
            f"| {threads} | {r['engine_s']:.2f} | {r['mpix_s']:.1f} | {r['gflops']:.1f} | "
            f"{r['matmul_gflops']:.1f} | {r['fraction']:.2f} | {r['chunked_s']:.2f} | "
            f"{r['chunked_ratio']:.2f} |",
            flush=True,
        )
    if args.scene:
        r = bench_scene(args.scene, args.workdir, args.method)
        print(f"\n`dasksr upscale` 3 x {args.scene}^2 uint16 -> x2 Zarr, one run each:")
        for m, v in r.items():
            print(f"- {m}: {v['seconds']:.1f} s, {v['mpix_s']:.1f} output MPix/s")


if __name__ == "__main__":
    main()
