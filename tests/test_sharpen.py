"""Guided reconstruction, ``dasksr.sharpen``: grids, offsets, nodata, seams, surfaces, errors."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

import dasksr
from dasksr.errors import InvalidArgumentError
from dasksr.guided import GridRelation, relate_grids, sharpen, sharpen_numpy

CRS = "EPSG:32618"


def raster(values, transform, *, crs=CRS, nodata=None, names=None):
    """A georeferenced ``(band, y, x)`` DataArray with pixel-centre coordinates."""
    values = np.asarray(values)
    n, ny, nx = values.shape
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    band = list(names) if names is not None else list(range(1, n + 1))
    data = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": band, "y": y, "x": x})
    data = data.rio.write_transform(transform).rio.write_crs(crs)
    if nodata is not None:
        data = data.rio.write_nodata(nodata, encoded=False)
    return data


def texture(shape, seed, smooth=2.0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.normal(size=shape), (0, smooth, smooth))


def pair(ratio=2, origin=(0.0, -1.0), fine=(90, 100), bands=3, guides=2, seed=0):
    """Coarse bands and a guide, correlated, on grids ``ratio`` apart whose origins differ."""
    fres = 10.0
    guide_t = Affine(fres, 0, 500000.0, 0, -fres, 4000000.0)
    cres = fres * ratio
    coarse_t = Affine(cres, 0, 500000.0 + origin[1] * fres, 0, -cres, 4000000.0 - origin[0] * fres)
    cshape = (-(-(fine[0] - origin[0]) // ratio) + 1, -(-(fine[1] - origin[1]) // ratio) + 1)
    g = texture((guides, *fine), seed)
    c = texture((bands, int(cshape[0]), int(cshape[1])), seed + 1)
    return g, guide_t, c, coarse_t


def as_uint16(a, low=200, span=3000):
    a = (a - a.min()) / (np.ptp(a) + 1e-12)
    return np.round(low + span * a).astype(np.uint16)


@pytest.mark.parametrize(
    ("ratio", "origin"),
    [
        (2, (0.0, 0.0)),
        (2, (0.0, -1.0)),
        (2, (-0.5, -0.5)),
        (3, (-1.0, -2.0)),
        (6, (-2.0, -1.0)),
        (4, (-1.5, 0.0)),
        (2, (1.0, 2.0)),
        (2, (0.5, 0.5)),  # Landsat's pan and multispectral grids
        (3, (2.5, -4.0)),
    ],
)
def test_offsets_are_honoured_exactly(ratio, origin):
    """A linear ramp sampled at the coarse pixel centres comes back at the fine pixel centres
    (cubic convolution reproduces it), whatever the offset: nothing is shifted by a pixel."""
    ny, nx = 60, 66
    guide_t = Affine(10, 0, 0, 0, -10, 0)
    cres = 10 * ratio
    coarse_t = Affine(cres, 0, origin[1] * 10, 0, -cres, -origin[0] * 10)
    cy, cx = ny // ratio + 3, nx // ratio + 3

    def ramp(t, ny, nx):
        x = t.c + (np.arange(nx) + 0.5) * t.a
        y = t.f + (np.arange(ny) + 0.5) * t.e
        return (0.3 * x[None, :] - 0.7 * y[:, None] + 5.0)[None]

    coarse = raster(ramp(coarse_t, cy, cx), coarse_t)
    flat = np.full((1, ny, nx), 7.0)
    flat[0, -3:, -3:] += 1.0  # a guide the regression can read, its detail in one corner
    guide = raster(flat, guide_t)
    out = sharpen(coarse, guide, chunks=24).values
    expected = ramp(guide_t, ny, nx)
    inner = (slice(None), slice(3 * ratio, -4 * ratio), slice(3 * ratio, -4 * ratio))
    inside = np.isfinite(out[inner])
    assert inside.all()
    # The guide's own detail is injected where it has some; compare where it has none.
    calm = np.ones((ny, nx), bool)
    calm[-3:, -3:] = False
    from scipy.ndimage import minimum_filter

    calm = minimum_filter(calm, 4 * ratio + 9)[inner[1:]]
    assert calm.mean() > 0.5
    np.testing.assert_allclose(out[inner][:, calm], expected[inner][:, calm], atol=1e-6)


@pytest.mark.parametrize(
    ("ratio", "origin"), [(2, (0.0, -1.0)), (3, (-0.5, -1.5)), (2, (1.0, 0.0))]
)
def test_chunked_equals_whole_integers(ratio, origin):
    g, gt, c, ct = pair(ratio, origin, fine=(97, 110))
    coarse = as_uint16(c + 0.6 * np.resize(c.mean(axis=0), c.shape))
    guide = as_uint16(g)
    coarse[1, 5:8, 9:14] = 0  # nodata holes
    guide[0, 40:52, 30:41] = 0
    cdata = raster(coarse, ct, nodata=0)
    gdata = raster(guide, gt, nodata=0)
    whole = sharpen_numpy(
        coarse,
        guide,
        ratio=ratio,
        origin=relate_grids(cdata, gdata).origin,
        nodata=0,
        guide_nodata=0,
    )
    for chunks in (24, 36, 64):
        chunked = sharpen(cdata, gdata, chunks=chunks)
        assert chunked.dtype == np.uint16
        np.testing.assert_array_equal(chunked.values, whole)


def test_chunked_equals_whole_floats():
    g, gt, c, ct = pair(2, (-0.5, -0.5), fine=(80, 75))
    c = c.astype(np.float32)
    c[0, 10:12, 4:9] = np.nan
    cdata, gdata = raster(c, ct), raster(g.astype(np.float32), gt)
    whole = sharpen(cdata, gdata, chunks=4096).values
    chunked = sharpen(cdata, gdata, chunks=26).values
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(chunked))
    span = float(np.nanmax(whole) - np.nanmin(whole))
    assert np.nanmax(np.abs(whole - chunked)) <= 1e-5 * span


def test_nodata_footprint_and_extent():
    """A fine pixel is nodata exactly when the coarse pixel containing its centre is, or when
    the coarse bands do not reach it; the output covers the guide's extent."""
    _ratio, fine = 2, (40, 44)
    gt = Affine(10, 0, 0, 0, -10, 0)
    ct = Affine(20, 0, -10, 0, -20, 0)  # starts one guide column early, ends short
    coarse = as_uint16(texture((1, 15, 20), 3))
    coarse[0, 4, 6] = 0
    out = sharpen(raster(coarse, ct, nodata=0), raster(as_uint16(texture((1, *fine), 4)), gt))
    assert out.shape == (1, *fine)
    assert out.rio.transform() == gt
    invalid = out.values[0] == 0
    ys, xs = np.nonzero(invalid)
    # Coarse pixel (4, 6) covers guide rows 8-9 and columns 11-12 (it starts at x = 110 m).
    inside = (ys < 30) & (xs < 39)
    assert set(zip(ys[inside], xs[inside], strict=False)) == {(8, 11), (8, 12), (9, 11), (9, 12)}
    assert invalid[30:].all() and invalid[:, 39:].all()  # past the coarse extent
    assert out.rio.nodata == 0


