"""Output sizes of each Zarr codec and compression level (sizes only, no timings).

Makes the generated demo scene (``dasksr.demo.make_scene``: 3-band uint16, nodata 0), upscales
it x2 with bicubic once into memory, then writes that result as Zarr with each codec and level
(format 2 and 3) and as the default DEFLATE GeoTIFF, and prints a Markdown table of the stored
bytes. Run: ``nice -n 10 python benchmarks/zarr_sizes.py [--size 2048]``.
"""

from __future__ import annotations

import argparse
import tempfile
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
    rows = []
    with tempfile.TemporaryDirectory() as folder, dask.config.set(scheduler="threads"):
        for zarr_format, codec, level in CHOICES:
            path = Path(folder) / f"{zarr_format}-{codec}-{level}.zarr"
            dasksr.to_zarr(
                result, path, zarr_format=zarr_format, codec=codec, compression_level=level
            )
            rows.append((f"Zarr {zarr_format}", codec, str(level), folder_bytes(path)))
        tif = dasksr.to_geotiff(result, Path(folder) / "out.tif")
        rows.append(("GeoTIFF", "DEFLATE (default)", "6", folder_bytes(tif)))
    shape = " x ".join(map(str, result.shape))
    print(f"output {shape} uint16, {raw / 2**20:.1f} MiB raw, chunks {args.chunks}")
    print()
    print("| output | codec | level | MiB | ratio to raw |")
    print("|---|---|---|---|---|")
    for kind, codec, level, size in rows:
        print(f"| {kind} | {codec} | {level} | {size / 2**20:.1f} | {size / raw:.3f} |")


if __name__ == "__main__":
    main()
