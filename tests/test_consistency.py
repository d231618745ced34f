"""Consistency: ``input - degrade(output)`` with each method's own model, its RMS in the summary
line and its raster (``--consistency``); and the share of new extrema (`dasksr.artefacts`)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import test_cli  # the same folder (pytest puts it on the path)
import xarray as xr
from affine import Affine
from test_cli import assert_one_line_error, listing
from test_sharpen_cli import COARSE_T, GUIDE_T, write

import dasksr
from dasksr.artefacts import estimate_noise, neighbourhood_bounds, new_extrema
from dasksr.consistency import (
    Degradation,
    degrade_output,
    method_degradation,
    residual,
    rms,
    upscale_check,
)
from dasksr.guided import sharpen_check

run = pytest.fixture(test_cli.run.__wrapped__, name="run")  # dasksr.cli.main in this process


def _keys(x: float) -> float:
    """Keys' cubic, a = -0.5, written out."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2 if x < 2 else 0.0


def _scene(shape=(2, 24, 28), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, shape)


# ----------------------------------------------------------------------------------------------
# The residual
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "make"),
    [
        (Degradation("gaussian", 0.6), lambda f, s: dasksr.degrade_sensor(f, s, sigma=0.6)),
        (Degradation("bicubic"), lambda f, s: dasksr.imresize(f, 1 / s, boundary="symmetric")),
        (Degradation("area"), lambda f, s: f.reshape(2, 24 // s, s, 28 // s, s).mean(axis=(2, 4))),
    ],
)
def test_an_output_made_consistent_has_no_residual(model, make):
    scale = 2
    fine = _scene()
    coarse = make(fine, scale)  # each model's input made by an independent route
    psf = model.psf(scale)
    found = residual(fine, coarse, scale, [(psf, psf)])
    assert found.shape == coarse.shape
    assert np.abs(found).max() < 1e-9
    assert rms(found) < 1e-9


def test_nearest_is_consistent_with_the_area_model():
    small = _scene((1, 10, 12))
    fine = dasksr.upscale(small, scale=3, method="nearest")
    psf = method_degradation("nearest", 3).psf(3)
    assert np.abs(residual(fine, small, 3, [(psf, psf)])).max() < 1e-12


def test_bicubic_residual_is_what_the_formula_says():
    # Columns alternating at the Nyquist frequency: bicubic x2 gives fine pixels at +-0.25 input
    # px whose mean over an input pixel keeps g = sum_d keys(0.25 - d) (-1)^d of the amplitude,
    # so the area model's residual is (1 - g) times the alternation.
    amplitude, level = 10.0, 50.0
    small = level + amplitude * (-1.0) ** np.arange(16)[None, :] * np.ones((12, 1))
    g = sum(_keys(0.25 - d) * (-1) ** d for d in range(-1, 3))
    assert g == pytest.approx(0.6875)
    fine = dasksr.upscale(small, scale=2, method="bicubic")
    psf = method_degradation("bicubic", 2).psf(2)
    found = residual(fine, small, 2, [(psf, psf)])[:, 2:-2]  # the edges mirror the pattern
    expected = (1 - g) * (small[:, 2:-2] - level)
    np.testing.assert_allclose(found, expected, atol=1e-9)
    assert rms(found) == pytest.approx(amplitude * (1 - g))


def test_models_of_the_methods():
    assert method_degradation("bicubic", 2) == Degradation("area")
    assert method_degradation("cnn", 3) == Degradation("bicubic")
    sensor = method_degradation("cnn-sensor", 2)
    assert sensor.kind == "gaussian" and 0.3 <= sensor.sigma <= 0.7


@pytest.mark.parametrize("method", ["bicubic", "cnn-sensor"])
def test_chunked_residual_equals_whole(method):
    small = _scene((2, 40, 44)).astype(np.float32)
    whole = xr.DataArray(small, dims=("band", "y", "x"))
    chunked = whole.chunk({"y": 17, "x": 13})
    checks = []
    for data in (whole.chunk(), chunked):
        fine = dasksr.upscale(data, scale=2, method=method)
        checks.append(upscale_check(fine, data, method, 2))
    a, b = (c.residual.values for c in checks)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    fine = dasksr.upscale(small, scale=2, method=method)
    psf = method_degradation(method, 2).psf(2)
    np.testing.assert_allclose(a, small - degrade_output(fine, 2, (psf, psf)), atol=1e-4)
    assert float(checks[1].rms().compute()) == pytest.approx(float(checks[0].rms().compute()))


def test_invalid_pixels_are_not_measured():
    small = _scene((1, 20, 20)).round()
    small[0, 10, 10] = -1
    fine = dasksr.upscale(small, scale=2, method="bilinear", nodata=-1)
    psf = Degradation("gaussian", 0.5).psf(2)
    found = residual(
        da.from_array(fine, chunks=8), small, 2, [(psf, psf)], nodata=-1, coarse_nodata=-1
    )
    found = found.compute()
    assert np.isnan(found[0, 10, 10]) and np.isnan(found[0, 9, 10])  # the PSF reaches it
    assert np.isfinite(found[0, :5, :5]).all()


def _georeferenced(values, transform) -> xr.DataArray:
    b, h, w = values.shape
    data = xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={
            "band": [f"B{i}" for i in range(b)],
            "y": transform.f + (np.arange(h) + 0.5) * transform.e,
            "x": transform.c + (np.arange(w) + 0.5) * transform.a,
        },
    )
    return data.rio.write_crs("EPSG:32633").rio.write_transform(transform)


