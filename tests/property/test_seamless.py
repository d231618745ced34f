"""The seamless contract (design.md section 2), for every registered method.

``upscale(x chunked as C) == upscale(x as one chunk)``: identical for integer outputs, within 1e-5 of
the data range for floats, over random shapes (1-pixel and odd sizes included), random chunkings
(chunks that do not divide the shape and chunks smaller than the halo), scales 2..8, input dtypes
(8- to 32-bit integers, float32, float64) and output dtypes (``dtype=``).

The arrays reach the planner (:mod:`dasksr.operation`) the ways users' arrays do: any dask array
(the ``'overlap'`` wiring), a DataArray holding an explicit source (``'source'``), windows of it
(band picks, spatial slices, ``astype``), and GeoTIFFs (tiled and striped) and Zarr stores of
random shapes, blocks and chunkings written here and opened with ``open_raster``, so that the
readers' block assembly and their shared cache are inside the contract.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.base import tokenize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dasksr
from dasksr.api import plan_upscale, upscale_numpy, upscale_operation
from dasksr.blockwise import OperationWindows, Source
from dasksr.kernels.values import nodata_fits
from dasksr.methods import get_method, list_methods
from dasksr.sources import attach_source, source_window

METHODS = [m.name for m in list_methods()]
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.float32, np.float64]
#: ``dtype=`` choices: None keeps the input dtype.
OUT_DTYPES = [None, np.uint8, np.int16, np.uint32, np.float32, np.float64]
_files = itertools.count()


@st.composite
def chunking(draw: st.DrawFn, size: int) -> tuple[int, ...]:
    """Random chunk sizes summing to ``size``: irregular, tiny and non-dividing ones included."""
    chunks: list[int] = []
    left = size
    while left > 0:
        c = draw(st.integers(min_value=1, max_value=max(1, min(left, 12))))
        chunks.append(c)
        left -= c
    return tuple(chunks)


@st.composite
def rasters(
    draw: st.DrawFn, scales: tuple[int, ...] = tuple(range(2, 9))
) -> tuple[np.ndarray, tuple[tuple[int, ...], ...], int, float | None, np.dtype | None]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    bands = draw(st.integers(0, 2))
    ny = draw(st.integers(1, 30))
    nx = draw(st.integers(1, 30))
    shape = ((bands,) if bands else ()) + (ny, nx)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        data = rng.normal(0, 100, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    nodata = None
    if draw(st.booleans()):
        hole = rng.random(shape) < draw(st.sampled_from([0.05, 0.3]))
        if dtype.kind == "f":
            nodata = draw(st.sampled_from([None, -9999.0]))
            data[hole] = np.nan if nodata is None else nodata
        else:
            nodata = float(np.iinfo(dtype).min if draw(st.booleans()) else 0)
            data[hole] = nodata
    out = draw(st.sampled_from(OUT_DTYPES))
    out_dtype = None if out is None else np.dtype(out)
    if nodata is not None and out_dtype is not None and not nodata_fits(nodata, out_dtype):
        out_dtype = None  # refused up front (tests/test_api.py); keep the input dtype
    chunks = tuple(draw(chunking(n)) for n in shape)
    scale = draw(st.sampled_from(scales))
    return data, chunks, scale, nodata, out_dtype


def assert_seamless(whole: np.ndarray, chunked: np.ndarray) -> None:
    assert whole.shape == chunked.shape
    assert whole.dtype == chunked.dtype
    if whole.dtype.kind in "iu":
        np.testing.assert_array_equal(chunked, whole)
        return
    nan = np.isnan(whole)
    np.testing.assert_array_equal(np.isnan(chunked), nan)
    if nan.all():
        return
    finite = whole[~nan]
    span = float(finite.max() - finite.min()) or 1.0
    assert float(np.max(np.abs(chunked[~nan] - finite))) <= 1e-5 * span


def whole_image(
    data: np.ndarray, method: str, scale: int, nodata: float | None, out_dtype: np.dtype | None
) -> np.ndarray:
    """The reference: the whole image as one block (NumPy in, NumPy out)."""
    return dasksr.upscale(data, scale=scale, method=method, nodata=nodata, dtype=out_dtype)


def chunked_result(lazy: da.Array) -> np.ndarray:
    with dask.config.set(scheduler="synchronous"):
        return lazy.compute()


def examples(n: int) -> Any:
    """Hypothesis settings of these tests: ``n`` examples, no deadline, large draws allowed."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def for_every_method(n: int, drawer: str) -> Any:
    """Run a property test for every registered method with ``n`` examples; ``drawer`` names its
    hypothesis ``st.data()`` argument."""

    def wrap(test: Any) -> Any:
        drawn = given(**{drawer: st.data()})(test)
        return pytest.mark.parametrize("method", METHODS)(examples(n)(drawn))

    return wrap


