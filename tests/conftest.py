"""Shared fixtures: small rasters made in code (a multi-band GeoTIFF and its Zarr twin).

The rasters are written with rasterio and xarray/rioxarray directly, never with dasksr, so that the
tests read dasksr's outputs against files it did not make.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:32633"
#: 10 m pixels, UTM 33N; the top-left corner of the raster.
TRANSFORM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)
DESCRIPTIONS = ("red", "green", "nir", "swir")


@dataclass(frozen=True)
class Raster:
    """A raster file made by a fixture and the pixels that were written into it."""

    path: Path
    data: np.ndarray  # (band, y, x), exactly as written
    transform: Affine
    crs: str
    nodata: float | None
    descriptions: tuple[str, ...]


def make_pixels(
    bands: int, height: int, width: int, dtype: str, nodata: float | None, *, seed: int = 0
) -> np.ndarray:
    """Smooth gradients, sharp steps and noise in the dtype's range, with a nodata corner."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 5.0) + 0.2 * ((x + 2 * y) % 23 > 11)
    kind = np.dtype(dtype).kind
    low, high = {"u": (1.0, 4000.0), "i": (-2000.0, 3000.0), "f": (-50.0, 500.0)}[kind]
    planes = [low + (high - low) * np.clip(base * (1 + 0.1 * b), 0, 1) for b in range(bands)]
    values = np.stack(planes) + rng.normal(0.0, (high - low) * 0.02, (bands, height, width))
    pixels = (
        values.astype(dtype) if kind == "f" else np.round(np.clip(values, low, high)).astype(dtype)
    )
    if nodata is not None:
        pixels[:, :6, :7] = nodata  # a corner outside the footprint
        pixels[:, height // 2, width // 3] = nodata  # and a lone invalid pixel inside it
    return pixels


def write_geotiff(
    path: Path,
    *,
    dtype: str = "uint16",
    bands: int = 3,
    height: int = 70,
    width: int = 90,
    nodata: float | None = 0,
    tile: int = 32,
    cog: bool = False,
    seed: int = 0,
) -> Raster:
    """Write a tiled, DEFLATE-compressed GeoTIFF (or a COG: header first, tiles in order)."""
    import rasterio
    import rasterio.shutil

    pixels = make_pixels(bands, height, width, dtype, nodata, seed=seed)
    names = tuple(
        DESCRIPTIONS[b] if b < len(DESCRIPTIONS) else f"band{b + 1}" for b in range(bands)
    )
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": dtype,
        "crs": CRS,
        "transform": TRANSFORM,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
    }
    target = path.with_name(path.stem + ".gtiff.tif") if cog else path
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(pixels)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
    if cog:
        rasterio.shutil.copy(
            target, path, driver="COG", blocksize=tile, overviews="NONE", compress="deflate"
        )
        target.unlink()
    return Raster(path, pixels, TRANSFORM, CRS, nodata, names)


def write_zarr(path: Path, raster: Raster, *, chunk: int = 32, name: str = "data") -> Raster:
    """Write ``raster``'s pixels as a Zarr store the way a rioxarray user would, chunked ``chunk``."""
    import rioxarray  # noqa: F401
    import xarray as xr

    bands, height, width = raster.data.shape
    t = raster.transform
    data = xr.DataArray(
        raster.data,
        dims=("band", "y", "x"),
        coords={
            "band": np.arange(1, bands + 1),
            "y": t.f + (np.arange(height) + 0.5) * t.e,
            "x": t.c + (np.arange(width) + 0.5) * t.a,
        },
        attrs={"long_name": list(raster.descriptions)},
        name=name,
    )
    data = data.rio.write_crs(raster.crs).rio.write_transform(t)
    if raster.nodata is not None:
        data = data.rio.write_nodata(raster.nodata, encoded=False)
    data.chunk({"band": bands, "y": chunk, "x": chunk}).to_dataset().to_zarr(
        path, mode="w", consolidated=False, zarr_format=3
    )
    return Raster(path, raster.data, t, raster.crs, raster.nodata, raster.descriptions)


def damage_tile(path: Path, row: int = 1, col: int = 1) -> None:
    """Overwrite the compressed bytes of one tile; the header and every other tile stay intact."""
    import rasterio

    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)


@pytest.fixture(scope="session")
def damaged_geotiff() -> Callable[[Path], Raster]:
    """``damaged_geotiff(path)``: a 200 x 200 COG in 64-pixel tiles whose tile (1, 1) is garbage.

    It opens, and its last tile reads: the damage only shows when the job reads rows and
    columns 64:128.
    """

    def make(path: Path) -> Raster:
        raster = write_geotiff(path, height=200, width=200, tile=64, cog=True)
        damage_tile(raster.path)
        return raster

    return make


@pytest.fixture(scope="session")
def names_damaged_tile() -> Callable[[str], bool]:
    """``names_damaged_tile(message)``: the error names a window holding the damaged tile.

    A task reads its block with the method's halo, so the window is the block's, widened.
    """

    def check(message: str) -> bool:
        found = re.search(r"rows (\d+):(\d+), columns (\d+):(\d+)", message)
        if found is None:
            return False
        r0, r1, c0, c1 = map(int, found.groups())
        return r0 < 128 and r1 > 64 and c0 < 128 and c1 > 64

    return check


@pytest.fixture(scope="session")
def make_geotiff() -> Callable[..., Raster]:
    """``make_geotiff(path, dtype=..., bands=..., nodata=..., tile=..., cog=...)`` -> Raster."""
    return write_geotiff


@pytest.fixture(scope="session")
def make_zarr() -> Callable[..., Raster]:
    """``make_zarr(path, raster, chunk=32)``: the Zarr twin of a Raster."""
    return write_zarr


@pytest.fixture
def uint16_tif(tmp_path: Path) -> Raster:
    """3-band uint16 GeoTIFF, 70 x 90 pixels in 32 x 32 tiles, EPSG:32633, nodata 0, descriptions."""
    return write_geotiff(tmp_path / "scene.tif")


@pytest.fixture
def uint16_zarr(tmp_path: Path, uint16_tif: Raster) -> Raster:
    """The same pixels as ``uint16_tif`` in a Zarr store (32 x 32 chunks), CRS on spatial_ref."""
    return write_zarr(tmp_path / "scene.zarr", uint16_tif)


@pytest.fixture(scope="module")
def load_script() -> Iterator[Callable[[str], ModuleType]]:
    """``load_script("benchmarks/speed.py")``: a script of the repository as a module.

    The benchmarks and docs/figures are scripts, not packages. Each module is registered in
    ``sys.modules`` while the test module runs (dataclasses look their module up by name) and
    removed after it.
    """
    loaded: list[str] = []

    def load(relative: str) -> ModuleType:
        path = ROOT / relative
        name = "dasksr_script_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, f"no script at {path}"
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``CI=true`` a test that skips for want of the shared data fails instead.

    Outside CI, tests that read ``../shared/data`` (marked ``data``, or skipping with a reason
    that names ``DASKSR_DATA``) skip cleanly when it is absent; CI always has it beside the clone,
    so there a missing folder must not pass unnoticed as a skip.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    if item.get_closest_marker("data") is not None or "DASKSR_DATA" in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true but the shared data is missing: {reason}"
