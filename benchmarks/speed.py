#!/usr/bin/env python
"""Speed and memory benchmark of dasksr against its peers (issue 3).

Run from the repository root::

    python benchmarks/speed.py                 # kernel, blockwise and end-to-end sections, 3 runs each
    python benchmarks/speed.py --large         # also the 4x scene (16384 x 16384) for dasksr
    python benchmarks/speed.py --quick         # small sizes, 1 run: a smoke test (< 60 s)
    python benchmarks/speed.py --out docs/benchmarks-run.md

Sections, each a Markdown table of medians with the ratio to the peer measured in the same run
(candidates are interleaved run by run, so a noisy machine slows all of them alike):

1. kernel: dasksr's bicubic and Lanczos block kernels on a float32 image against OpenCV, Pillow,
   ``scipy.ndimage.zoom`` and GDAL's resampled read, all on one thread.
2. blockwise: ``dasksr.upscale`` on a chunked dask array stored with ``da.store`` into a
   preallocated NumPy array, against the whole-array kernel; the same for a plain ``map_overlap``
   around OpenCV.
3. end to end: a 3-band uint16 tiled DEFLATE GeoTIFF upscaled x2 by the ``dasksr`` command to
   Zarr and GeoTIFF, against gdalwarp, rioxarray, a plain ``map_overlap`` around OpenCV and odc-geo
   (when installed), one table per scene. Every job is a subprocess; its peak RSS is that of its
   process tree. Workers read and write the data: nothing large comes back to this process.

The scenes are made here and kept in ``--workdir`` when one is given, so later runs skip making
them (``--scene real|synthetic|both``, default both, real first):

- real: the native Sentinel-2 L1C 10 m bands B04, B03, B02 of the shared data
  (``dasksr.scenes.SENTINEL2_NATIVE``, 1933 x 1947 pixels) mirrored to the scene's edge. Without
  the shared data (``DASKSR_DATA``) the script stops at once with a one-line error.
- synthetic: ``dasksr.demo.make_scene`` (larger scenes are mirrored tiles of the 8192 one).

The end-to-end targets are judged on the real-texture scene; the synthetic one's ratios are shown
beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GIB = 2**30
SCALE = 2
#: Chunk edge of the blockwise section and of the map_overlap peers (dasksr's own default).
CHUNK = 1024
#: Largest scene made in one piece; bigger scenes are mirrored tiles of it.
SCENE_TILE = 8192
#: The peer that each kernel is compared with.
KERNEL_PEER = {"bicubic": "cv2 INTER_CUBIC", "lanczos": "cv2 INTER_LANCZOS4"}


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


@dataclass
class Section:
    """One Markdown table plus the numbers the targets are judged on."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def labels(self) -> list[str]:
        return [row[0] for row in self.rows]

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"


def _median(times: Sequence[float]) -> float:
    return float(statistics.median(times)) if times else float("nan")


def _interleaved(
    candidates: dict[str, Callable[[], Any]], runs: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Wall times of each candidate, run round-robin ``runs`` times after one untimed warm-up."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    if warmup:
        for fn in candidates.values():
            fn()
    for _ in range(runs):
        for name, fn in candidates.items():
            gc.collect()
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            del result
    return times


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------


def machine_info() -> list[str]:
    """Lines describing the CPU, memory, load and library versions."""
    import importlib.metadata as md

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / GIB:.1f} GiB"
    except ImportError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    versions = []
    for dist in (
        "dasksr",
        "numpy",
        "dask",
        "distributed",
        "xarray",
        "zarr",
        "rasterio",
        "rioxarray",
        "opencv-python-headless",
        "pillow",
        "scipy",
        "odc-geo",
    ):
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    try:
        import rasterio

        versions.append(f"GDAL (rasterio) {rasterio.__gdal_version__}")
    except ImportError:
        pass
    gdalwarp = shutil.which("gdalwarp")
    if gdalwarp:
        out = subprocess.run([gdalwarp, "--version"], capture_output=True, text=True, check=False)
        versions.append(f"gdalwarp: {out.stdout.strip()}")
    bytecode = (
        " (PYTHONDONTWRITEBYTECODE is set here; the timed jobs run without it)"
        if "PYTHONDONTWRITEBYTECODE" in os.environ
        else ""
    )
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; memory {memory}; load average at start {load}",
        f"- Python {platform.python_version()} on {platform.platform()}{bytecode}",
        f"- {_dasksr_source()}",
        "- " + "; ".join(versions),
    ]