def sourced(data: np.ndarray, chunks: tuple[tuple[int, ...], ...]) -> xr.DataArray:
    """``data`` as a DataArray whose pixels come from an explicit source (as open_raster's do)."""
    dims = ("band", "y", "x")[-data.ndim :]
    coords = {d: np.arange(n) + 0.5 for d, n in zip(dims, data.shape, strict=True)}
    template = xr.DataArray(data, dims=dims, coords=coords)
    return attach_source(template, Source(data, chunks, name="source-" + tokenize(data, chunks)))


@pytest.mark.parametrize("wiring", ["overlap", "source"])
@pytest.mark.parametrize("method", METHODS)
@examples(40)
@given(draw=st.data())
def test_chunked_equals_whole_image(method: str, wiring: str, draw: st.DataObject) -> None:
    # Two wirings (see dasksr.operation): a dask array of any origin, whose blocks get their halo
    # from their neighbours (chunks smaller than the halo are merged first), and a DataArray
    # holding a source, whose tasks read their own haloed windows and keep every chunk as it is.
    case = draw.draw(rasters(get_method(method).scales), label="case")
    data, chunks, scale, nodata, out_dtype = case
    halo = get_method(method).halo(scale)
    whole = whole_image(data, method, scale, nodata, out_dtype)
    if wiring == "source":
        array = sourced(data, chunks)
        kept = chunks[-2]
    else:
        array = da.from_array(data, chunks=chunks)
        kept = dasksr.blockwise.merge_small_chunks(chunks[-2], halo)
    planned = plan_upscale(array, scale=scale, method=method, nodata=nodata, dtype=out_dtype)
    assert planned.wiring == (wiring if halo else "overlap")
    lazy = planned.array
    assert lazy.chunks[-2] == tuple(c * scale for c in kept)
    assert_seamless(whole, chunked_result(lazy))


@st.composite
def windows(draw: st.DrawFn, shape: tuple[int, ...]) -> dict[str, object]:
    """A selection users make before upscaling: a band pick and a spatial window (any step)."""
    picks: dict[str, object] = {}
    if len(shape) == 3:
        bands = draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=3, unique=True))
        picks["band"] = bands[0] if draw(st.booleans()) else bands
    for dim, n in zip(("y", "x"), shape[-2:], strict=True):
        start = draw(st.integers(0, n - 1))
        stop = draw(st.integers(start + 1, n))
        step = draw(st.sampled_from([1, 1, 2]))
        picks[dim] = slice(start, stop, step)
    return picks


@for_every_method(25, "draw")
def test_windows_of_a_source_equal_the_whole_image_of_the_window(
    method: str, draw: st.DataObject
) -> None:
    # Band picks, spatial windows and astype keep the source wiring and its contract.
    data, chunks, scale, nodata, out_dtype = draw.draw(rasters(get_method(method).scales))
    picks = draw.draw(windows(data.shape), label="window")
    cast = draw.draw(st.sampled_from([None, np.float32, np.float64]), label="astype")
    selected = sourced(data, chunks).isel(picks)
    if cast is not None:
        selected = selected.astype(cast)
    assert source_window(selected) is not None
    if nodata is not None and not nodata_fits(nodata, selected.dtype):
        nodata = None
    whole = whole_image(selected.values, method, scale, nodata, out_dtype)
    planned = plan_upscale(selected, scale=scale, method=method, nodata=nodata, dtype=out_dtype)
    assert planned.wiring == ("source" if get_method(method).halo(scale) else "overlap")
    assert_seamless(whole, chunked_result(planned.array))


