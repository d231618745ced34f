"""Explicit raster sources: which wiring runs, and that both wirings give the same bits.

A raster opened by ``open_raster`` records its source on the DataArray (`dasksr.sources`); the
selections users make before upscaling (bands, windows, ``astype``) keep it, and every output
block then reads its own haloed window from the file (the ``'source'`` wiring). Anything else
(arithmetic, a rechunk) falls back to the blocks the array holds (``'overlap'``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin

import dasksr
from dasksr.api import plan_upscale
from dasksr.sources import source_window


@pytest.fixture(scope="module")
def geotiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    data = rng.integers(100, 4000, (3, 70, 90)).astype("uint16")
    data[:, 20:25, 30:40] = 0
    path = tmp_path_factory.mktemp("sources") / "scene.tif"
    profile = {
        "driver": "GTiff",
        "width": 90,
        "height": 70,
        "count": 3,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 4000000, 10, 10),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 32,
        "blockysize": 32,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("B02", "B03", "B04")
    return path


@pytest.fixture(scope="module")
def zarr_store(geotiff: Path) -> Path:
    path = geotiff.with_suffix(".zarr")
    dasksr.to_zarr(dasksr.open_raster(geotiff), path)
    return path


SELECTIONS: dict[str, Callable[[xr.DataArray], xr.DataArray]] = {
    "opened": lambda a: a,
    "isel window": lambda a: a.isel(x=slice(7, 61), y=slice(3, 50)),
    "sel window": lambda a: a.sel(x=slice(a.x[5].item(), a.x[70].item())),
    "band list": lambda a: a.isel(band=[2, 0]),
    "one band": lambda a: a.isel(band=1),
    "sel band": lambda a: a.sel(band=[2]),
    "astype": lambda a: a.astype("float32"),
    "chained": lambda a: a.isel(band=[1]).isel(y=slice(10, 60)).astype("float64"),
    "strided": lambda a: a.isel(x=slice(0, None, 2)),
}
FALLBACKS: dict[str, Callable[[xr.DataArray], xr.DataArray]] = {
    "arithmetic": lambda a: a + 0,
    "rechunk": lambda a: a.chunk(x=13),
    "where": lambda a: a.where(a > 0, 0),
    "transpose": lambda a: a.transpose("band", "x", "y"),
}


def _overlap_result(data: xr.DataArray, **options: Any) -> np.ndarray:
    """The same upscaling through the blocks the array holds (a plain dask array has no source)."""
    prepared = data.transpose(..., "y", "x") if "y" in data.dims else data
    return np.asarray(plan_upscale(prepared.data, nodata=0, **options).array.compute())


@pytest.mark.parametrize("opener", ["geotiff", "zarr_store"])
@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("method", ["bicubic", "lanczos", "cnn-sensor"])
def test_selections_keep_the_source_wiring_and_its_bits(
    opener: str, selection: str, method: str, request: pytest.FixtureRequest
) -> None:
    opened = dasksr.open_raster(request.getfixturevalue(opener), chunks=32)
    data = SELECTIONS[selection](opened)
    assert source_window(data) is not None
    planned = plan_upscale(data, scale=2, method=method)
    assert planned.wiring == "source"
    direct = np.asarray(planned.array.compute())
    assert direct.dtype == data.dtype
    np.testing.assert_array_equal(direct, _overlap_result(data, scale=2, method=method))
    # The public API takes the same plan and puts it on the fine grid.
    public = dasksr.upscale(data, scale=2, method=method)
    np.testing.assert_array_equal(public.values, direct)


@pytest.mark.parametrize("change", list(FALLBACKS))
def test_other_changes_fall_back_to_the_blocks(geotiff: Path, change: str) -> None:
    opened = dasksr.open_raster(geotiff, chunks=32)
    data = FALLBACKS[change](opened)
    planned = plan_upscale(data, scale=3, method="bicubic")
    assert planned.wiring == "overlap"
    expected = dasksr.upscale(opened.values, scale=3, method="bicubic", nodata=0)
    if change == "transpose":
        expected = expected.transpose(0, 2, 1)
        got = dasksr.upscale(data, scale=3, method="bicubic").transpose("band", "x", "y")
        np.testing.assert_array_equal(got.values, expected)
        return
    np.testing.assert_array_equal(np.asarray(planned.array.compute()), expected)


def test_a_masked_read_keeps_its_source(geotiff: Path) -> None:
    masked = dasksr.open_raster(geotiff, masked=True, chunks=32).isel(x=slice(4, 80))
    planned = plan_upscale(masked, scale=2, method="bilinear")
    assert planned.wiring == "source"
    fine = np.asarray(planned.array.compute())
    assert fine.dtype == np.float32
    reference = dasksr.upscale(masked.values, scale=2, method="bilinear")
    np.testing.assert_array_equal(fine, reference)


def test_nearest_needs_no_halo_and_takes_the_blocks(geotiff: Path) -> None:
    opened = dasksr.open_raster(geotiff, chunks=32)
    assert plan_upscale(opened, scale=2, method="nearest").wiring == "overlap"


def test_a_dataset_of_two_rasters_never_mixes_their_sources(
    geotiff: Path, zarr_store: Path
) -> None:
    first = dasksr.open_raster(geotiff, chunks=32)
    second = dasksr.open_raster(zarr_store, chunks=32) * 2
    ds = xr.Dataset({"a": first, "b": second.astype("uint16")})
    out = dasksr.upscale(ds, scale=2, method="bicubic")
    np.testing.assert_array_equal(
        out["b"].values, dasksr.upscale((first.values * 2).astype("uint16"), scale=2, nodata=0)
    )