def job_environment() -> dict[str, str]:
    """The environment of the timed subprocesses: this one, with Python's default bytecode cache.

    ``PYTHONDONTWRITEBYTECODE`` (set on some build machines) makes every process compile the
    modules that have no cached bytecode from source: an editable install's dasksr, about 30
    modules and 0.1 s per process here. A user's installation has its bytecode cached; so do the
    jobs, from their warm-up run on.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _dasksr_source() -> str:
    """Where the benchmarked dasksr comes from: its folder, commit and uncommitted changes."""
    import dasksr

    root = Path(dasksr.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") if (root / ".git").exists() else ""
    if not commit:
        return f"dasksr imported from {root} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "dasksr")
    return f"dasksr imported from {root}, commit {commit}" + (
        ", with uncommitted changes to dasksr/" if dirty else ""
    )


# ----------------------------------------------------------------------------------------------
# 1. Kernels
# ----------------------------------------------------------------------------------------------


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """A float32 ``size x size`` image (the kernels' speed does not depend on the content)."""
    return np.random.default_rng(seed).standard_normal((size, size), dtype=np.float32)


def _interior_diff(a: np.ndarray, b: np.ndarray, margin: int) -> float:
    inner = (slice(margin, -margin), slice(margin, -margin))
    return float(np.max(np.abs(a[inner].astype(np.float64) - b[inner])))


def kernel_candidates(image: np.ndarray, scale: int = SCALE) -> dict[str, Callable[[], Any]]:
    """The single-threaded whole-image resizers, by row label."""
    from dasksr.api import upscale_numpy
    from dasksr.methods import get_method

    ny, nx = image.shape
    out_shape = (ny * scale, nx * scale)
    candidates: dict[str, Callable[[], Any]] = {}
    for name in ("bicubic", "lanczos"):
        method = get_method(name)
        candidates[f"dasksr {name}"] = lambda method=method: upscale_numpy(image, method, scale)
    try:
        import cv2

        cv2.setNumThreads(1)
        for label, flag in (
            ("cv2 INTER_CUBIC", cv2.INTER_CUBIC),
            ("cv2 INTER_LANCZOS4", cv2.INTER_LANCZOS4),
        ):
            candidates[label] = lambda flag=flag: cv2.resize(
                image, (out_shape[1], out_shape[0]), interpolation=flag
            )
    except ImportError:
        pass
    try:
        from PIL import Image

        picture = Image.fromarray(image)  # float32 -> mode 'F'
        for label, flag in (
            ("Pillow BICUBIC", Image.Resampling.BICUBIC),
            ("Pillow LANCZOS", Image.Resampling.LANCZOS),
        ):
            candidates[label] = lambda flag=flag: picture.resize((out_shape[1], out_shape[0]), flag)
    except ImportError:
        pass
    candidates["GDAL read cubic"] = _gdal_resampled_read(image, scale)
    from scipy import ndimage

    candidates["scipy zoom order=3"] = lambda: ndimage.zoom(
        image, scale, order=3, grid_mode=True, mode="grid-mirror"
    )
    return candidates


def _gdal_resampled_read(image: np.ndarray, scale: int) -> Callable[[], Any]:
    """A callable doing GDAL's resampled read of ``image`` from an in-memory tiled GeoTIFF."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile

    ny, nx = image.shape
    memfile = MemoryFile()
    tile = 256 if min(ny, nx) >= 256 else 16
    # A unit grid: GDAL's resampled read needs no georeferencing (and would warn without one).
    grid = {"crs": "EPSG:32633", "transform": rasterio.Affine(1.0, 0.0, 0.0, 0.0, -1.0, ny)}
    with memfile.open(
        driver="GTiff",
        width=nx,
        height=ny,
        count=1,
        dtype="float32",
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        **grid,
    ) as dst:
        dst.write(image, 1)

    def read() -> np.ndarray:
        with rasterio.Env(GDAL_NUM_THREADS=1), memfile.open() as src:
            return src.read(1, out_shape=(ny * scale, nx * scale), resampling=Resampling.cubic)

    read.memfile = memfile  # type: ignore[attr-defined]  # keep the file alive with the callable
    return read


def bench_kernel(size: int = 4096, runs: int = 3, scale: int = SCALE) -> Section:
    """Section 1: output MPix/s of each whole-image resizer on one thread."""
    image = test_image(size)
    candidates = kernel_candidates(image, scale)
    times = _interleaved(candidates, runs)
    mpix = size * size * scale * scale / 1e6
    rate = {name: mpix / _median(t) for name, t in times.items()}
    section = Section(
        f"Kernel: float32 {size}x{size} x{scale}, one thread, median of {runs}",
        ["implementation", "median s", "output MPix/s", "x cv2 (same kernel)", "notes"],
    )
    order = [
        "dasksr bicubic",
        "cv2 INTER_CUBIC",
        "Pillow BICUBIC",
        "GDAL read cubic",
        "scipy zoom order=3",
        "dasksr lanczos",
        "cv2 INTER_LANCZOS4",
        "Pillow LANCZOS",
    ]
    diffs = _kernel_agreement(candidates, scale)
    notes = {
        "dasksr bicubic": "compiled loops (Numba), Keys a=-0.5; includes padding the whole image",
        "dasksr lanczos": "compiled loops (Numba), Lanczos-3; includes padding the whole image",
        "cv2 INTER_CUBIC": "Keys a=-0.75",
        "GDAL read cubic": "rasterio read(out_shape, Resampling.cubic), in-memory GeoTIFF",
        "scipy zoom order=3": "cubic B-spline (prefilter + interpolation)",
    }
    for name in order:
        if name not in times:
            continue
        peer = KERNEL_PEER["lanczos" if "LANCZOS" in name.upper() else "bicubic"]
        ratio = rate[name] / rate[peer] if peer in rate else float("nan")
        note = notes.get(name, "")
        if name in diffs:
            note = (note + "; " if note else "") + diffs[name]
        section.rows.append(
            [name, _fmt(_median(times[name]), 3), _fmt(rate[name], 1), _fmt(ratio), note]
        )
        section.values[f"kernel {name} MPix/s"] = rate[name]
        section.values[f"kernel {name} x cv2"] = ratio
    return section


def _kernel_agreement(candidates: dict[str, Callable[[], Any]], scale: int) -> dict[str, str]:
    """Max |dasksr - Pillow| away from the borders: evidence that both compute the same thing."""
    out = {}
    for ours, theirs in (
        ("dasksr bicubic", "Pillow BICUBIC"),
        ("dasksr lanczos", "Pillow LANCZOS"),
    ):
        if ours in candidates and theirs in candidates:
            a = candidates[ours]()
            b = np.asarray(candidates[theirs]())
            out[ours] = f"max abs diff vs {theirs} (interior) {_interior_diff(a, b, 4 * scale):.1e}"
    return out


# ----------------------------------------------------------------------------------------------
# 2. Blockwise
# ----------------------------------------------------------------------------------------------


def cv2_block(block: np.ndarray, *, scale: int, halo: int, flag: int | None = None) -> np.ndarray:
    """Resize the last two axes of a block padded by ``halo`` with OpenCV and drop the halo.

    The peers' kernel: what a plain ``map_overlap`` around ``cv2.resize`` runs on every block.
    """
    import cv2

    flag = cv2.INTER_CUBIC if flag is None else flag
    planes = block.reshape(-1, *block.shape[-2:])
    ny, nx = planes.shape[-2:]
    cut = halo * scale
    out = np.stack(
        [
            cv2.resize(p, (nx * scale, ny * scale), interpolation=flag)[
                cut : -cut or None, cut : -cut or None
            ]
            for p in planes
        ]
    )
    return out.reshape(*block.shape[:-2], *out.shape[-2:])


def cv2_map_overlap(array: Any, scale: int = SCALE, halo: int = 2) -> Any:
    """A plain ``map_overlap`` around ``cv2.resize`` (the peer of dasksr's blockwise layer)."""
    from functools import partial

    import dask.array as da

    ndim = array.ndim
    spatial = (ndim - 2, ndim - 1)
    depth = {ax: halo if ax in spatial else 0 for ax in range(ndim)}
    boundary = {ax: "reflect" if ax in spatial else "none" for ax in range(ndim)}
    chunks = tuple(
        tuple(c * scale for c in array.chunks[ax]) if ax in spatial else array.chunks[ax]
        for ax in range(ndim)
    )
    return da.map_overlap(
        partial(cv2_block, scale=scale, halo=halo),
        array,
        depth=depth,
        boundary=boundary,
        trim=False,
        chunks=chunks,
        dtype=array.dtype,
        meta=np.empty((0,) * ndim, array.dtype),
    )


def bench_blockwise(
    size: int = 4096, chunk: int = CHUNK, runs: int = 3, scale: int = SCALE
) -> Section:
    """Section 2: chunked, threaded ``da.store`` against the whole-array kernel."""
    import cv2
    import dask.array as da

    import dasksr
    from dasksr.api import upscale_numpy
    from dasksr.methods import get_method

    cv2.setNumThreads(1)
    threads = os.cpu_count() or 1
    image = test_image(size)
    source = da.from_array(image, chunks=chunk)
    target = np.zeros((size * scale, size * scale), np.float32)  # preallocated and touched
    method = get_method("bicubic")

    def store(build: Callable[[], Any], workers: int) -> Callable[[], Any]:
        return lambda: da.store(
            build(), target, lock=False, scheduler="threads", num_workers=workers
        )

    def ours() -> Any:
        return dasksr.upscale(source, scale=scale, method="bicubic")

    def theirs() -> Any:
        return cv2_map_overlap(source, scale)

    candidates: dict[str, Callable[[], Any]] = {
        "dasksr kernel, whole array": lambda: upscale_numpy(image, method, scale),
        f"dasksr upscale, da.store, {threads} threads": store(ours, threads),
        "dasksr upscale, da.store, 1 thread": store(ours, 1),
        f"dasksr upscale, .compute(), {threads} threads": lambda: ours().compute(
            scheduler="threads", num_workers=threads
        ),
        "cv2 INTER_CUBIC, whole array": lambda: cv2.resize(
            image, (size * scale, size * scale), interpolation=cv2.INTER_CUBIC
        ),
        f"cv2 map_overlap, da.store, {threads} threads": store(theirs, threads),
        f"cv2 map_overlap, .compute(), {threads} threads": lambda: theirs().compute(
            scheduler="threads", num_workers=threads
        ),
    }
    times = _interleaved(candidates, runs)
    mpix = size * size * scale * scale / 1e6
    section = Section(
        f"Blockwise: float32 {size}x{size} x{scale} bicubic, chunks {chunk}, median of {runs}",
        ["job", "median s", "output MPix/s", "x whole-array time", "notes"],
    )
    reference = None
    for name, t in times.items():
        if "whole array" in name:
            reference = _median(t)
        ratio = _median(t) / reference if reference else float("nan")
        note = "the reference for the rows below it" if "whole array" in name else ""
        section.rows.append(
            [name, _fmt(_median(t), 3), _fmt(mpix / _median(t), 1), _fmt(ratio), note]
        )
        section.values[f"blockwise {name} x"] = ratio
    section.values["blockwise store x"] = section.values[
        f"blockwise dasksr upscale, da.store, {threads} threads x"
    ]
    section.notes.append(
        "Whole-array rows run on one thread; the chunked rows may use every core, so a ratio "
        "below 1 is possible."
    )
    return section


def _edge_mask(chunks: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """True within ``width`` pixels of an inner chunk boundary of a 2-D chunking."""
    masks = []
    for sizes in chunks:
        n = int(sum(sizes))
        near = np.zeros(n, bool)
        for edge in np.cumsum(sizes)[:-1]:
            near[max(edge - width, 0) : edge + width] = True
        masks.append(near)
    return masks[0][:, None] | masks[1][None, :]


def seam_candidates(
    image: np.ndarray, chunk: int, scale: int = SCALE
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """Per chunked tool: (its chunked result as a dask array, its whole-image result)."""
    import dask.array as da

    import dasksr
    from dasksr.api import upscale_numpy
    from dasksr.methods import get_method

    chunked = da.from_array(image, chunks=chunk)
    ny, nx = image.shape
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "dasksr upscale bicubic": (
            lambda: dasksr.upscale(chunked, scale=scale, method="bicubic"),
            lambda: upscale_numpy(image, get_method("bicubic"), scale),
        ),
        "dasksr upscale lanczos": (
            lambda: dasksr.upscale(chunked, scale=scale, method="lanczos"),
            lambda: upscale_numpy(image, get_method("lanczos"), scale),
        ),
    }
    try:
        import cv2

        pairs["map_overlap around cv2 INTER_CUBIC, halo 2"] = (
            lambda: cv2_map_overlap(chunked, scale),
            lambda: cv2.resize(image, (nx * scale, ny * scale), interpolation=cv2.INTER_CUBIC),
        )
    except ImportError:
        pass
    try:
        import odc.geo.xr  # noqa: F401  (registers the odc accessor)
        import rioxarray  # noqa: F401  (registers the rio accessor)
        import xarray as xr
        from odc.geo.xr import xr_reproject

        def geo(data: Any) -> Any:
            res = 10.0
            coords = {
                "y": 5_000_000 - res * (np.arange(ny) + 0.5),
                "x": 500_000 + res * (np.arange(nx) + 0.5),
            }
            return xr.DataArray(data, dims=("y", "x"), coords=coords).rio.write_crs(32633)

        def odc_fine(data: Any) -> Any:
            source = geo(data)
            fine = xr_reproject(source, source.odc.geobox.zoom_out(1 / scale), resampling="cubic")
            return fine.data

        pairs["odc-geo xr_reproject cubic"] = (lambda: odc_fine(chunked), lambda: odc_fine(image))
    except ImportError:
        pass
    return pairs


def bench_seams(size: int = 2048, chunk: int = 512, scale: int = SCALE, width: int = 4) -> Section:
    """Section 4: each chunked tool against its own whole-image result, at chunk edges and inside.

    The difference is measured on the output, within ``width`` output pixels of an inner chunk
    boundary (where a missing or wrong halo shows) and elsewhere, away from the image border.
    """
    image = test_image(size) * np.float32(1000) + np.float32(5000)  # DN-like, range ~10000
    span = float(image.max() - image.min())
    section = Section(
        f"Seams: float32 {size}x{size} x{scale}, chunks {chunk}, each tool against its own "
        "whole-image result",
        [
            "tool",
            "max abs diff at chunk edges",
            "max abs diff elsewhere",
            "edge pixels off by > 1e-5 of the range",
            "seamless",
        ],
    )
    for name, (chunked, whole) in seam_candidates(image, chunk, scale).items():
        lazy = chunked()
        with warnings.catch_warnings():
            # odc-geo's in-memory path: rasterio warns of the plain array it is handed.
            warnings.simplefilter("ignore", category=UserWarning)
            out = np.asarray(lazy.compute(scheduler="threads"), dtype=np.float64)
            ref = np.asarray(whole(), dtype=np.float64)
        diff = np.abs(out - ref)
        border = scale * 8  # the image border: the tools' edge rules differ, not their seams
        inner = np.zeros(diff.shape, bool)
        inner[border:-border, border:-border] = True
        edges = _edge_mask(lazy.chunks[-2:], width) & inner
        elsewhere = inner & ~edges
        off = int((diff[edges] > 1e-5 * span).sum())
        section.rows.append(
            [
                name,
                _fmt(float(diff[edges].max())),
                _fmt(float(diff[elsewhere].max())),
                f"{off} of {int(edges.sum())}",
                "yes" if float(diff[edges].max()) <= 1e-5 * span else "**no**",
            ]
        )
        section.values[f"seams {name}"] = float(diff[edges].max()) / span
    section.notes.append(
        f"Input: standard normal noise x 1000 + 5000 (range {span:.0f}): every pixel matters, the "
        f"hardest case for a halo. Edges: output pixels within {width} of an inner chunk boundary "
        f"of the tool's output; the outer {8 * scale} output pixels are left out (edge rules are "
        "not seams)."
    )
    return section


# ----------------------------------------------------------------------------------------------
# 3. End to end
# ----------------------------------------------------------------------------------------------


#: The end-to-end scenes, in the order they run: real Sentinel-2 texture first, then the generated one.
SCENES = ("real", "synthetic")
#: What each scene is, in the tables' words.
SCENE_NAMES = {"real": "real-texture", "synthetic": "synthetic"}
#: The native Sentinel-2 10 m bands of the real-texture scene, in band order (red, green, blue, NIR).
REAL_BANDS = ("B04", "B03", "B02", "B08")
#: How the tables describe each scene.
SCENE_NOTES = {
    "real": "Input: the native Sentinel-2 L1C 10 m bands of tile 18SVG (B04, B03, B02, then B08; "
    "1933 x 1947 pixels, `dasksr.scenes`), mirrored to size; tiled 512, DEFLATE.",
    "synthetic": "Input: `dasksr.demo.make_scene` (fields, roads, terrain and noise; mirrored "
    f"tiles of the {SCENE_TILE} one when larger); tiled 512, DEFLATE.",
}
#: The GeoTIFF tag that says which scene a kept input is.
SCENE_TAG = "DASKSR_BENCH_SCENE"


class SceneDataMissing(RuntimeError):
    """The real-texture scene was asked for, but the shared Sentinel-2 bands are not here."""


def scene_file(workdir: Path, scene: str, size: int) -> Path:
    """Where the ``scene`` input of edge ``size`` is kept in ``workdir``."""
    return workdir / (f"scene_{size}.tif" if scene == "synthetic" else f"{scene}_{size}.tif")


def require_real_bands(bands: int = 3) -> None:
    """Raise `SceneDataMissing`, naming the fix, unless the real-texture scene can be made."""
    from dasksr.data import data_path
    from dasksr.scenes import SENTINEL2_NATIVE

    if bands > len(REAL_BANDS):
        raise SceneDataMissing(
            f"the real-texture scene has at most {len(REAL_BANDS)} bands ({bands} asked for)"
        )
    missing = [b for b in REAL_BANDS[:bands] if data_path(*SENTINEL2_NATIVE[b]) is None]
    if missing:
        folder = "/".join(SENTINEL2_NATIVE[missing[0]][:-1])
        raise SceneDataMissing(
            f"the real-texture scene needs the native Sentinel-2 bands {', '.join(missing)} "
            f"({folder}/ in the shared data): set DASKSR_DATA to the shared data folder, "
            "or run with --scene synthetic"
        )


def mirrored(n: int, start: int, stop: int) -> np.ndarray:
    """Indices ``start:stop`` of an axis of length ``n`` mirrored without end, the edge pixel
    repeated as ``np.pad(mode='symmetric')`` does: 0, 1, .., n-1, n-1, .., 1, 0, 0, 1, .."""
    i = np.arange(start, stop) % (2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def make_input(path: Path, size: int, bands: int = 3, *, scene: str = "real") -> Path:
    """Write a benchmark scene: ``bands`` x ``size`` x ``size`` uint16, tiled 512, DEFLATE, nodata 0.

    ``scene="real"``: the native Sentinel-2 L1C 10 m bands (`REAL_BANDS`, 1933 x 1947 pixels,
    ``dasksr.scenes``) mirrored to ``size`` (``np.pad(mode='symmetric')``), on their own grid
    (EPSG:32618, 10 m); they hold no zeros, so nodata 0 masks nothing. ``scene="synthetic"``:
    ``dasksr.demo.make_scene`` (EPSG:32633, 10 m, a nodata corner); scenes larger than
    `SCENE_TILE` are mirrored tiles of the `SCENE_TILE` one. Both are written window by window.
    An existing file of the same scene and size is kept.
    """
    import rasterio

    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}: choose among {', '.join(SCENES)}")
    if path.exists():
        try:
            with rasterio.open(path) as src:
                same = (src.count, src.height, src.width) == (bands, size, size)
                if same and src.tags().get(SCENE_TAG, "synthetic") == scene:
                    return path
        except rasterio.errors.RasterioError:
            pass
    partial = path.with_name(path.name + ".partial")
    if scene == "real":
        _write_real(partial, size, bands)
    else:
        _write_synthetic(partial, size, bands)
    os.replace(partial, path)
    return path


def _input_profile(size: int, bands: int) -> dict[str, Any]:
    from dasksr.demo import scene_profile

    return {
        **scene_profile(size, bands, tile=512),
        "num_threads": "ALL_CPUS",
        "bigtiff": "IF_SAFER",
    }


def _write_synthetic(path: Path, size: int, bands: int) -> None:
    import rasterio
    from rasterio.windows import Window

    from dasksr.demo import make_scene

    tile = min(size, SCENE_TILE)
    base = make_scene(tile, bands)
    with rasterio.open(path, "w", **_input_profile(size, bands)) as dst:
        dst.update_tags(**{SCENE_TAG: "synthetic"})
        for i, y0 in enumerate(range(0, size, tile)):
            for j, x0 in enumerate(range(0, size, tile)):
                piece = base[:, :: -1 if i % 2 else 1, :: -1 if j % 2 else 1]
                h, w = min(tile, size - y0), min(tile, size - x0)
                dst.write(piece[:, :h, :w], window=Window(x0, y0, w, h))


def _write_real(path: Path, size: int, bands: int, rows: int = 512) -> None:
    import rasterio
    from rasterio.windows import Window

    from dasksr.scenes import SENTINEL2_NATIVE, read_bands

    require_real_bands(bands)
    names = REAL_BANDS[:bands]
    native, transform = read_bands([SENTINEL2_NATIVE[b] for b in names])
    _, height, width = native.shape
    columns = mirrored(width, 0, size)
    profile = {**_input_profile(size, bands), "crs": "EPSG:32618", "transform": transform}
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(**{SCENE_TAG: "real"})
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        for y0 in range(0, size, rows):
            h = min(rows, size - y0)
            strip = native[:, mirrored(height, y0, y0 + h)][:, :, columns]
            dst.write(strip, window=Window(0, y0, size, h))


@dataclass(frozen=True)
class Job:
    """One end-to-end job: a command line turning ``src`` into ``dst``."""

    key: str
    label: str
    suffix: str
    argv: Callable[[Path, Path, int], list[str]]
    notes: str = ""


def _dasksr(method: str) -> Callable[[Path, Path, int], list[str]]:
    return lambda src, dst, size: [
        sys.executable,
        "-m",
        "dasksr.cli",
        "upscale",
        str(src),
        str(dst),
        "--scale",
        str(SCALE),
        "--method",
        method,
        "--no-progress",
        "--overwrite",
    ]


def _gdalwarp(src: Path, dst: Path, size: int) -> list[str]:
    n = str(size * SCALE)
    return [
        shutil.which("gdalwarp") or "gdalwarp",
        "-q",
        "-overwrite",
        "-r",
        "cubic",
        "-multi",
        "-wo",
        "NUM_THREADS=ALL_CPUS",
        "-co",
        "TILED=YES",
        "-co",
        "COMPRESS=DEFLATE",
        "-co",
        "NUM_THREADS=ALL_CPUS",
        "-co",
        "BIGTIFF=IF_SAFER",
        "-ts",
        n,
        n,
        str(src),
        str(dst),
    ]


def _peer(name: str) -> Callable[[Path, Path, int], list[str]]:
    return lambda src, dst, size: [
        sys.executable,
        str(Path(__file__).resolve()),
        "--peer",
        name,
        str(src),
        str(dst),
    ]


JOBS: dict[str, Job] = {
    job.key: job
    for job in (
        Job(
            "dasksr-zarr",
            "dasksr bicubic -> Zarr",
            ".zarr",
            _dasksr("bicubic"),
            "`dasksr upscale --method bicubic`: Zarr 2, Blosc zstd 1, one process, 2 threads",
        ),
        Job(
            "dasksr-zarr-nearest",
            "dasksr nearest -> Zarr",
            ".zarr",
            _dasksr("nearest"),
            "the I/O floor",
        ),
        Job(
            "dasksr-zarr-workers2",
            "dasksr bicubic -> Zarr, --workers 2",
            ".zarr",
            lambda src, dst, size: [*_dasksr("bicubic")(src, dst, size), "--workers", "2"],
            "two worker processes, a thread each",
        ),
        Job(
            "dasksr-tif",
            "dasksr bicubic -> GeoTIFF",
            ".tif",
            _dasksr("bicubic"),
            "tiled 512, DEFLATE, all cores",
        ),
        Job(
            "gdalwarp",
            "gdalwarp -r cubic -multi -> GeoTIFF",
            ".tif",
            _gdalwarp,
            "NUM_THREADS=ALL_CPUS, tiled, DEFLATE",
        ),
        Job(
            "rioxarray",
            "rioxarray reproject -> GeoTIFF",
            ".tif",
            _peer("rioxarray"),
            "loads the whole array; cubic; tiled DEFLATE",
        ),
        Job(
            "cv2-map-overlap",
            "map_overlap around cv2 -> Zarr",
            ".zarr",
            _peer("cv2-map-overlap"),
            "INTER_CUBIC, halo 2, chunks 1024, Zarr 2, Blosc zstd 1, threads",
        ),
        Job(
            "odc-geo",
            "odc-geo xr_reproject -> Zarr",
            ".zarr",
            _peer("odc-geo"),
            "cubic, no halo (see the seam table), Zarr 2, Blosc zstd 1, threads",
        ),
    )
}
DASKSR_JOBS = ("dasksr-zarr", "dasksr-zarr-nearest", "dasksr-tif")


def available_jobs() -> list[str]:
    """Keys of the jobs whose tools are installed here."""
    import importlib.util

    keys = list(JOBS)
    if shutil.which("gdalwarp") is None:
        keys.remove("gdalwarp")
    if importlib.util.find_spec("cv2") is None:
        keys.remove("cv2-map-overlap")
    if importlib.util.find_spec("odc") is None or importlib.util.find_spec("odc.geo") is None:
        keys.remove("odc-geo")
    return keys


@dataclass
class RunResult:
    seconds: float
    peak_rss: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], *, cwd: Path | None = None, interval: float = 0.05) -> RunResult:
    """Run ``argv``; return its wall time and the peak RSS of its process tree.

    Every ``interval`` seconds the tree's current RSS is summed (psutil) and each process's own
    high-water mark (``VmHWM``, which catches a spike between two samples) is read; the peak is the
    larger of the largest sum and the largest high-water mark. (``wait4``'s ``ru_maxrss`` is not
    used: Linux carries the parent's high-water mark over fork and exec into the child's.)
    """
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=job_environment(),
        )
        peak = 0
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a child may end meanwhile
                        total += p.memory_info().rss
                        peak = max(peak, _high_water_mark(p.pid))
                peak = max(peak, total)
            time.sleep(interval)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return RunResult(seconds, peak, proc.returncode, out.read(), err.read())