@st.composite
def layouts(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[str, tuple[int, int]]:
    """How a file stores ``shape``: tiled or striped GeoTIFF blocks, or Zarr chunks."""
    kind = draw(st.sampled_from(["tiled", "striped", "zarr"]))
    ny, nx = shape[-2:]
    if kind == "tiled":  # GeoTIFF tiles are multiples of 16
        block = (draw(st.sampled_from([16, 32])), draw(st.sampled_from([16, 32])))
    elif kind == "striped":
        block = (draw(st.integers(1, max(1, ny))), nx)
    else:
        block = (draw(st.integers(1, max(1, ny))), draw(st.integers(1, max(1, nx))))
    return kind, block


def write_file(folder: Path, data: np.ndarray, kind: str, block: tuple[int, int]) -> Path:
    """``data`` (band, y, x) as a GeoTIFF or a Zarr store, with rasterio or xarray directly."""
    from affine import Affine

    path = folder / f"r{next(_files)}.{'zarr' if kind == 'zarr' else 'tif'}"
    bands, ny, nx = data.shape
    if kind == "zarr":
        import xarray as xr

        ds = xr.DataArray(data, dims=("band", "y", "x")).to_dataset(name="data")
        encoding = {"data": {"chunks": (1, *block), "_FillValue": None}}
        ds.to_zarr(path, encoding=encoding, zarr_format=3, consolidated=False)
        return path
    import rasterio

    profile = {
        "driver": "GTiff",
        "width": nx,
        "height": ny,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": "EPSG:32633",
        "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0),
        "compress": "deflate",
    }
    if kind == "tiled":
        profile.update(tiled=True, blockysize=block[0], blockxsize=block[1])
    else:
        profile.update(tiled=False, blockysize=block[0])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@for_every_method(20, "data")
def test_files_read_through_the_source_wiring_equal_the_whole_image(
    method: str, data: st.DataObject
) -> None:
    # GeoTIFFs and Zarr stores written here, opened with open_raster and random dask chunks: every
    # task reads its haloed window through the readers' block assembly and their shared cache.
    case = data.draw(rasters(get_method(method).scales), label="case")
    image, chunks, scale, nodata, out_dtype = case
    image = image if image.ndim == 3 else image[None]
    kind, block = data.draw(layouts(image.shape), label="layout")
    whole = whole_image(image, method, scale, nodata, out_dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = write_file(Path(folder), image, kind, block)
        opened = dasksr.open_raster(path, chunks={"y": chunks[-2], "x": chunks[-1]})
        assert opened.data.chunks[-2:] == chunks[-2:]
        assert source_window(opened) is not None
        lazy = dasksr.upscale(opened, scale=scale, method=method, nodata=nodata, dtype=out_dtype)
        assert_seamless(whole, chunked_result(lazy.data))


@pytest.mark.parametrize("method", METHODS)
def test_large_irregular_chunks_with_threads(method: str) -> None:
    """Many blocks, computed by the threaded scheduler, on a smooth image with a nodata hole."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:157, 0:211]
    data = 30000 + 20000 * np.sin(x / 7.0) * np.cos(y / 11.0) + rng.normal(0, 300, x.shape)
    data = data.astype(np.uint16)
    data[40:60, 90:130] = 0
    scales = get_method(method).scales
    scale = 3 if 3 in scales else min(scales)
    whole = upscale_numpy(data, get_method(method), scale, nodata=0)
    chunked = dasksr.upscale(
        da.from_array(data, chunks=((50, 1, 60, 46), (2, 100, 109))),
        scale=scale,
        method=method,
        nodata=0,
    ).compute(scheduler="threads")
    assert_seamless(whole, chunked)


@st.composite
def regions(draw: st.DrawFn, n: int) -> slice | int:
    """An index along an axis of length ``n``: an int, or a slice with any step, even negative."""
    if draw(st.booleans()):
        return draw(st.integers(-n, n - 1))
    start = draw(st.none() | st.integers(-n - 2, n + 2))
    stop = draw(st.none() | st.integers(-n - 2, n + 2))
    step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
    return slice(start, stop, step)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_region_of_a_source_reads_as_the_whole_image(data: st.DataObject) -> None:
    # dask fuses later slicing into the read of a from_array array, so any index must work.
    method = get_method(data.draw(st.sampled_from(METHODS)))
    scale = data.draw(st.sampled_from([s for s in method.scales if s <= 5]))
    image = np.random.default_rng(data.draw(st.integers(0, 99))).normal(0, 50, (2, 9, 13))
    whole = upscale_numpy(image, method, scale)
    operation = upscale_operation(method, scale)
    computed = OperationWindows(
        (image,), operation.block, scale, operation.halo, operation.boundary, image.dtype
    )
    key = (
        data.draw(regions(2)),
        data.draw(regions(9 * scale)),
        data.draw(regions(13 * scale)),
    )
    got = computed[key]
    assert got.shape == whole[key].shape
    np.testing.assert_allclose(got, whole[key], rtol=0, atol=1e-9)
