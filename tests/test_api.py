"""The public API on NumPy, Dask and xarray: grid, georeferencing, validation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

import dasksr
from dasksr.errors import InvalidArgumentError, InvalidScaleError, UnknownMethodError


def georeferenced(
    bands: int = 2, ny: int = 30, nx: int = 40, dtype: str = "uint16"
) -> xr.DataArray:
    transform = Affine(20.0, 0.0, 600000.0, 0.0, -20.0, 4100000.0)
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    rng = np.random.default_rng(0)
    values = rng.integers(1, 5000, (bands, ny, nx)).astype(dtype)
    data = xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={"band": np.arange(1, bands + 1), "y": y, "x": x},
        attrs={"long_name": tuple(f"b{i}" for i in range(bands)), "units": "DN"},
        name="reflectance",
    )
    return data.rio.write_crs("EPSG:32631").rio.write_transform(transform).rio.write_nodata(0)


@pytest.mark.parametrize("scale", [2, 3, 8])
def test_dataarray_grid_and_georeferencing(scale: int) -> None:
    data = georeferenced()
    out = data.chunk({"x": 16, "y": 7}).sr.upscale(scale=scale, method="bicubic")
    assert isinstance(out.data, da.Array)  # lazy
    assert out.shape == (2, 30 * scale, 40 * scale)
    assert out.dtype == data.dtype
    t = data.rio.transform()
    assert out.rio.transform() == t @ Affine.scale(1 / scale)
    np.testing.assert_allclose(out.rio.bounds(), data.rio.bounds())
    assert out.rio.crs == data.rio.crs
    assert out.rio.nodata == 0
    j = np.arange(40 * scale)
    np.testing.assert_allclose(out.x.values, t.c + (j + 0.5) * t.a / scale)
    i = np.arange(30 * scale)
    np.testing.assert_allclose(out.y.values, t.f + (i + 0.5) * t.e / scale)
    assert out.attrs["long_name"] == data.attrs["long_name"]
    assert out.attrs["units"] == "DN"
    assert out.name == "reflectance"
    np.testing.assert_array_equal(out.band, data.band)
    np.testing.assert_array_equal(
        out.values, dasksr.upscale(data.values, scale, "bicubic", nodata=0)
    )


def test_numpy_backed_dataarray_stays_eager_and_chunks_make_it_lazy() -> None:
    data = georeferenced()
    eager = dasksr.upscale(data, 2, "bilinear")
    assert isinstance(eager.data, np.ndarray)
    lazy = dasksr.upscale(data, 2, "bilinear", chunks={"y": 10, "x": 10})
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_spatial_dims_are_moved_last() -> None:
    data = georeferenced().transpose("y", "x", "band")
    out = data.sr.upscale(scale=2, method="nearest")
    assert out.dims == ("band", "y", "x")
    np.testing.assert_array_equal(out.isel(band=0).values[::2, ::2], data.isel(band=0).values)


def test_plain_dataarray_without_coordinates_gets_pixel_positions() -> None:
    data = xr.DataArray(np.ones((3, 4), np.float32), dims=("y", "x"))
    out = data.sr.upscale(scale=2)
    np.testing.assert_allclose(out.x.values, (np.arange(8) + 0.5) / 2 - 0.5)


def test_dataset_upscales_every_spatial_variable() -> None:
    a = georeferenced()
    ds = xr.Dataset({"a": a, "b": a.isel(band=0).astype("float32"), "meta": ("band", [1.0, 2.0])})
    out = ds.sr.upscale(scale=2, method="lanczos")
    assert out["a"].shape == (2, 60, 80)
    assert out["b"].shape == (60, 80)
    assert out["b"].dtype == np.float32
    np.testing.assert_array_equal(out["meta"].values, [1.0, 2.0])
    assert out.rio.crs == a.rio.crs


def test_dask_array_in_dask_array_out_with_scaled_chunks() -> None:
    x = da.ones((3, 50, 70), chunks=(1, 20, 30), dtype=np.float32)
    out = dasksr.upscale(x, 4, "bicubic")
    assert isinstance(out, da.Array)
    assert out.chunks == ((1, 1, 1), (80, 80, 40), (120, 120, 40))
    np.testing.assert_allclose(out.compute(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("scale", [0, 1, 1.5, -2, 9, "2", True])
def test_impossible_scales_are_refused(scale: object) -> None:
    with pytest.raises(InvalidScaleError, match="scale="):
        dasksr.upscale(np.ones((4, 4)), scale, "bicubic")  # type: ignore[arg-type]


def test_float_scale_with_integer_value_is_accepted() -> None:
    assert dasksr.upscale(np.ones((2, 2)), 2.0, "nearest").shape == (4, 4)  # type: ignore[arg-type]


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(UnknownMethodError, match=r"choose one of .*bicubic"):
        dasksr.upscale(np.ones((4, 4)), 2, "cubic-spline")


@pytest.mark.parametrize(
    "bad", [np.ones(5), np.ones((3, 3), dtype=bool), np.ones((3, 3), dtype=np.complex64)]
)
def test_bad_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError):
        dasksr.upscale(bad, 2, "bilinear")


def test_output_dtype_can_be_asked_for() -> None:
    out = dasksr.upscale(np.array([[0, 255]], dtype=np.uint8), 2, "bilinear", dtype="float32")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0, 63.75, 191.25, 255])


def test_narrowing_dtype_clips_instead_of_wrapping() -> None:
    image = np.array([[300, 10], [70000 // 2, 0]], dtype=np.uint16)
    out = dasksr.upscale(image, 2, "nearest", dtype="uint8")
    np.testing.assert_array_equal(out[::2, ::2], [[255, 10], [255, 0]])
    lazy = dasksr.upscale(da.from_array(image, chunks=1), 2, "bicubic", dtype="int16")
    expected = np.clip(
        np.rint(dasksr.upscale(image.astype(np.float32), 2, "bicubic")), -32768, 32767
    )
    np.testing.assert_array_equal(lazy.compute(), expected.astype(np.int16))


def test_float_to_integer_dtype_writes_nodata_for_nan() -> None:
    image = np.array([[1.4, np.nan], [3.6, 4.0]], dtype=np.float32)
    out = dasksr.upscale(image, 2, "nearest", dtype="uint8", nodata=255)
    np.testing.assert_array_equal(out[::2, ::2], [[1, 255], [4, 4]])


def test_nearest_writes_nodata_for_nan_like_the_other_methods() -> None:
    image = np.array([[1.0, np.nan], [3.0, 4.0]], dtype=np.float32)
    for method in ("nearest", "bilinear"):
        out = dasksr.upscale(image, 2, method, nodata=-9999)
        np.testing.assert_array_equal(out[:2, 2:], -9999)
