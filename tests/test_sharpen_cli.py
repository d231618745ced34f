"""``dasksr sharpen``: band files in, one raster out on the guide's grid; bad input is one line,
status 2 and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import test_cli  # the same folder (pytest puts it on the path)
from affine import Affine
from test_cli import Run, assert_one_line_error, listing

run = pytest.fixture(test_cli.run.__wrapped__, name="run")  # dasksr.cli.main in this process

GUIDE_T = Affine(10, 0, 435730, 0, -10, 4179460)
COARSE_T = Affine(20, 0, 435720, 0, -20, 4179460)


def write(
    path: Path,
    values: np.ndarray,
    transform: Affine,
    *,
    crs="EPSG:32618",
    nodata=None,
    descriptions=None,
) -> Path:
    values = values if values.ndim == 3 else values[None]
    profile = {
        "driver": "GTiff",
        "height": values.shape[1],
        "width": values.shape[2],
        "count": values.shape[0],
        "dtype": values.dtype.name,
        "transform": transform,
        "crs": crs,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
    return path


def product(folder: Path, coarse=("B05", "B8A"), guide=("B04", "B08"), **kw) -> tuple[list, list]:
    rng = np.random.default_rng(0)
    c = [
        write(
            folder / f"T18SVG_{b}.tif",
            rng.integers(500, 3000, (33, 35), dtype=np.uint16),
            kw.get("coarse_t", COARSE_T),
            crs=kw.get("crs", "EPSG:32618"),
        )
        for b in coarse
    ]
    g = [
        write(
            folder / f"T18SVG_{b}.tif", rng.integers(500, 3000, (64, 66), dtype=np.uint16), GUIDE_T
        )
        for b in guide
    ]
    return c, g


def test_band_files_in_one_raster_out(tmp_path: Path, run: Callable[..., Run]) -> None:
    coarse, guide = product(tmp_path)
    out = tmp_path / "out.tif"
    result = run("sharpen", *coarse, "--guide", *guide, out, "--no-progress")
    assert result.status == 0, result.err
    assert "wrote" in result.out
    with rasterio.open(out) as src:
        assert src.transform == GUIDE_T and src.crs.to_epsg() == 32618
        assert (src.count, src.height, src.width) == (2, 64, 66)
        assert src.descriptions == ("B05", "B8A")
        assert src.dtypes[0] == "uint16"
    zarr = tmp_path / "out.zarr"
    assert run("sharpen", *coarse, "--guide", *guide, zarr, "--no-progress").status == 0
    import dasksr

    back = dasksr.open_raster(zarr)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(back.values, src.read())


def test_a_multiband_file_with_descriptions(tmp_path: Path, run: Callable[..., Run]) -> None:
    coarse, guide = product(tmp_path)
    stacked = np.stack([rasterio.open(p).read(1) for p in coarse])
    multi = write(tmp_path / "coarse.tif", stacked, COARSE_T, descriptions=("B05", "B8A"))
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    assert run("sharpen", *coarse, "--guide", *guide, a, "--no-progress").status == 0
    assert run("sharpen", multi, "--guide", *guide, b, "--no-progress").status == 0
    with rasterio.open(a) as x, rasterio.open(b) as y:
        np.testing.assert_array_equal(x.read(), y.read())
        assert y.descriptions == ("B05", "B8A")


@pytest.mark.parametrize(
    "case", ["crs", "ratio", "disjoint", "swapped", "bands", "identity", "nodata", "guide-missing"]
)
def test_bad_input_is_one_line_and_nothing_written(
    tmp_path: Path, run: Callable[..., Run], case: str
) -> None:
    extra: list[str] = []
    method = "glp"
    words: tuple[str, ...] = ()
    if case == "crs":
        coarse, guide = product(tmp_path, crs="EPSG:32617")
        words = ("different CRS", "coarse", "guide")
    elif case == "ratio":
        coarse, guide = product(tmp_path, coarse_t=Affine(25, 0, 435720, 0, -25, 4179460))
        words = ("integer", "25")
    elif case == "disjoint":
        coarse, guide = product(tmp_path, coarse_t=Affine(20, 0, 935720, 0, -20, 4179460))
        words = ("do not overlap",)
    elif case == "swapped":
        c, g = product(tmp_path)
        coarse, guide = g, c
        words = ("swapped",)
    elif case == "bands":
        coarse, guide = product(tmp_path)
        method, words = "cnn-s2", ("B05, B06, B07, B8A, B11, B12",)
    elif case == "identity":
        coarse, guide = product(tmp_path)
        renamed = []
        for i, p in enumerate(coarse):
            renamed.append(p.rename(tmp_path / f"band{i}.tif"))
        coarse, method, words = renamed, "cnn-s2", ("identity", "B05.tif")
    elif case == "nodata":
        coarse, guide = product(tmp_path)
        extra, words = ["--nodata", "-5"], ("nodata",)
    else:
        coarse, guide = product(tmp_path)
        guide = [tmp_path / "missing_B04.tif"]
        words = ("missing_B04.tif",)
    before = listing(tmp_path)
    for out in (tmp_path / "out.tif", tmp_path / "out.zarr"):
        result = run("sharpen", *coarse, "--guide", *guide, out, "-m", method, *extra)
        assert_one_line_error(result, *words)
        assert listing(tmp_path) == before


MTD_L1C = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info><Product_Image_Characteristics>
    <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
    <Radiometric_Offset_List>
{offsets}
    </Radiometric_Offset_List>
    <Spectral_Information_List>
{bands}
    </Spectral_Information_List>
  </Product_Image_Characteristics></n1:General_Info>
</n1:Level-1C_User_Product>
"""
S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def safe_product(folder: Path, shift: int, offset: int | None) -> tuple[list, list]:
    """A SAFE-like Sentinel-2 product: the band files in GRANULE/*/IMG_DATA, the metadata (with
    ``RADIO_ADD_OFFSET`` = ``offset``, or none) at the top, the values shifted by ``shift``."""
    images = folder / "S2B_MSIL1C.SAFE" / "GRANULE" / "L1C_T18SVG" / "IMG_DATA"
    images.mkdir(parents=True)
    rows = "\n".join(
        f'      <RADIO_ADD_OFFSET band_id="{i}">{offset}</RADIO_ADD_OFFSET>'
        for i in range(13)
        if offset is not None
    )
    bands = "\n".join(
        f'      <Spectral_Information bandId="{i}" physicalBand="{b}"/>'
        for i, b in enumerate(S2_BANDS)
    )
    (folder / "S2B_MSIL1C.SAFE" / "MTD_MSIL1C.xml").write_text(
        MTD_L1C.format(offsets=rows, bands=bands)
    )
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    base = gaussian_filter(rng.normal(size=(64, 66)), 2)
    base = (base - base.min()) / np.ptp(base)
    coarse, guide = [], []
    for i, b in enumerate(("B02", "B03", "B04", "B08")):
        values = np.round(300 + 2500 * base * (0.7 + 0.1 * i)).astype(np.uint16) + shift
        guide.append(write(images / f"T18SVG_20220105T154659_{b}.tif", values, GUIDE_T))
    small = np.pad(base, ((0, 2), (2, 2)), mode="edge")[:66, :70].reshape(33, 2, 35, 2)
    for i, b in enumerate(("B05", "B06", "B07", "B8A", "B11", "B12")):
        own = gaussian_filter(rng.normal(size=(33, 35)), 1.5) * 400
        values = np.round(500 + own + 2000 * small.mean(axis=(1, 3)) * (0.6 + 0.1 * i)).astype(
            np.uint16
        )
        coarse.append(write(images / f"T18SVG_20220105T154659_{b}.tif", values + shift, COARSE_T))
    return coarse, guide


@pytest.mark.parametrize("method", ["glp", "cnn-s2"])
def test_a_products_radiometric_offset_is_applied(
    tmp_path: Path, run: Callable[..., Run], method: str
) -> None:
    """A product of baseline 04.00 or later (DN + 1000, RADIO_ADD_OFFSET -1000 in its metadata)
    sharpens to the older product's result plus 1000; without the metadata it would not."""
    results = {}
    for name, shift, offset in (("old", 0, None), ("new", 1000, -1000), ("blind", 1000, None)):
        coarse, guide = safe_product(tmp_path / name, shift, offset)
        out = tmp_path / f"{name}.tif"
        result = run("sharpen", *coarse, "--guide", *guide, out, "-m", method, "--no-progress")
        assert result.status == 0, result.err
        with rasterio.open(out) as src:
            results[name] = src.read().astype(np.int64)
            if offset is not None:
                assert src.offsets == (-1000.0,) * 6  # the output keeps the stored convention
    assert np.abs(results["new"] - results["old"] - 1000).max() <= 1
    if method == "cnn-s2":  # the network is not shift-invariant: the offset matters
        assert np.abs(results["blind"] - results["old"] - 1000).max() > 3