def test_no_detail_from_invalid_guide_pixels():
    g, gt, c, ct = pair(2, (0.0, 0.0), fine=(80, 80), guides=1)
    guide = as_uint16(g)
    guide[0, 20:60, 20:60] = 0
    other = guide.copy()
    other[0, 20:60, 20:60] = 0
    other[0, 30:50, 30:50] = 0  # same hole, different pixels behind it would not matter either
    cdata = raster(as_uint16(c), ct)
    a = sharpen(cdata, raster(guide, gt, nodata=0)).values
    noisy = guide.copy()
    noisy[0, 20:60, 20:60] = 0
    b = sharpen(cdata, raster(np.where(guide == 0, 0, guide), gt, nodata=0)).values
    np.testing.assert_array_equal(a, b)
    # Deep in the hole the result is the coarse bands' upsampling alone: no guide structure.
    flat = sharpen(cdata, raster(np.zeros_like(guide) + 1000, gt)).values
    np.testing.assert_allclose(a[:, 35:45, 35:45].astype(float), flat[:, 35:45, 35:45], atol=1)


def _grid_error(coarse, guide):
    with pytest.raises(InvalidArgumentError) as info:
        sharpen(coarse, guide)
    message = str(info.value)
    assert "\n" not in message and "coarse" in message and "guide" in message
    return message


def test_grid_errors_name_both_grids():
    g, gt, c, ct = pair(2, (0.0, 0.0))
    coarse, guide = raster(c, ct), raster(g, gt)
    assert "different CRS" in _grid_error(raster(c, ct, crs="EPSG:32617"), guide)
    assert "swapped" in _grid_error(guide, coarse)
    odd = Affine(25, 0, ct.c, 0, -25, ct.f)
    assert "integer" in _grid_error(raster(c, odd), guide)
    far = Affine(20, 0, ct.c + 1e6, 0, -20, ct.f)
    assert "do not overlap" in _grid_error(raster(c, far), guide)


