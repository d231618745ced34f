"""The demo scene: a small multi-band uint16 GeoTIFF with a CRS and nodata, made in code."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["make_scene", "scene_profile", "write_demo_scene", "run_demo"]


def make_scene(size: int = 1024, bands: int = 3, *, seed: int = 0) -> np.ndarray:
    """A reproducible landscape-like uint16 scene ``(bands, size, size)`` with a nodata corner.

    Fields with sharp borders, roads, smooth terrain and texture give the upscalers edges and
    gradients to work on; the top-left triangle is outside the footprint (value 0, the nodata).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    terrain = (
        np.sin(6.0 * x + 2.0 * np.sin(4.0 * y)) * 0.3 + np.cos(9.0 * y - 3.0 * x) * 0.2 + 0.5 * y
    )
    fields = np.zeros((size, size), np.float32)
    for _ in range(60):
        y0, x0 = rng.integers(0, size, 2)
        h, w = rng.integers(size // 40, size // 6, 2)
        fields[y0 : y0 + h, x0 : x0 + w] = rng.uniform(-0.4, 0.4)
    roads = np.zeros((size, size), np.float32)
    for _ in range(6):
        a, b = rng.uniform(-1, 1, 2)
        roads[np.abs(a * (x - 0.5) + b * (y - 0.5) - rng.uniform(-0.3, 0.3)) < 1.5 / size] = 0.6
    texture = rng.normal(0, 0.03, (size, size)).astype(np.float32)
    scene = np.empty((bands, size, size), np.uint16)
    for b in range(bands):
        weight = 1.0 + 0.25 * b
        value = 0.45 + 0.35 * terrain * weight + fields * (1.2 - 0.3 * b) + roads + texture
        scene[b] = np.clip(800 + value * 3000, 1, 65535).astype(np.uint16)
    scene[:, (x + y) < 0.35] = 0
    return scene


def scene_profile(size: int, bands: int, *, tile: int = 256) -> dict[str, object]:
    """The rasterio profile of the demo scene: UTM 33N, 10 m pixels, nodata 0, tiled, DEFLATE."""
    from rasterio.transform import from_origin

    return {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(399960.0, 5000040.0, 10.0, 10.0),
        "nodata": 0,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
    }


def write_demo_scene(path: str | os.PathLike[str], size: int = 1024, bands: int = 3) -> Path:
    """Write the demo scene as a tiled GeoTIFF (UTM 33N, 10 m pixels, nodata 0)."""
    import rasterio

    data = make_scene(size, bands)
    profile = scene_profile(size, bands, tile=256)
    names = ["red", "green", "blue", "nir"]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i in range(bands):
            dst.set_band_description(i + 1, names[i] if i < len(names) else f"band{i + 1}")
    return Path(path)


def run_demo(
    folder: str | os.PathLike[str] = "dasksr-demo",
    *,
    scale: int = 2,
    method: str = "bicubic",
    size: int = 1024,
    overwrite: bool = True,
    chunks: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Write the demo scene in ``folder``, upscale it to Zarr and GeoTIFF, as ``dasksr demo``.

    ``say`` is given a line for the input, one for each output (`dasksr.report.summary`) and one
    at the end; returns the folder.
    """
    from dasksr.errors import InvalidArgumentError
    from dasksr.report import summary, upscale_file

    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot create demo folder {str(folder)!r} ({exc.strerror}): choose another"
        ) from None
    source = write_demo_scene(out / "scene.tif", size=size)
    say(f"input:  {source} ({size} x {size}, 3 bands, uint16, EPSG:32633, nodata 0)")
    start = time.perf_counter()
    for name in (f"scene_x{scale}.zarr", f"scene_x{scale}.tif"):
        written = upscale_file(
            str(source),
            str(out / name),
            scale=scale,
            method=method,
            chunks=chunks or 256,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        )
        say(summary(written))
    say(f"demo done in {time.perf_counter() - start:.1f} s: outputs in {out.resolve()}")
    return out