def _high_water_mark(pid: int) -> int:
    """Peak RSS of process ``pid`` so far in bytes (Linux ``VmHWM``), or 0 where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
    partial = path.with_name(path.name + ".partial")
    if partial.is_dir():
        shutil.rmtree(partial, ignore_errors=True)


def _output_shape(path: Path) -> tuple[int, ...]:
    if path.suffix == ".zarr":
        import zarr

        node = zarr.open(path, mode="r")
        if isinstance(node, zarr.Array):
            return tuple(node.shape)
        arrays = [a for _, a in node.arrays() if a.ndim == 3]
        return tuple(arrays[0].shape) if arrays else ()
    import rasterio

    with rasterio.open(path) as src:
        return (src.count, src.height, src.width)


def _reported_seconds(stdout: str) -> float | None:
    match = re.search(r" in ([0-9.]+) s,", stdout)
    return float(match.group(1)) if match else None


def bench_end_to_end(
    workdir: Path,
    size: int = 8192,
    runs: int = 3,
    jobs: Sequence[str] | None = None,
    bands: int = 3,
    title: str | None = None,
    *,
    scene: str = "real",
    warmup: bool = True,
) -> Section:
    """Section 3: each job as a subprocess on one scene, interleaved run by run after one untimed
    warm-up round (``warmup``); the values are keyed ``e2e {scene} {job} ...``."""
    jobs = list(jobs) if jobs is not None else available_jobs()
    workdir.mkdir(parents=True, exist_ok=True)
    src = make_input(scene_file(workdir, scene, size), size, bands, scene=scene)
    out_mpix = bands * (size * SCALE) ** 2 / 1e6
    expected = (bands, size * SCALE, size * SCALE)
    results: dict[str, list[RunResult]] = {key: [] for key in jobs}
    for timed in [False] * warmup + [True] * runs:
        for key in jobs:
            job = JOBS[key]
            dst = workdir / f"out_{key}{job.suffix}"
            _remove(dst)
            gc.collect()
            # cwd: `python -m` puts it first on sys.path; keep the dasksr this process imports.
            result = run_measured(job.argv(src, dst, size), cwd=workdir)
            if result.returncode != 0:
                raise RuntimeError(
                    f"{job.label} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                )
            shape = _output_shape(dst)
            if shape != expected:
                raise RuntimeError(f"{job.label} wrote shape {shape}, expected {expected}")
            if timed:
                results[key].append(result)
            _remove(dst)
    section = Section(
        title
        or f"End to end, {SCENE_NAMES[scene]} scene: {bands}x{size}x{size} uint16 GeoTIFF -> "
        f"x{SCALE} ({out_mpix:.0f} output MPix), median of {runs}",
        [
            "job",
            "median s",
            "output MPix/s",
            "peak RSS GiB",
            "x gdalwarp speed",
            "in-process MPix/s",
            "notes",
        ],
    )
    median_s = {k: _median([r.seconds for r in v]) for k, v in results.items()}
    peak = {k: max(r.peak_rss for r in v) / GIB for k, v in results.items()}
    warp = median_s.get("gdalwarp")
    for key in jobs:
        inner = [s for s in (_reported_seconds(r.stdout) for r in results[key]) if s]
        section.rows.append(
            [
                JOBS[key].label,
                _fmt(median_s[key], 1),
                _fmt(out_mpix / median_s[key], 1),
                _fmt(peak[key]),
                _fmt(warp / median_s[key]) if warp else "-",
                _fmt(out_mpix / _median(inner), 1) if inner else "-",
                JOBS[key].notes,
            ]
        )
        section.values[f"e2e {scene} {key} s"] = median_s[key]
        section.values[f"e2e {scene} {key} MPix/s"] = out_mpix / median_s[key]
        section.values[f"e2e {scene} {key} RSS GiB"] = peak[key]
    section.values[f"e2e {scene} size"] = size
    section.notes += [
        SCENE_NOTES[scene],
        "Wall time and throughput are of the whole command (interpreter start, imports and cluster "
        f"start included){', after one untimed warm-up round' if warmup else ''}; 'in-process' is "
        "the write time the dasksr command reports itself.",
        "Peak RSS: the largest sum of the RSS of the job's process tree (psutil, 50 ms samples) "
        "or the largest VmHWM of one of its processes, whichever is larger; the maximum over the "
        "runs.",
    ]
    return section


# ----------------------------------------------------------------------------------------------
# Peers run as subprocesses (``speed.py --peer NAME SRC DST``)
# ----------------------------------------------------------------------------------------------


def _store_zarr(array: Any, dst: str) -> None:
    """Write a dask array to Zarr as the dasksr command does by default (like for like): format 2,
    Blosc zstd level 1 on bit-shuffled pixels, one Zarr chunk per dask chunk."""
    import dask.array as da
    import zarr

    array = array.rechunk(array.chunksize)
    z = zarr.create_array(
        dst,
        shape=array.shape,
        chunks=array.chunksize,
        dtype=array.dtype,
        zarr_format=2,
        compressors=[_peer_compressor()],
        overwrite=True,
    )
    da.store(array, z, lock=False, scheduler="threads")


def _peer_compressor() -> Any:
    """The compressor of dasksr's default Zarr output (``--zarr-format 2``, zstd level 1)."""
    from dasksr.io.zarr_write import _compressor

    return _compressor("zstd", 1, 2)


