#!/usr/bin/env python
"""A whole Sentinel-2 tile's worth of ``dasksr sharpen``: time and peak memory.

Generates a product of a Sentinel-2 tile's size (10980 x 10980 at 10 m: B02 B03 B04 B08; 5490 x
5490 at 20 m: the six 20 m bands; uint16, tiled DEFLATE GeoTIFFs, the 20 m grid starting 10 m
west of the 10 m one as in real crops, texture correlated between the bands), then runs
``dasksr sharpen`` on it as a user would (a new process, Zarr output), measuring the wall time
and the peak resident memory of the process and its children (``/usr/bin/time -v``'s figure is
the largest single process; the sum over the tree is sampled here every 0.2 s).

    python benchmarks/sharpen_tile.py --method glp [--size 10980] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def texture(rows: int, cols: int, seed: int) -> np.ndarray:
    """Cheap multi-scale texture: upsampled noise at several scales, summed."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    out = np.zeros((rows, cols), np.float32)
    for step, weight in ((64, 600.0), (16, 300.0), (4, 150.0), (1, 60.0)):
        small = rng.normal(size=(rows // step + 2, cols // step + 2)).astype(np.float32)
        big = zoom(small, step, order=1)[:rows, :cols] if step > 1 else small[:rows, :cols]
        out += weight * big
    return out


def make_product(folder: Path, size: int) -> tuple[list[Path], list[Path]]:
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "crs": "EPSG:32618",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    base = texture(size, size, 0)
    guide = []
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        values = np.clip(
            1500 + base * (0.8 + 0.2 * i) + texture(size, size, 10 + i) * 0.2, 1, 65535
        )
        path = folder / f"{band}.tif"
        with rasterio.open(
            path,
            "w",
            width=size,
            height=size,
            transform=Affine(10, 0, 600000, 0, -10, 4000000),
            **profile,
        ) as dst:
            dst.write(values.astype(np.uint16), 1)
        guide.append(path)
    half = size // 2
    small = base[: half * 2, : half * 2].reshape(half, 2, half, 2).mean(axis=(1, 3))
    coarse = []
    for i, band in enumerate(("B05", "B06", "B07", "B8A", "B11", "B12")):
        values = np.clip(
            1800 + small * (0.7 + 0.1 * i) + texture(half, half, 20 + i) * 0.1, 1, 65535
        )
        path = folder / f"{band}.tif"
        with rasterio.open(
            path,
            "w",
            width=half,
            height=half,
            transform=Affine(20, 0, 599990, 0, -20, 4000000),
            **profile,
        ) as dst:
            dst.write(values.astype(np.uint16), 1)
        coarse.append(path)
    return coarse, guide


def tree_rss(pid: int) -> dict[int, tuple[str, int]]:
    """Resident bytes of ``pid`` and each of its descendants, with a short name for each."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            words = " ".join(p.cmdline()[1:3])[-60:]
            out[p.pid] = (words, p.memory_info().rss)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="glp")
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--keep", action="store_true", help="keep the generated product")
    ap.add_argument("--product", type=Path, help="a product kept by an earlier --keep run")
    ap.add_argument("--workers", type=int, help="dasksr sharpen --workers")
    args = ap.parse_args()
    if args.product:
        tmp = args.product
        coarse = [tmp / f"{b}.tif" for b in ("B05", "B06", "B07", "B8A", "B11", "B12")]
        guide = [tmp / f"{b}.tif" for b in ("B02", "B03", "B04", "B08")]
        with rasterio.open(guide[0]) as src:
            args.size = src.width
        shutil.rmtree(tmp / "out.zarr", ignore_errors=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dasksr_tile_"))
        start = time.perf_counter()
        coarse, guide = make_product(tmp, args.size)
        print(f"generated the product in {time.perf_counter() - start:.0f} s in {tmp}")
    exe = str(Path(sys.executable).with_name("dasksr"))
    cmd = [
        exe,
        "sharpen",
        *map(str, coarse),
        "--guide",
        *map(str, guide),
        str(tmp / "out.zarr"),
        "-m",
        args.method,
        "--no-progress",
        *(["--workers", str(args.workers)] if args.workers else []),
    ]
    peak, peaks = 0, {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            sizes = tree_rss(proc.pid)
            peak = max(peak, sum(rss for _, rss in sizes.values()))
            for pid, (name, rss) in sizes.items():
                peaks[pid] = (name, max(rss, peaks.get(pid, (name, 0))[1]))
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    print(out.strip(), err.strip()[-500:])
    pixels = 6 * args.size * args.size
    print(
        f"{args.method}: {args.size} x {args.size} x 6 bands out, {wall:.1f} s wall "
        f"({pixels / 1e6 / wall:.2f} MPix/s), peak RSS of the process tree "
        f"{peak / 2**30:.2f} GiB"
    )
    for pid, (name, rss) in sorted(peaks.items()):
        print(f"  peak RSS {rss / 2**30:5.2f} GiB  pid {pid}  {name}")
    if not args.keep and not args.product:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