@pytest.mark.parametrize("shift", [(0, 0), (5, -5), (-10, 15), (-33, -41)])
def test_sharpen_check_centres_the_mtf_on_the_coarse_pixels(shift):
    # On a plane every symmetric PSF gives the value at its centre: a coarse raster sampled at
    # its pixel centres is exactly consistent with the plane on the guide's grid, at any offset.
    guide_t = Affine(10, 0, 1000, 0, -10, 5000)
    coarse_t = Affine(20, 0, 1000 + shift[1], 0, -20, 5000 - shift[0])
    yy, xx = np.mgrid[0:40, 0:48].astype(float)
    plane = (100 + 3 * yy + 2 * xx)[None]
    jy, jx = np.mgrid[0:22, 0:26].astype(float)
    cy = (coarse_t.f - (jy + 0.5) * 20 - guide_t.f) / -10 - 0.5
    cx = (coarse_t.c + (jx + 0.5) * 20 - guide_t.c) / 10 - 0.5
    coarse = _georeferenced((100 + 3 * cy + 2 * cx)[None], coarse_t)
    out = _georeferenced(da.from_array(plane, chunks=(1, 16, 16)), guide_t)
    check = sharpen_check(out, coarse)
    values = check.residual.values
    assert np.nanmax(np.abs(values[:, 3:-3, 3:-3])) < 1e-3
    transform = check.residual.rio.transform()
    assert (transform.a, transform.e) == (20, -20)
    assert ((transform.c - coarse_t.c) / 20) % 1 == 0 and ((transform.f - coarse_t.f) / 20) % 1 == 0
    whole = sharpen_check(out.chunk({"y": -1, "x": -1}), coarse).residual.values
    np.testing.assert_allclose(values, whole, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


def test_upscale_summary_and_raster(run, tmp_path: Path, uint16_tif):
    out, raster = tmp_path / "out.tif", tmp_path / "consistency.zarr"
    result = run(
        "upscale", uint16_tif.path, out, "-s", "2", "--consistency", raster, "--chunks", 128
    )
    assert result.status == 0, result.err
    assert "consistency RMS" in result.out and "(area mean)" in result.out
    shown = float(result.out.split("consistency RMS ")[1].split()[0])
    with rasterio.open(raster) as src, rasterio.open(uint16_tif.path) as source:
        assert (src.width, src.height, src.count) == (source.width, source.height, source.count)
        assert src.transform == source.transform and src.crs == source.crs
        assert src.dtypes[0] == "float32"
        values = src.read()
    assert np.isnan(values[:, :6, :7]).all()  # the nodata corner is not measured
    assert np.sqrt(np.nanmean(values.astype(np.float64) ** 2)) == pytest.approx(shown, rel=1e-3)
    result = run("upscale", uint16_tif.path, tmp_path / "n.zarr", "-m", "nearest")
    assert "consistency RMS 0 (area mean)" in result.out


def test_sharpen_summary_and_raster(run, tmp_path: Path):
    rng = np.random.default_rng(1)
    coarse = write(tmp_path / "B05.tif", rng.integers(500, 3000, (33, 35), np.uint16), COARSE_T)
    guide = write(tmp_path / "B04.tif", rng.integers(500, 3000, (64, 68), np.uint16), GUIDE_T)
    out, raster = tmp_path / "out.tif", tmp_path / "c.tif"
    result = run("sharpen", coarse, "--guide", guide, out, "--consistency", raster)
    assert result.status == 0, result.err
    assert "consistency RMS" in result.out and "(band MTF Gaussian)" in result.out
    with rasterio.open(raster) as src:
        assert src.crs.to_string() == "EPSG:32618" and src.transform.a == 20
        assert ((src.transform.c - COARSE_T.c) / 20) % 1 == 0


def test_fuse_summary(run, tmp_path: Path):
    frames, _, _ = dasksr.simulate_stack(_scene((64, 64), seed=3) * 30, 3, 2, snr=40, seed=2)
    paths = []
    for k in range(3):
        paths.append(write(tmp_path / f"f{k}.tif", frames.values[k].astype(np.float32), COARSE_T))
    result = run("fuse", *paths, tmp_path / "out.zarr", "--consistency", tmp_path / "c.tif")
    assert result.status == 0, result.err
    assert "consistency RMS" in result.out and "Gaussian PSF sigma" in result.out
    with rasterio.open(tmp_path / "c.tif") as src:
        assert (src.width, src.height) == (32, 32) and src.transform == COARSE_T


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("c.png", "no known extension"),
        ("nowhere/c.tif", "does not exist"),
        ("out.tif", "is the output"),
        ("taken.tif", "exists"),
    ],
)
def test_bad_consistency_paths(run, tmp_path: Path, uint16_tif, name, words):
    (tmp_path / "taken.tif").write_bytes(b"x")
    before = listing(tmp_path)
    result = run("upscale", uint16_tif.path, tmp_path / "out.tif", "--consistency", tmp_path / name)
    assert_one_line_error(result, "--consistency", words)
    assert listing(tmp_path) == before