def peer_rioxarray(src: str, dst: str) -> None:
    import rioxarray
    from rasterio.enums import Resampling

    data = rioxarray.open_rasterio(src, mask_and_scale=False)
    ny, nx = data.rio.shape
    fine = data.rio.reproject(
        data.rio.crs,
        shape=(ny * SCALE, nx * SCALE),
        resampling=Resampling.cubic,
        num_threads=os.cpu_count() or 1,
    )
    fine.rio.to_raster(
        dst, tiled=True, compress="DEFLATE", num_threads="ALL_CPUS", bigtiff="IF_SAFER"
    )


def peer_cv2_map_overlap(src: str, dst: str) -> None:
    import cv2
    import rioxarray

    cv2.setNumThreads(1)  # dask's threads are the parallelism
    data = rioxarray.open_rasterio(
        src, chunks={"band": -1, "y": CHUNK, "x": CHUNK}, lock=False, mask_and_scale=False
    )
    _store_zarr(cv2_map_overlap(data.data, SCALE), dst)


def peer_odc_geo(src: str, dst: str) -> None:
    import odc.geo.xr  # noqa: F401  (registers the odc accessor)
    import rioxarray
    from odc.geo.xr import xr_reproject

    data = rioxarray.open_rasterio(
        src, chunks={"band": -1, "y": CHUNK, "x": CHUNK}, lock=False, mask_and_scale=False
    )
    fine = xr_reproject(data, data.odc.geobox.zoom_out(1 / SCALE), resampling="cubic")
    _store_zarr(fine.data, dst)


