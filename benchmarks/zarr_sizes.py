"""Size and write speed of each Zarr codec and compression level, beside the default GeoTIFF.

Makes the generated demo scene (``dasksr.demo.make_scene``: 3-band uint16, nodata 0), upscales
it x2 with bicubic once into memory, then writes that result as Zarr with each codec and level
(format 2 and 3) and as the default DEFLATE GeoTIFF, every choice ``--runs`` times round-robin on
the threaded scheduler (all cores), and prints a Markdown table of the stored bytes and the
median write time. Run on a quiet machine: ``python benchmarks/zarr_sizes.py [--size 2048]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import rioxarray  # noqa: F401  (the rio accessor)
import xarray as xr

import dasksr
from dasksr.demo import make_scene, scene_profile

#: (format, codec, level) written; the default is (2, "zstd", 1).
CHOICES = [
    *((2, "zstd", level) for level in (0, 1, 3, 5, 7, 9)),
    *((3, "zstd", level) for level in (1, 9)),
    *((2, "lz4", level) for level in (1, 5, 9)),
    *((2, "gzip", level) for level in (1, 6, 9)),
    (2, "none", 0),
]


def folder_bytes(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048, help="input edge in pixels")
    parser.add_argument("--chunks", type=int, default=1024, help="output chunk edge")
    parser.add_argument("--runs", type=int, default=3, help="writes per choice (median time)")
    args = parser.parse_args()
    from affine import Affine

    pixels = make_scene(args.size, 3)
    profile = scene_profile(args.size, 3, tile=256)
    t: Affine = profile["transform"]
    coarse = (
        xr.DataArray(
            pixels,
            dims=("band", "y", "x"),
            coords={
                "band": [1, 2, 3],
                "y": t.f + (np.arange(args.size) + 0.5) * t.e,
                "x": t.c + (np.arange(args.size) + 0.5) * t.a,
            },
        )
        .rio.write_crs(profile["crs"])
        .rio.write_nodata(0)
    )
    fine = dasksr.upscale(coarse.chunk({"y": 512, "x": 512}), scale=2, method="bicubic")
    with dask.config.set(scheduler="threads"):
        result = fine.copy(data=fine.data.compute()).chunk({"y": args.chunks, "x": args.chunks})
    raw = result.nbytes
    writers = {
        (f"Zarr {zarr_format}", codec, str(level)): (
            lambda path, zarr_format=zarr_format, codec=codec, level=level: dasksr.to_zarr(
                result, path, zarr_format=zarr_format, codec=codec, compression_level=level
            )
        )
        for zarr_format, codec, level in CHOICES
    }
    writers[("GeoTIFF", "DEFLATE (default)", "6")] = lambda path: dasksr.to_geotiff(result, path)
    sizes: dict[tuple[str, str, str], int] = {}
    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in writers}
    with tempfile.TemporaryDirectory() as folder, dask.config.set(scheduler="threads"):
        for _ in range(args.runs):
            for key, write in writers.items():
                path = Path(folder) / ("out.tif" if key[0] == "GeoTIFF" else "out.zarr")
                start = time.perf_counter()
                write(path)
                times[key].append(time.perf_counter() - start)
                sizes[key] = folder_bytes(path)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    shape = " x ".join(map(str, result.shape))
    print(
        f"output {shape} uint16, {raw / 2**20:.1f} MiB raw, chunks {args.chunks}; write time: "
        f"median of {args.runs}, threaded scheduler, {os.cpu_count()} cores"
    )
    print()
    print("| output | codec | level | MiB | ratio to raw | write s | raw MiB/s written |")
    print("|---|---|---|---|---|---|---|")
    for (kind, codec, level), size in sizes.items():
        median = statistics.median(times[(kind, codec, level)])
        print(
            f"| {kind} | {codec} | {level} | {size / 2**20:.1f} | {size / raw:.3f} | "
            f"{median:.2f} | {raw / 2**20 / median:.0f} |"
        )


if __name__ == "__main__":
    main()