# ----------------------------------------------------------------------------------------------
# New extrema
# ----------------------------------------------------------------------------------------------


def test_neighbourhood_bounds_are_the_4x4_input_pixels_around():
    small = np.random.default_rng(0).uniform(size=(9, 11))
    low, high = neighbourhood_bounds(small, 3)
    for j, i in [(0, 0), (13, 17), (26, 32), (5, 29)]:
        u, v = (j + 0.5) / 3 - 0.5, (i + 0.5) / 3 - 0.5
        rows = np.clip(np.arange(int(np.floor(u)) - 1, int(np.floor(u)) + 3), 0, 8)
        cols = np.clip(np.arange(int(np.floor(v)) - 1, int(np.floor(v)) + 3), 0, 10)
        window = small[np.ix_(rows, cols)]
        assert (low[j, i], high[j, i]) == (window.min(), window.max())


def test_new_extrema_counts_overshoots_beyond_the_noise():
    small = np.array([[0.0, 0.0, 10.0, 10.0]] * 4)
    assert new_extrema(dasksr.upscale(small, scale=2, method="nearest"), small, 2, noise=0.1) == 0
    bicubic = dasksr.upscale(small, scale=2, method="bicubic")
    # Columns 1, 2 undershoot (-0.23, -0.70) and 5, 6 overshoot (10.70, 10.23) the step.
    assert new_extrema(bicubic, small, 2, noise=0.1) == 0.5
    assert new_extrema(bicubic, small, 2, noise=0.5) == 0.25
    spot = np.full((8, 8), 5.0)
    spot[3, 3] = -20.0  # a dark spot that no input pixel holds
    assert new_extrema(spot, np.full((4, 4), 5.0), 2, noise=1.0) == 1 / 64
    mask = np.ones((8, 8), bool)
    mask[3, 3] = False
    assert new_extrema(spot, np.full((4, 4), 5.0), 2, noise=1.0, mask=mask) == 0


def test_noise_estimate_and_shape_check():
    rng = np.random.default_rng(0)
    noisy = 100 + rng.normal(0, 2.0, (1, 200, 200))
    assert estimate_noise(noisy).item() == pytest.approx(2.0, rel=0.05)
    with pytest.raises(dasksr.DasksrError, match="scale=2"):
        new_extrema(np.zeros((5, 5)), np.zeros((2, 2)), 2)


def test_a_file_input_reads_its_own_coarse_blocks(tmp_path: Path, make_geotiff) -> None:
    # An input opened from a file gives each residual task its coarse block to read itself (no
    # read task for the scheduler to place elsewhere): the same residual as from the pixels.
    raster = make_geotiff(tmp_path / "in.tif", height=70, width=90, nodata=0)
    data = dasksr.open_raster(raster.path, chunks=32)
    fine = dasksr.upscale(data, scale=2, method="bicubic")
    check = upscale_check(fine, data, "bicubic", 2)
    layers = {k[0] if isinstance(k, tuple) else k for k in check.residual.data.__dask_graph__()}
    assert data.data.name not in layers  # the input's read tasks are not in the residual's graph
    in_memory = xr.DataArray(raster.data, dims=data.dims, coords=data.coords).chunk(32)
    in_memory = in_memory.rio.write_nodata(0)
    expected = upscale_check(fine, in_memory, "bicubic", 2)
    np.testing.assert_array_equal(check.residual.values, expected.residual.values)
    assert np.isnan(check.residual.values[raster.data == 0]).all()  # nodata is not measured
    assert float(check.rms().compute()) == float(expected.rms().compute())