PEERS = {
    "rioxarray": peer_rioxarray,
    "cv2-map-overlap": peer_cv2_map_overlap,
    "odc-geo": peer_odc_geo,
}


# ----------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------


def targets(values: dict[str, float], *, measured_only: bool = False) -> Section:
    """The issues' targets, each with the measured number and whether it is met.

    The end-to-end targets are judged on the real-texture scene (``e2e real ...`` values); the
    synthetic scene's ratios follow as rows of their own, not judged. ``measured_only`` leaves
    out the targets that have no number (``benchmarks/startup.py`` measures only some).
    """
    v = values.get
    section = Section("Targets (issues 3, 11 and 23)", ["target", "required", "measured", "met"])

    def add(
        name: str,
        required: str,
        measured: float | None,
        ok: Callable[[float], bool] | None,
        digits: int = 2,
    ) -> None:
        if measured is None or not np.isfinite(measured):
            if not measured_only:
                section.rows.append([name, required, "not measured", "-"])
        elif ok is None:  # shown beside a judged row, not judged itself
            section.rows.append([name, required, _fmt(measured, digits), "-"])
        else:
            section.rows.append(
                [name, required, _fmt(measured, digits), "yes" if ok(measured) else "**no**"]
            )

    add(
        "kernel bicubic vs cv2 INTER_CUBIC (throughput ratio)",
        ">= 0.5",
        v("kernel dasksr bicubic x cv2"),
        lambda m: m >= 0.5,
    )
    add(
        "kernel lanczos vs cv2 INTER_LANCZOS4 (throughput ratio)",
        ">= 0.5",
        v("kernel dasksr lanczos x cv2"),
        lambda m: m >= 0.5,
    )
    add(
        "blockwise da.store time / whole-array kernel time",
        "<= 1.5",
        v("blockwise store x"),
        lambda m: m <= 1.5,
    )
    add(
        "64 x 64 x 3 job, process start included, median after a warm-up, s "
        "(benchmarks/startup.py)",
        "<= 1.0",
        v("small dasksr s"),
        lambda m: m <= 1.0,
    )

    def ratio(scene: str, numerator: str, denominator: str) -> float | None:
        top, bottom = v(f"e2e {scene} {numerator} s"), v(f"e2e {scene} {denominator} s")
        return top / bottom if top and bottom else None

    for scene in SCENES:
        judged = scene == "real"
        size = v(f"e2e {scene} size")
        where = (
            f"{SCENE_NAMES[scene]} {int(size)}² scene" if size else f"{SCENE_NAMES[scene]} scene"
        )
        for output, key, required in (("Zarr", "dasksr-zarr", 3), ("GeoTIFF", "dasksr-tif", 1.5)):
            add(
                f"end to end {output} throughput / gdalwarp, {where}",
                f">= {required}" if judged else "not judged",
                ratio(scene, "gdalwarp", key),
                (lambda m, required=required: m >= required) if judged else None,
            )
    add(
        "end to end Zarr bicubic time / nearest time, real-texture scene",
        "<= 1.3",
        ratio("real", "dasksr-zarr", "dasksr-zarr-nearest"),
        lambda m: m <= 1.3,
    )
    add(
        "end to end Zarr, --workers 2 throughput / in-process, real-texture scene (issue 11)",
        ">= 0.85",
        ratio("real", "dasksr-zarr", "dasksr-zarr-workers2"),
        lambda m: m >= 0.85,
    )

    def rss(prefix: str, scene: str) -> list[tuple[str, float]]:
        found = [(k, v(f"{prefix} {scene} {k} RSS GiB")) for k in DASKSR_JOBS]
        return [(k, r) for k, r in found if r]

    largest = max((r for s in SCENES for _, r in rss("e2e", s)), default=None)
    add("peak RSS of the dasksr jobs, GiB (largest)", "<= 1", largest, lambda m: m <= 1.0)
    growth = [
        r / dict(rss("e2e", s))[k]
        for s in SCENES
        for k, r in rss("large", s)
        if k in dict(rss("e2e", s))
    ]
    add(
        "peak RSS growth, 4x scene / 1x scene (largest)",
        "<= 1.2",
        max(growth) if growth else None,
        lambda m: m <= 1.2,
    )
    add(
        "peak RSS on the 4x scene, GiB (largest)",
        "<= 1.2",
        max((r for s in SCENES for _, r in rss("large", s)), default=None),
        lambda m: m <= 1.2,
    )
    section.notes.append(
        "Issue 23 states the end-to-end targets on the real-texture 4096² scene, process start "
        "included, after one warm-up run (`benchmarks/startup.py --parts scene`); this run's "
        "scene sizes are in the rows."
    )
    return section


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> str:
    """Run the selected sections, print each table as it is done; return the whole report."""
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    kernel_size, block_size, chunk = (512, 1024, 256) if quick else (4096, 4096, CHUNK)
    size = args.size or (1024 if quick else 8192)
    sections = args.sections.split(",")
    if "real" in args.scenes and ("e2e" in sections or args.large):
        require_real_bands()  # before any section runs: fail in a second, not after the kernels
    report = ["## Machine", "", *machine_info(), ""]
    print("\n".join(report), flush=True)
    values: dict[str, float] = {}
    owned = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dasksr-bench-"))

    def emit(section: Section) -> None:
        values.update(section.values)
        text = section.markdown()
        report.append(text)
        print(text, flush=True)

    try:
        if "kernel" in sections:
            emit(bench_kernel(kernel_size, runs))
        if "blockwise" in sections:
            emit(bench_blockwise(block_size, chunk, runs))
        if "seams" in sections:
            emit(bench_seams(*((512, 128) if quick else (2048, 512))))
        if "e2e" in sections:
            for scene in args.scenes:
                emit(bench_end_to_end(workdir, size, runs, jobs=args.jobs, scene=scene))
        if args.large:
            scene, edge = args.scenes[0], size * 2
            large = bench_end_to_end(
                workdir,
                edge,
                runs,
                jobs=DASKSR_JOBS,
                title=f"End to end, 4x {SCENE_NAMES[scene]} scene: 3x{edge}x{edge} uint16 -> "
                f"x{SCALE} ({3 * (edge * SCALE) ** 2 / 1e6:.0f} output MPix), dasksr only, "
                f"median of {runs}",
                scene=scene,
            )
            large.values = {k.replace("e2e ", "large ", 1): x for k, x in large.values.items()}
            emit(large)
        emit(targets(values))
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)
    command = "python benchmarks/speed.py " + " ".join(args.argv)
    return f"Command: `{command.strip()}`\n\n" + "\n".join(report)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 1 run: a smoke test that finishes in under a minute",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per candidate (default 3)")
    parser.add_argument(
        "--large",
        action="store_true",
        help="also run the dasksr jobs on the 4x scene (2x the edge): slow",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="edge of the end-to-end scene (default 8192; 1024 with --quick)",
    )
    parser.add_argument(
        "--scene",
        choices=(*SCENES, "both"),
        default="both",
        help="end-to-end scene: the native Sentinel-2 bands mirrored to size (real), "
        "dasksr.demo.make_scene (synthetic), or both, real first (default); --large runs the "
        "first of them",
    )
    parser.add_argument(
        "--sections",
        default="kernel,blockwise,seams,e2e",
        help="comma-separated subset of kernel,blockwise,seams,e2e",
    )
    parser.add_argument(
        "--jobs",
        type=lambda text: text.split(","),
        default=None,
        help=f"comma-separated end-to-end jobs (default: those installed of {','.join(JOBS)})",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep inputs here (default: a temporary folder, removed at the end)",
    )
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    parser.add_argument("--peer", nargs=3, metavar=("NAME", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scenes = list(SCENES) if args.scene == "both" else [args.scene]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peer:
        name, src, dst = args.peer
        PEERS[name](src, dst)
        return 0
    try:
        text = run(args)
    except SceneDataMissing as exc:
        print(f"speed.py: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
