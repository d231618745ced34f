"""STAC items as inputs: assets by key or band name, hrefs relative to the item, COGs over HTTP;
and the accessor on what odc-stac's ``load`` and stackstac's ``stack`` return."""

# ruff: noqa: F811  (the tests take test_cli's fixture `run`, imported here, as an argument)

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
import xarray as xr
from affine import Affine
from test_cli import Run, assert_one_line_error, listing, run  # noqa: F401  (the same folder)
from test_remote import RangeServer

import dasksr
from dasksr.io.stac import georeferenced, open_item, select_bands, sensor_name

#: Sentinel-2-like grids: 10 m bands of 64 x 64 px and a 20 m band of 32 x 32 px, one extent.
T10 = Affine(10, 0, 500000, 0, -10, 4000000)
T20 = Affine(20, 0, 500000, 0, -20, 4000000)
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]


def _cog(path: Path, pixels: np.ndarray, transform: Affine) -> np.ndarray:
    plain = path.with_suffix(".plain.tif")
    count, height, width = pixels.shape
    profile = {"width": width, "height": height, "count": count, "dtype": pixels.dtype.name}
    with rasterio.open(
        plain, "w", driver="GTiff", crs="EPSG:32633", transform=transform, **profile
    ) as dst:
        dst.write(pixels)
    rasterio.shutil.copy(plain, path, driver="COG")
    plain.unlink()
    return pixels


def _asset(href: str, n: int, transform: Affine, bands: dict[str, Any], **extra: Any) -> Any:
    fields = {"proj:epsg": 32633, "proj:shape": [n, n], "proj:transform": list(transform)[:6]}
    return pystac.Asset(
        href,
        media_type=pystac.MediaType.COG,
        roles=["data"],
        extra_fields={**fields, **bands, **extra},
    )


def _eo(*bands: tuple[str, str]) -> dict[str, Any]:
    """STAC 1.0's ``eo:bands``."""
    return {"eo:bands": [{"name": n, "common_name": c} for n, c in bands]}


def make_item(folder: Path) -> dict[str, np.ndarray]:
    """COGs of a Sentinel-2-like scene in ``folder`` and ``item.json`` beside them, with relative
    hrefs: assets keyed as the products name the bands, common names in ``eo:bands`` (STAC 1.0)
    or ``bands`` (STAC 1.1), a 20 m band, a 3-band true-colour asset and a thumbnail."""
    rng = np.random.default_rng(7)
    pixels = {}
    for key in ("B02", "B03", "B04", "B08"):
        pixels[key] = _cog(
            folder / f"{key}.tif", rng.integers(1, 4000, (1, 64, 64)).astype("uint16"), T10
        )
    pixels["B05"] = _cog(
        folder / "B05.tif", rng.integers(1, 4000, (1, 32, 32)).astype("uint16"), T20
    )
    pixels["visual"] = _cog(
        folder / "TCI.tif", rng.integers(0, 255, (3, 64, 64)).astype("uint8"), T10
    )
    geometry = {"type": "Polygon", "coordinates": [[[14, 36], [15, 36], [15, 37], [14, 36]]]}
    item = pystac.Item("S2X_TEST", geometry, [14, 36, 15, 37], datetime.datetime(2024, 6, 1), {})
    item.stac_extensions = list(EXTENSIONS)
    item.add_asset("B02", _asset("B02.tif", 64, T10, _eo(("B02", "blue"))))
    item.add_asset("B03", _asset("B03.tif", 64, T10, _eo(("B03", "green"))))
    red = {**_eo(("B04", "red")), "raster:bands": [{"nodata": 0}]}
    item.add_asset("B04", _asset("B04.tif", 64, T10, red))
    # STAC 1.1's spelling.
    item.add_asset(
        "B08", _asset("B08.tif", 64, T10, {"bands": [{"name": "B08", "eo:common_name": "nir"}]})
    )
    item.add_asset("B05", _asset("B05.tif", 32, T20, _eo(("B05", "rededge"))))
    visual = _eo(("B04", "red"), ("B03", "green"), ("B02", "blue"))
    item.add_asset("visual", _asset("TCI.tif", 64, T10, visual, roles=None))
    item.assets["visual"].roles = ["visual"]
    item.add_asset(
        "thumbnail",
        pystac.Asset("thumb.jpg", media_type=pystac.MediaType.JPEG, roles=["thumbnail"]),
    )
    item.set_self_href(str(folder / "item.json"))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False)
    return pixels


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RangeServer, dict[str, np.ndarray]]]:
    """The scene served over HTTP with Range requests: the item at ``{url}/item.json``."""
    folder = tmp_path_factory.mktemp("stac")
    pixels = make_item(folder)
    server = RangeServer(folder)
    yield server, pixels
    server.close()