def test_dataset_inputs_names_and_accessor():
    g, gt, c, ct = pair(2, (0.0, -1.0), bands=2, guides=2)
    coarse = raster(as_uint16(c), ct, names=["B05", "B11"])
    guide = raster(as_uint16(g), gt, names=["B04", "B08"])
    ds = xr.Dataset({n: coarse.sel(band=n, drop=True) for n in ("B05", "B11")})
    gds = xr.Dataset({n: guide.sel(band=n, drop=True) for n in ("B04", "B08")})
    a = sharpen(coarse, guide)
    b = sharpen(ds, gds)
    c2 = coarse.sr.sharpen(guide)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c2.values)
    assert list(a.band.values) == ["B05", "B11"]
    assert a.attrs["long_name"] == ("B05", "B11")
    assert a.rio.crs == guide.rio.crs and a.rio.transform() == gt
    assert dasksr.sharpen is sharpen


def test_relation_of_native_sentinel2_grids():
    g = raster(np.zeros((1, 4, 4)), Affine(10, 0, 435730, 0, -10, 4179460))
    c20 = raster(np.zeros((1, 2, 2)), Affine(20, 0, 435720, 0, -20, 4179460))
    c60 = raster(np.zeros((1, 1, 1)), Affine(60, 0, 435720, 0, -60, 4179480))
    assert relate_grids(c20, g) == GridRelation(2, (0, -1))
    assert relate_grids(c60, g) == GridRelation(6, (-2, -1))
    assert relate_grids(c60, g).offset == (-2, -1)


def test_learned_method_needs_band_identity():
    g, gt, c, ct = pair(2, (0.0, -1.0), bands=6, guides=4)
    coarse, guide = raster(c, ct), raster(g, gt)
    with pytest.raises(InvalidArgumentError, match="needs each band's identity"):
        sharpen(coarse, guide, method="cnn-s2")
    named = raster(c, ct, names=["B05", "B06", "B07", "B8A", "B11", "B01"])
    gnamed = raster(g, gt, names=["B02", "B03", "B04", "B08"])
    with pytest.raises(InvalidArgumentError, match="B12"):
        sharpen(named, gnamed, method="cnn-s2")
    with pytest.raises(InvalidArgumentError, match="unknown sharpen method"):
        sharpen(coarse, guide, method="brovey")


def test_guided_records_match_their_files():
    from dasksr.models import guided_records, learned_methods

    records = guided_records()
    assert set(records) == {2, 6}
    for ratio, record in records.items():
        record.check()  # the SHA-256 of the file is the record's
        meta = record.record
        arch = meta["architecture"]
        c, n = arch["channels"], arch["layers"]
        assert meta["macs_per_fine_pixel"] == 9 * (
            arch["inputs"] * c + c * c * (n - 2) + c * arch["outputs"]
        )
        assert arch["inputs"] == 2 * len(meta["coarse_bands"]) + len(meta["guide_bands"])
        assert meta["scale"] == ratio and meta["steps"] > 0 and meta["note"]
    # They are sharpen's, not upscaling methods.
    assert "cnn-s2" not in {m.name for m in learned_methods()}


