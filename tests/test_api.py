"""The public API on NumPy, Dask and xarray: grid, georeferencing, validation."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
import rioxarray
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
        out.values, dasksr.upscale(data.values, scale=scale, method="bicubic", nodata=0)
    )


def test_numpy_backed_dataarray_stays_eager_and_chunks_make_it_lazy() -> None:
    data = georeferenced()
    eager = dasksr.upscale(data, scale=2, method="bilinear")
    assert isinstance(eager.data, np.ndarray)
    lazy = dasksr.upscale(data, scale=2, method="bilinear", chunks={"y": 10, "x": 10})
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
    out = dasksr.upscale(x, scale=4, method="bicubic")
    assert isinstance(out, da.Array)
    assert out.chunks == ((1, 1, 1), (80, 80, 40), (120, 120, 40))
    np.testing.assert_allclose(out.compute(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("scale", [0, 1, 1.5, -2, 9, "2", True])
def test_impossible_scales_are_refused(scale: object) -> None:
    with pytest.raises(InvalidScaleError, match="scale="):
        dasksr.upscale(np.ones((4, 4)), scale=scale, method="bicubic")  # type: ignore[arg-type]


def test_float_scale_with_integer_value_is_accepted() -> None:
    assert dasksr.upscale(np.ones((2, 2)), scale=2.0, method="nearest").shape == (4, 4)  # type: ignore[arg-type]


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(UnknownMethodError, match=r"choose one of .*bicubic"):
        dasksr.upscale(np.ones((4, 4)), scale=2, method="cubic-spline")


@pytest.mark.parametrize(
    "bad", [np.ones(5), np.ones((3, 3), dtype=bool), np.ones((3, 3), dtype=np.complex64)]
)
def test_bad_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError):
        dasksr.upscale(bad, scale=2, method="bilinear")


def test_output_dtype_can_be_asked_for() -> None:
    out = dasksr.upscale(
        np.array([[0, 255]], dtype=np.uint8), scale=2, method="bilinear", dtype="float32"
    )
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0, 63.75, 191.25, 255])


def test_narrowing_dtype_clips_instead_of_wrapping() -> None:
    image = np.array([[300, 10], [70000 // 2, 0]], dtype=np.uint16)
    out = dasksr.upscale(image, scale=2, method="nearest", dtype="uint8")
    np.testing.assert_array_equal(out[::2, ::2], [[255, 10], [255, 0]])
    lazy = dasksr.upscale(da.from_array(image, chunks=1), scale=2, method="bicubic", dtype="int16")
    expected = np.clip(
        np.rint(dasksr.upscale(image.astype(np.float32), scale=2, method="bicubic")), -32768, 32767
    )
    np.testing.assert_array_equal(lazy.compute(), expected.astype(np.int16))


def test_float_to_integer_dtype_writes_nodata_for_nan() -> None:
    image = np.array([[1.4, np.nan], [3.6, 4.0]], dtype=np.float32)
    out = dasksr.upscale(image, scale=2, method="nearest", dtype="uint8", nodata=255)
    np.testing.assert_array_equal(out[::2, ::2], [[1, 255], [4, 4]])


def test_nearest_writes_nodata_for_nan_like_the_other_methods() -> None:
    image = np.array([[1.0, np.nan], [3.0, 4.0]], dtype=np.float32)
    for method in ("nearest", "bilinear"):
        out = dasksr.upscale(image, scale=2, method=method, nodata=-9999)
        np.testing.assert_array_equal(out[:2, 2:], -9999)


# ----------------------------------------------------------------------------------------------
# Values and metadata (issue 8)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "nodata", "out_dtype", "match"),
    [
        ("uint16", -9999, None, r"nodata=-9999 does not fit the data dtype uint16 \(integers 0"),
        ("uint16", 65535, "uint8", r"nodata=65535 does not fit the output dtype uint8"),
        ("int16", 0.5, None, r"nodata=0.5 does not fit the data dtype int16"),
        ("uint8", float("nan"), None, r"nodata=nan does not fit the data dtype uint8"),
        ("float32", 1e300, None, r"nodata=1e\+300 does not fit the data dtype float32"),
    ],
)
def test_nodata_that_the_dtype_cannot_hold_is_refused_up_front(
    dtype: str, nodata: float, out_dtype: str | None, match: str
) -> None:
    lazy = da.ones((8, 8), chunks=4, dtype=dtype)
    for data in (lazy, georeferenced(1, 8, 8, dtype).isel(band=0)):
        with pytest.raises(InvalidArgumentError, match=match) as info:
            dasksr.upscale(data, scale=2, method="bicubic", nodata=nodata, dtype=out_dtype)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("chunks", [None, 1])
def test_valid_float_pixels_never_land_on_nodata(chunks: int | None) -> None:
    # Bilinear between 0 and 4 gives exactly 1.0 at the second fine pixel of each row.
    image = np.array([[0.0, 4.0, 0.0], [0.0, 4.0, 0.0]], dtype=np.float32)
    plain = dasksr.upscale(image, scale=2, method="bilinear")
    assert (plain == 1.0).sum() == 8
    out = dasksr.upscale(image, scale=2, method="bilinear", nodata=1.0, chunks=chunks)
    out = np.asarray(out)
    assert not (out == 1.0).any()
    moved = plain == 1.0
    np.testing.assert_array_equal(out[moved], np.nextafter(np.float32(1.0), np.float32(np.inf)))
    np.testing.assert_array_equal(out[~moved], plain[~moved])


def _write_tif(path: Any, pixels: np.ndarray, transform: Affine, **extra: Any) -> None:
    import rasterio

    profile = {
        "driver": "GTiff",
        "count": pixels.shape[0],
        "height": pixels.shape[1],
        "width": pixels.shape[2],
        "dtype": pixels.dtype.name,
        "crs": "EPSG:32618",
        "transform": transform,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(SENSOR="ETM+", STATISTICS_MAXIMUM="255", STATISTICS_MEAN="12.5")


def test_masked_rioxarray_input_writes_back_with_the_files_nodata(tmp_path: Any) -> None:
    import rasterio

    pixels = np.arange(1, 1 + 24 * 24, dtype=np.uint16).reshape(1, 24, 24) % 250 + 1
    pixels[0, :4, :4] = 0
    _write_tif(tmp_path / "in.tif", pixels.astype(np.uint8), LANDSAT7, nodata=0)
    masked = rioxarray.open_rasterio(tmp_path / "in.tif", masked=True)
    out = masked.sr.upscale(scale=2, method="bilinear")
    out.rio.to_raster(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.nodata == 0
        assert tif.dtypes[0] == "uint8"
        written = tif.read(1)
    expected = dasksr.upscale(pixels[0].astype(np.uint8), scale=2, method="bilinear", nodata=0)
    np.testing.assert_array_equal(written, expected)
    # Asked for an integer dtype, the holes take the file's nodata value, unmasked.
    as_int = masked.sr.upscale(scale=2, method="bilinear", dtype="uint8")
    assert as_int.rio.nodata == 0 and as_int.encoding["dtype"] == "uint8"
    np.testing.assert_array_equal(as_int.values[0], expected)


def test_dtype_updates_the_encoding_writers_use(tmp_path: Any) -> None:
    import rasterio

    _write_tif(tmp_path / "in.tif", np.full((1, 8, 8), 3, np.uint8), LANDSAT7, nodata=0)
    masked = rioxarray.open_rasterio(tmp_path / "in.tif", masked=True)
    out = masked.sr.upscale(scale=2, dtype="float64")
    assert out.encoding["dtype"] == "float64"
    out.rio.to_raster(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.dtypes[0] == "float64"


#: Landsat 7's transform (the shared RGB.byte.tif): its origin is easy to get wrong in floats.
LANDSAT7 = Affine(300.0379266750948, 0.0, 101985.0, 0.0, -300.041782729805, 2826915.0)


@pytest.mark.parametrize("scale", range(2, 9))
def test_output_transform_is_exactly_the_input_one_scaled(tmp_path: Any, scale: int) -> None:
    import rasterio

    path = tmp_path / "in.tif"
    _write_tif(path, np.ones((1, 9, 11), np.uint8), LANDSAT7)
    for data in (dasksr.open_raster(path), rioxarray.open_rasterio(path)):
        out = data.sr.upscale(scale=scale, method="nearest")
        assert out.rio.transform() == LANDSAT7 @ Affine.scale(1 / scale)
        assert out.rio.transform().c == 101985.0
    dasksr.to_geotiff(out, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.transform == LANDSAT7 @ Affine.scale(1 / scale)


@pytest.mark.data
def test_landsat7_origin_stays_exact() -> None:
    from dasksr.data import data_path

    source = data_path("rasters", "landsat7_rgb_byte", "RGB.byte.tif")
    if source is None:
        pytest.skip("shared Landsat 7 raster is not on this machine (set DASKSR_DATA)")
    for scale in (2, 4):
        assert dasksr.open_raster(source).sr.upscale(scale=scale).rio.transform().c == 101985.0


def test_a_rotated_transform_is_scaled_and_kept(tmp_path: Any) -> None:
    import rasterio

    rotated = Affine(10.0, 2.0, 1000.0, 2.0, -10.0, 2000.0)
    _write_tif(tmp_path / "in.tif", np.ones((1, 16, 16), np.uint8), rotated)
    out = dasksr.open_raster(tmp_path / "in.tif").sr.upscale(scale=2)
    assert out.rio.transform() == rotated @ Affine.scale(1 / 2)
    dasksr.to_geotiff(out, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.transform == Affine(5.0, 1.0, 1000.0, 1.0, -5.0, 2000.0)


def test_stale_statistics_go_and_dataset_tags_stay(tmp_path: Any) -> None:
    import rasterio

    _write_tif(tmp_path / "in.tif", np.full((1, 8, 8), 7, np.uint8), LANDSAT7)
    out = dasksr.open_raster(tmp_path / "in.tif").sr.upscale(scale=2)
    assert not [k for k in out.attrs if k.startswith("STATISTICS_")]
    assert out.attrs["SENSOR"] == "ETM+"
    dasksr.to_geotiff(out, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.tags()["SENSOR"] == "ETM+"
        assert not [k for k in tif.tags() if k.startswith("STATISTICS_")]


def test_a_cf_grid_mapping_name_survives() -> None:
    data = georeferenced(1).rename({"spatial_ref": "crs"}).rio.write_grid_mapping("crs")
    assert data.rio.grid_mapping == "crs"
    out = data.sr.upscale(scale=2)
    assert out.rio.grid_mapping == "crs"
    assert "spatial_ref" not in out.coords
    assert out.rio.crs == data.rio.crs
    assert out.rio.transform() == data.rio.transform() @ Affine.scale(1 / 2)


def test_spatial_dims_are_never_guessed() -> None:
    values = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
    rcb = xr.DataArray(values, dims=("row", "col", "band"))
    with pytest.raises(InvalidArgumentError, match=r"set_spatial_dims\(x_dim=") as info:
        rcb.sr.upscale(scale=2)
    assert "('row', 'col', 'band')" in str(info.value)
    named = rcb.rio.set_spatial_dims(x_dim="col", y_dim="row").sr.upscale(scale=2)
    assert named.sizes == {"band": 3, "row": 12, "col": 16}
    # Two dims leave nothing to guess.
    assert xr.DataArray(values[..., 0], dims=("a", "b")).sr.upscale(scale=2).shape == (12, 16)


@pytest.mark.parametrize("bad", [1.5, "2", True, None])
def test_one_scale_validator_for_upscale_degrade_and_the_command_line(bad: object) -> None:
    from dasksr.cli import ScaleType

    image = np.ones((8, 8), np.float32)
    calls = [lambda: dasksr.degrade_sensor(image, bad)]  # type: ignore[arg-type]
    if bad is not None:  # upscale's scale=None means "not given" (see the resolution tests)
        calls.append(lambda: dasksr.upscale(image, scale=bad, method="bicubic"))  # type: ignore[arg-type]
    for call in calls:
        with pytest.raises(InvalidScaleError, match=rf"scale={bad!r} is not an integer: use an"):
            call()
    with pytest.raises(InvalidScaleError, match=r"--scale '1.5' is not an integer"):
        ScaleType().convert("1.5", None, None)
    assert ScaleType().convert("4.0", None, None) == 4


def test_per_call_parameters_reach_every_block_in_both_wirings(tmp_path: Any) -> None:
    # A method whose block function takes extra parameters computed once for the whole image
    # (as a learned method's per-band normalisation): they are bound with functools.partial and
    # the kernel is still called as block(padded, scale, nodata=...).
    from dasksr.api import upscale_numpy, upscale_operation
    from dasksr.kernels.method import Method
    from dasksr.methods import get_method
    from dasksr.operation import Input, plan
    from dasksr.sources import source_window

    bilinear = get_method("bilinear")

    def gained(block: Any, scale: int, *, nodata: float | None = None, gain: Any) -> Any:
        return bilinear.block(block, scale, nodata=nodata) * np.asarray(gain)[:, None, None]

    method = Method("gained", "bilinear times a per-band gain", bilinear.halo, gained)
    gain = np.array([1.0, 2.0, 3.0], np.float32)
    image = np.random.default_rng(0).normal(size=(3, 20, 30)).astype(np.float32)
    whole = upscale_numpy(image, method, 2, params={"gain": gain})
    np.testing.assert_allclose(whole, upscale_numpy(image, bilinear, 2) * gain[:, None, None])
    _write_tif(tmp_path / "in.tif", image, LANDSAT7)
    opened = dasksr.open_raster(tmp_path / "in.tif", chunks=8)
    for given, wiring in (
        (Input(da.from_array(image, chunks=(3, 7, 9))), "overlap"),
        (Input(opened.data, source_window(opened)), "source"),
    ):
        planned = plan(upscale_operation(method, 2, params={"gain": gain}), given)
        assert planned.wiring == wiring
        np.testing.assert_allclose(planned.array.compute(), whole, rtol=1e-6)
        other = plan(upscale_operation(method, 2, params={"gain": gain * 2}), given)
        assert other.array.name != planned.array.name


# ----------------------------------------------------------------------------------------------
# Target grid by resolution; scale and method are keyword-only
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [10, 10.0, 5, (4, 4), 2.5])
def test_resolution_is_the_pixel_size_divided_by_an_integer(resolution: Any) -> None:
    data = georeferenced()  # 20 m pixels
    size = resolution[0] if isinstance(resolution, tuple) else resolution
    scale = round(20 / size)
    out = dasksr.upscale(data, resolution=resolution, method="bilinear")
    same = dasksr.upscale(data, scale=scale, method="bilinear")
    xr.testing.assert_identical(out, same)
    assert out.rio.resolution() == (size, -size)
    # The accessor and Datasets take it too.
    xr.testing.assert_identical(data.sr.upscale(resolution=resolution, method="bilinear"), same)
    ds = dasksr.upscale(data.to_dataset(), resolution=resolution, method="bilinear")
    assert ds["reflectance"].shape == same.shape


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"resolution": 3},
            r"resolution=3 is not the input's x pixel size 20 divided by an integer",
        ),
        ({"resolution": 40}, r"ratio is 0.5"),
        ({"resolution": (10, 5)}, r"gives x and y scales 2 and 4"),
        ({"resolution": -5}, r"not a positive pixel size"),
        ({"resolution": (10, 10, 10)}, r"has 3 value\(s\): give one number or \(x, y\)"),
        ({"resolution": 10, "scale": 2}, r"scale=2 and resolution=10 were both given"),
        ({}, r"no scale given: pass scale= .* or resolution="),
    ],
)
def test_bad_resolutions_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        dasksr.upscale(georeferenced(), **options)


def test_resolution_needs_georeferencing() -> None:
    with pytest.raises(InvalidArgumentError, match=r"needs georeferenced data .* pass scale="):
        dasksr.upscale(np.ones((4, 4), np.float32), resolution=5)


def test_scale_and_method_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional argument"):
        dasksr.upscale(np.ones((4, 4), np.float32), 2, "bicubic")  # type: ignore[misc]