def _bands(path: Path) -> tuple[np.ndarray, tuple[str | None, ...]]:
    with rasterio.open(path) as src:
        return src.read(), src.descriptions


def _expected(pixels: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    """What dasksr upscale gives for those bands as one file (nodata 0 with B04's, as the item
    says: a valid pixel is never rounded to it)."""
    stacked = np.concatenate([pixels[k] for k in keys])
    nodata = 0 if "B04" in keys else None
    return np.asarray(dasksr.upscale(stacked, scale=2, method="bicubic", nodata=nodata))


def test_assets_by_key_over_http(served: Any, tmp_path: Path, run: Callable[..., Run]) -> None:
    server, pixels = served
    out = tmp_path / "out.tif"
    result = run("upscale", f"{server.url}/item.json", out, "--assets", "B04,B03,B02")
    assert result.status == 0, result.err
    values, names = _bands(out)
    assert names == ("B04", "B03", "B02")
    np.testing.assert_array_equal(values, _expected(pixels, ["B04", "B03", "B02"]))
    # The assets were read over HTTP, by range requests, hrefs resolved against the item's URL.
    fetched = {name for _, name, _ in server.requests}
    assert {"item.json", "B04.tif", "B03.tif", "B02.tif"} <= fetched
    assert "B08.tif" not in fetched
    with rasterio.open(out) as src:
        assert src.crs == "EPSG:32633" and src.transform == T10 @ Affine.scale(0.5)
        assert src.nodatavals[0] == 0  # from the item's raster:bands, the file having none


def test_assets_by_common_name_stac_1_0_and_1_1(
    served: Any, tmp_path: Path, run: Callable[..., Run]
) -> None:
    server, pixels = served
    out = tmp_path / "out.zarr"
    # red is the red band's asset (B04), not the first band of the true-colour one; nir is
    # named by STAC 1.1's bands/eo:common_name.
    result = run("upscale", f"{server.url}/item.json", out, "--assets", "red, green,blue,nir")
    assert result.status == 0, result.err
    fine = dasksr.open_raster(out)
    assert list(fine.band.values) == [1, 2, 3, 4] or list(fine.band.values) == [
        "red",
        "green",
        "blue",
        "nir",
    ]
    assert tuple(fine.attrs["long_name"]) == ("red", "green", "blue", "nir")
    np.testing.assert_array_equal(fine.values, _expected(pixels, ["B04", "B03", "B02", "B08"]))


def test_a_multi_band_asset_and_local_relative_hrefs(
    tmp_path: Path, run: Callable[..., Run]
) -> None:
    pixels = make_item(tmp_path)
    out = tmp_path / "visual_x2.tif"
    result = run("upscale", tmp_path / "item.json", out, "--assets", "visual")
    assert result.status == 0, result.err
    values, names = _bands(out)
    assert names == ("B04", "B03", "B02")  # the bands' names in the item
    np.testing.assert_array_equal(values, _expected(pixels, ["visual"]))
    # The library's own entry point: one band of the true-colour asset by key, then by name.
    data = open_item(str(tmp_path / "item.json"), ["B08", "B02"])
    assert data.dims == ("band", "y", "x") and list(data.band.values) == ["B08", "B02"]
    assert data.rio.crs == "EPSG:32633" and data.rio.transform() == T10


@pytest.mark.parametrize(
    ("assets", "words"),
    [
        (["--assets", "B04,swir16"], ["'swir16'", "B02, B03, B04, B08, B05, visual", "red", "nir"]),
        ([], ["--assets", "STAC item", "B02", "rededge"]),
        (
            ["--assets", "red,B05"],
            ["B04 (64 x 64 px", "B05 (32 x 32 px", "different grids", "sharpen"],
        ),
        (["--assets", ","], ["--assets", "STAC item"]),
    ],
    ids=["unknown", "missing", "mixed-grids", "empty"],
)
def test_bad_assets_are_one_line_and_nothing_is_written(
    served: Any, tmp_path: Path, run: Callable[..., Run], assets: list[str], words: list[str]
) -> None:
    server, _ = served
    result = run("upscale", f"{server.url}/item.json", tmp_path / "out.zarr", *assets)
    assert_one_line_error(result, *words)
    assert listing(tmp_path) == set()


def test_a_shared_common_name_must_be_chosen_by_key(tmp_path: Path) -> None:
    make_item(tmp_path)
    item = pystac.Item.from_file(str(tmp_path / "item.json"))
    for key in ("B06", "B07"):  # three red edge bands, as Sentinel-2's
        item.add_asset(key, _asset("B05.tif", 32, T20, _eo((key, "rededge"))))
    item.save_object(include_self_link=False)
    with pytest.raises(dasksr.errors.InvalidArgumentError, match=r"B05, B06, B07.*by key"):
        open_item(str(tmp_path / "item.json"), "rededge")


def test_sentinel2_band_names_from_the_band_record_or_the_file_name() -> None:
    # Earth Search keys and names its bands by colour and the file by band; Planetary Computer
    # names them by band. Landsat's B4 stays B4 (not Sentinel-2's B04).
    geometry = {"type": "Point", "coordinates": [0, 0]}
    item = pystac.Item("x", geometry, [0, 0, 0, 0], datetime.datetime(2024, 1, 1), {})
    base = "https://h.example/S2B_29RKH/"
    item.add_asset("rededge1", _asset(base + "B05.tif", 32, T20, _eo(("rededge1", "rededge"))))
    item.add_asset("B8A", _asset(base + "T29RKH_B8A_20m.tif", 32, T20, _eo(("B8A", "nir08"))))
    item.add_asset("red", _asset("https://h.example/LC08_SR_B4.TIF", 32, T20, _eo(("red", "red"))))
    item.add_asset("aot", _asset(base + "AOT.tif", 32, T20, {}))
    names = [sensor_name(b, item) for b in select_bands(item, ["rededge1", "nir08", "red", "aot"])]
    assert names == ["B05", "B8A", "B4", None]


def test_not_an_item_is_one_line(tmp_path: Path, run: Callable[..., Run]) -> None:
    collection = tmp_path / "search.json"
    collection.write_text('{"type": "FeatureCollection", "features": []}')
    result = run("upscale", collection, tmp_path / "out.zarr", "--assets", "red")
    assert_one_line_error(result, "FeatureCollection", "save one item")


def test_sharpen_from_an_item(served: Any, tmp_path: Path, run: Callable[..., Run]) -> None:
    server, _ = served
    out = tmp_path / "sharp.tif"
    item = f"{server.url}/item.json"
    result = run(
        "sharpen", item, out, "--assets", "rededge", "--guide-assets", "blue,green,red,nir"
    )
    assert result.status == 0, result.err
    with rasterio.open(out) as src:
        # On the guide's 10 m grid, named as Sentinel-2 names the band (its MTF is known).
        assert (src.count, src.height, src.width) == (1, 64, 64)
        assert src.transform == T10 and src.descriptions == ("B05",)
    lone = run("sharpen", item, tmp_path / "x.tif", "--assets", "rededge")
    assert_one_line_error(lone, "--guide-assets")


# ----------------------------------------------------------------------------------------------
# The accessor on rasters loaded from STAC by odc-stac and stackstac
# ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")
def test_accessor_on_odc_stac_load(served: Any) -> None:
    import odc.stac as odc_stac

    server, _ = served
    item = pystac.Item.from_file(f"{server.url}/item.json")
    loaded = odc_stac.load([item], bands=["red", "B08"], chunks={})
    assert "spatial_ref" in loaded.coords and loaded["red"].dims == ("time", "y", "x")
    fine = loaded.sr.upscale(scale=2)
    assert fine["red"].dims == ("time", "y", "x") and fine["red"].shape == (1, 128, 128)
    assert fine.rio.crs == "EPSG:32633"
    assert fine["red"].rio.transform() == T10 @ Affine.scale(0.5)
    expected = dasksr.upscale(loaded["red"].isel(time=0).values, scale=2, method="bicubic")
    np.testing.assert_array_equal(fine["red"].isel(time=0).values, expected)


def stackstac_like(pixels: np.ndarray, transform: Affine) -> xr.DataArray:
    """A DataArray laid out as ``stackstac.stack`` returns one: dims (time, band, y, x), the CRS
    and transform as attributes, an ``epsg`` coordinate, x/y at the pixels' top-left corners
    (its default ``xy_coords='topleft'``), per-band and per-time property coordinates."""
    import dask.array as da

    times, bands, height, width = pixels.shape
    return xr.DataArray(
        da.from_array(pixels, chunks=(1, 1, height, width)),
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(["2024-06-01", "2024-06-11"][:times], dtype="datetime64[ns]"),
            "id": ("time", [f"S2X_{i}" for i in range(times)]),
            "band": ["B04", "B08"][:bands],
            "common_name": ("band", ["red", "nir"][:bands]),
            "x": transform.c + transform.a * np.arange(width),
            "y": transform.f + transform.e * np.arange(height),
            "epsg": 32633,
        },
        attrs={
            "spec": "RasterSpec(...)",
            "crs": "epsg:32633",
            "transform": transform,
            "resolution": 10.0,
        },
        name="stackstac-0123",
    )