@pytest.mark.data
def test_sentinel2_wald_figures_of_the_docs():
    """The published Sentinel-2 20 m figures (docs/sharpen.md), on the held-out rows."""
    from dasksr.data import data_path

    if data_path("rasters", "sentinel2_l1c_18SVG_20160112_native") is None:
        pytest.skip("shared data absent")
    from dasksr import metrics
    from dasksr.kernels.sharpen import mtf_sigma
    from dasksr.scenes import SENTINEL2_MTF, SENTINEL2_NATIVE, read_bands, split_row, wald_pair

    names, guides = ("B05", "B06", "B07", "B8A", "B11", "B12"), ("B02", "B03", "B04", "B08")
    coarse, ct = read_bands([SENTINEL2_NATIVE[b] for b in names])
    guide, gt = read_bands([SENTINEL2_NATIVE[b] for b in guides])
    jitter = np.random.default_rng(7)
    jc, jg = jitter.uniform(0.8, 1.25, 6), jitter.uniform(0.8, 1.25, 4)
    pair = wald_pair(
        coarse.astype(float),
        ct,
        guide.astype(float),
        gt,
        2,
        [mtf_sigma(SENTINEL2_MTF[b], 2) * j for b, j in zip(names, jc, strict=True)],
        [mtf_sigma(SENTINEL2_MTF[b], 2) * j for b, j in zip(guides, jg, strict=True)],
    )
    c = np.clip(np.rint(pair["coarse"]), 0, 65535).astype(np.uint16)
    g = np.clip(np.rint(pair["guide"]), 0, 65535).astype(np.uint16)
    rows = slice(split_row(g.shape[1]), g.shape[1])
    ref = pair["reference"][:, rows]
    rmse = {}
    for method in ("glp", "cnn-s2"):
        out = sharpen_numpy(c, g, ratio=2, method=method, names=names, guides=guides)
        rmse[method] = metrics.band_rmse(ref, out[:, rows].astype(float))
    bicubic = dasksr.upscale(c, scale=2, method="bicubic")[:, rows].astype(float)
    base = metrics.band_rmse(ref, bicubic).mean()
    assert rmse["glp"].mean() / base <= 0.45
    assert rmse["cnn-s2"].mean() / base <= 0.30
    assert np.all(rmse["cnn-s2"] < rmse["glp"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis", [-1, -2])
def test_compiled_taps_are_the_array_arithmetic_bit_for_bit(dtype, axis):
    from dasksr.kernels.loops import gather_taps
    from dasksr.kernels.sharpen import down_taps, up_taps

    rng = np.random.default_rng(3)
    values = (rng.random((3, 41, 37)) * 1e4).astype(dtype)
    n = values.shape[axis]
    for taps, shift in (
        (up_taps(2 * n - 12, 2, -0.5, 0), 3),
        (down_taps(n // 3 - 4, 3, 0.4, 1.1), 6),
    ):
        index = taps.index + shift
        assert index.min() >= 0 and index.max() < n
        moved = np.moveaxis(values, axis, -1)
        expected = np.zeros((*moved.shape[:-1], index.shape[0]), dtype)
        for t in range(index.shape[1]):
            expected += moved[..., index[:, t]] * taps.weights[:, t].astype(dtype)
        got = gather_taps(values, index, taps.weights, axis)
        np.testing.assert_array_equal(np.moveaxis(got, axis, -1), expected)


def test_radiometric_offsets_are_applied():
    """A product of processing baseline 04.00 or later stores DN + 1000 and declares the offset
    (RADIO_ADD_OFFSET = -1000): both methods sharpen it as they sharpen the same scene stored
    without it, shifted by the offset; without the declaration the result differs."""
    g, gt, c, ct = pair(2, (0.0, -1.0), fine=(64, 72), bands=6, guides=4, seed=5)
    names, gnames = ["B05", "B06", "B07", "B8A", "B11", "B12"], ["B02", "B03", "B04", "B08"]
    c16, g16 = as_uint16(c, 300, 4000), as_uint16(g, 200, 3000)
    for method in ("glp", "cnn-s2"):
        plain = sharpen(raster(c16, ct, names=names), raster(g16, gt, names=gnames), method=method)
        shifted_c = raster(c16 + 1000, ct, names=names)
        shifted_g = raster(g16 + 1000, gt, names=gnames)
        blind = sharpen(shifted_c, shifted_g, method=method).values.astype(np.int64)
        shifted_c.attrs["offsets"] = [-1000.0] * 6
        shifted_g.attrs["offsets"] = -1000.0  # one value for every band
        told = sharpen(shifted_c, shifted_g, method=method)
        expected = plain.values.astype(np.int64) + 1000
        assert np.abs(told.values.astype(np.int64) - expected).max() <= 1  # rounding
        assert np.abs(blind - expected).max() > 5
        assert told.attrs["offsets"] == [-1000.0] * 6  # the output keeps the stored convention
        # Scaled reflectance (Sentinel-2 COGs: DN * 0.0001 - 0.1) is worked on as the same DN.
        scaled = raster(c16 + 1000, ct, names=names)
        scaled.attrs |= {"scales": 1e-4, "offsets": -0.1}
        result = sharpen(scaled, shifted_g, method=method).values.astype(np.int64)
        assert np.abs(result - expected).max() <= 1
    shifted_c.attrs["offsets"] = [-1000.0] * 5
    with pytest.raises(InvalidArgumentError, match="one per band"):
        sharpen(shifted_c, shifted_g, method="cnn-s2")
