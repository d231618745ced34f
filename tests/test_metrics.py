"""PSNR, SSIM and Y against scikit-image, on images with known MSE, and Dask against NumPy."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dasksr.errors import InvalidArgumentError
from dasksr.metrics import psnr, rgb2y, ssim

RNG = np.random.default_rng(7)
WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _pair(
    shape: tuple[int, ...], dtype: type = np.uint8, spread: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dtype)
    top = min(int(info.max), 4000)
    a = RNG.integers(0, top, shape)
    b = np.clip(a + RNG.integers(-spread, spread + 1, shape), 0, top)
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_psnr_matches_scikit_image(dtype: type) -> None:
    a, b = _pair((3, 40, 50), dtype)
    # The default peak is the integer type's whole range (scikit-image's PSNR uses only the
    # positive half for non-negative signed data, so it is given explicitly here).
    info = np.iinfo(dtype)
    full_range = float(info.max) - float(info.min)
    expected = peak_signal_noise_ratio(a, b, data_range=full_range)
    assert psnr(a, b) == pytest.approx(expected, abs=1e-12)
    fa, fb = a / 4000.0, b / 4000.0
    expected = peak_signal_noise_ratio(fa, fb, data_range=1.0)
    assert psnr(fa, fb, data_range=1.0) == pytest.approx(expected, abs=1e-12)


def test_psnr_of_a_known_mse() -> None:
    a = RNG.integers(10, 240, (30, 30)).astype(np.uint8)
    b = a.copy()
    b[::2] += 4  # half the pixels off by 4, half equal: MSE = 8
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 8), abs=1e-12)
    assert psnr(a, a) == math.inf
    # Differences only in the 3-pixel border vanish with crop=3.
    c = a.copy()
    c[:3] = 0
    assert psnr(a, c) < 30 and psnr(a, c, crop=3) == math.inf


@pytest.mark.parametrize("shape", [(37, 45), (2, 24, 31)])
def test_ssim_matches_scikit_image(shape: tuple[int, ...]) -> None:
    a, b = _pair(shape, spread=40)
    channel = 0 if len(shape) == 3 else None
    expected = structural_similarity(a, b, data_range=255, channel_axis=channel, **WANG)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    cropped = (..., slice(4, -4), slice(4, -4))
    expected = structural_similarity(
        a[cropped], b[cropped], data_range=255, channel_axis=channel, **WANG
    )
    assert ssim(a, b, crop=4) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_is_wangs_valid_window_mean() -> None:
    # Independent of scikit-image: Wang's ssim_index.m with 'valid' 11x11 Gaussian filtering.
    a, b = (x.astype(np.float64) for x in _pair((30, 34), spread=60))
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    window = np.outer(g, g) / np.outer(g, g).sum()

    def valid(image: np.ndarray) -> np.ndarray:
        views = np.lib.stride_tricks.sliding_window_view(image, (11, 11))
        return np.einsum("ijkl,kl->ij", views, window)

    mu_a, mu_b = valid(a), valid(b)
    var_a, var_b = valid(a * a) - mu_a**2, valid(b * b) - mu_b**2
    cov = valid(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    assert ssim(a, b, data_range=255) == pytest.approx(ssim_map.mean(), abs=1e-10)


def test_rgb2y_is_bt601_as_matlab() -> None:
    rgb = RNG.integers(0, 256, (3, 20, 20)).astype(np.uint8)
    reference = rgb2ycbcr(np.moveaxis(rgb, 0, -1))[..., 0]  # float RGB in [0, 1] -> Y in [16, 235]
    np.testing.assert_allclose(rgb2y(rgb, quantize=False), reference, atol=1e-10)
    assert np.array_equal(rgb2y(rgb), np.floor(reference + 0.5))  # MATLAB returns uint8 for uint8
    np.testing.assert_allclose(rgb2y(rgb / 255.0), reference / 255, atol=1e-12)
    assert np.array_equal(rgb2y(np.moveaxis(rgb, 0, -1), axis=-1), rgb2y(rgb))
    with pytest.raises(InvalidArgumentError, match="3 bands"):
        rgb2y(rgb[:2])
    with pytest.raises(InvalidArgumentError, match="uint8"):
        rgb2y(rgb.astype(np.uint16))


def test_y_channel_protocol() -> None:
    a, b = _pair((3, 32, 36), spread=30)
    ya, yb = rgb2y(a), rgb2y(b)
    assert psnr(a, b, crop=2, y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(ya[2:-2, 2:-2], yb[2:-2, 2:-2], data_range=255), abs=1e-12
    )
    assert ssim(a, b, crop=2, y_channel=True) == pytest.approx(
        structural_similarity(ya[2:-2, 2:-2], yb[2:-2, 2:-2], data_range=255, **WANG), abs=1e-12
    )
    # A single-band image is measured on the band itself.
    assert psnr(a[0], b[0], y_channel=True) == psnr(a[0], b[0])
    assert ssim(a[:1], b[:1], y_channel=True) == ssim(a[0], b[0])
    with pytest.raises(InvalidArgumentError, match="y_channel"):
        psnr(np.zeros((4, 12, 12), np.uint8), np.zeros((4, 12, 12), np.uint8), y_channel=True)


def test_metric_arguments_are_checked() -> None:
    a = np.zeros((20, 20), np.uint8)
    with pytest.raises(InvalidArgumentError, match="same shape"):
        psnr(a, a[:10])
    with pytest.raises(InvalidArgumentError, match="data_range"):
        ssim(a.astype(float), a.astype(float))
    with pytest.raises(InvalidArgumentError, match="11 x 11"):
        ssim(a, a, crop=5)
    with pytest.raises(InvalidArgumentError, match="crop"):
        psnr(a, a, crop=10)


@pytest.mark.parametrize("chunks", [(1, 13, 17), (2, 9, 6), (3, 50, 64)])
@pytest.mark.parametrize("y_channel", [False, True])
def test_dask_metrics_equal_numpy(chunks: tuple[int, ...], y_channel: bool) -> None:
    a, b = _pair((3, 50, 64), spread=35)
    da_a, da_b = da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks[::-1])
    lazy_psnr = psnr(da_a, da_b, crop=3, y_channel=y_channel)
    lazy_ssim = ssim(da_a, b, crop=3, y_channel=y_channel)  # one side may stay NumPy
    assert isinstance(lazy_psnr, da.Array) and isinstance(lazy_ssim, da.Array)
    lazy_psnr, lazy_ssim = da.compute(lazy_psnr, lazy_ssim, scheduler="synchronous")
    assert float(lazy_psnr) == pytest.approx(psnr(a, b, crop=3, y_channel=y_channel), abs=1e-6)
    assert float(lazy_ssim) == pytest.approx(ssim(a, b, crop=3, y_channel=y_channel), abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(
    ny=st.integers(11, 40),
    nx=st.integers(11, 40),
    cy=st.integers(2, 40),
    cx=st.integers(2, 40),
    crop=st.integers(0, 2),
)
def test_dask_ssim_is_chunking_independent(ny: int, nx: int, cy: int, cx: int, crop: int) -> None:
    if min(ny, nx) - 2 * crop < 11:
        crop = 0
    a, b = (x.astype(np.float32) for x in _pair((ny, nx), spread=50))
    lazy = ssim(da.from_array(a, chunks=(cy, cx)), b, crop=crop, data_range=255)
    assert float(lazy.compute(scheduler="synchronous")) == pytest.approx(
        ssim(a, b, crop=crop, data_range=255), abs=1e-9
    )
    lazy_psnr = psnr(da.from_array(a, chunks=(cy, cx)), b, data_range=255)
    assert float(lazy_psnr.compute(scheduler="synchronous")) == pytest.approx(
        psnr(a, b, data_range=255), abs=1e-6
    )


def test_psnr_mask_scores_only_its_pixels() -> None:
    """``mask=`` (the sensor evaluation's fill): the masked-out pixels, whatever they hold, leave
    the figure that of the valid pixels alone; it is cropped with the images."""
    rng = np.random.default_rng(7)
    a = rng.integers(0, 4000, (2, 20, 24)).astype(np.uint16)
    b = (a + rng.normal(0, 20, a.shape)).clip(0, 4000).astype(np.uint16)
    mask = rng.random(a.shape) > 0.3
    garbage = np.where(mask, b, 0).astype(np.uint16)
    inner = (..., slice(2, -2), slice(2, -2))
    mse = np.mean((a[inner].astype(np.float64) - b[inner])[mask[inner]] ** 2)
    expected = 10 * math.log10(4000.0**2 / mse)
    assert psnr(a, garbage, crop=2, data_range=4000.0, mask=mask) == pytest.approx(expected)
    assert psnr(a, b, mask=np.ones(a.shape, bool)) == psnr(a, b)
    with pytest.raises(InvalidArgumentError, match="mask must be boolean"):
        psnr(a, b, mask=mask[0])