def test_accessor_on_a_stackstac_layout() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(1, 4000, (2, 2, 48, 40)).astype("uint16")
    stack = stackstac_like(pixels, T10)
    fine = stack.sr.upscale(scale=2)
    assert fine.dims == ("time", "band", "y", "x") and fine.shape == (2, 2, 96, 80)
    assert fine.rio.crs == "EPSG:32633"
    # The transform is the stack's, not one from the corner coordinates (half a pixel off).
    assert fine.rio.transform() == T10 @ Affine.scale(0.5)
    assert float(fine.x[0]) == 500000 + 2.5 and float(fine.y[0]) == 4000000 - 2.5
    assert "resolution" not in fine.attrs and list(fine.common_name.values) == ["red", "nir"]
    expected = dasksr.upscale(pixels[1, 0], scale=2, method="bicubic")
    np.testing.assert_array_equal(fine.isel(time=1, band=0).values, expected)
    # A selection keeps stackstac's attribute as it was: the coordinates place the window.
    window = stack.isel(y=slice(8, 40), x=slice(4, 36)).sr.upscale(scale=2)
    assert window.rio.transform() == T10 @ Affine.translation(4, 8) @ Affine.scale(0.5)
    # And with xy_coords='center', the coordinates are already the pixel centres.
    centred = stack.assign_coords(x=stack.x + 5.0, y=stack.y - 5.0)
    assert georeferenced(centred).rio.transform() == T10


def test_the_accessor_writes_a_stackstac_layout(tmp_path: Path) -> None:
    pixels = np.random.default_rng(4).integers(1, 4000, (1, 2, 32, 32)).astype("uint16")
    fine = stackstac_like(pixels, T10).isel(time=0).drop_vars(["id", "time"]).sr.upscale(scale=2)
    fine.sr.to_geotiff(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.crs == "EPSG:32633" and src.transform == T10 @ Affine.scale(0.5)
