"""Degradation models: MATLAB imresize against MATLAB's own files, Pillow and the bicubic method;
the sensor model against scipy, its noise statistics, and chunked == whole image."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

import dasksr
from dasksr.data import data_path
from dasksr.degrade import degrade_sensor, imresize, mod_crop
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.degrade import round_half_away

RNG = np.random.default_rng(20240601)


@pytest.fixture(scope="module")
def benchmark_pairs() -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Every (dataset, scale, HR, MATLAB LR) of Set5 and Set14, read once for this module."""
    root = data_path("sr-benchmarks")
    if root is None:
        pytest.skip("sr-benchmarks data not found (set DASKSR_DATA)")
    pairs = []
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            for hr in sorted((root / dataset / f"image_SRF_{scale}").glob("*_HR.png")):
                lr = hr.with_name(hr.name.replace("_HR", "_LR"))
                pairs.append((dataset, scale, _read(hr), _read(lr)))
    if not pairs:
        pytest.skip("no Set5/Set14 images under sr-benchmarks")
    return pairs


def _read(path: Path) -> np.ndarray:
    pixels = np.array(Image.open(path))
    return np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels


@pytest.mark.data
def test_imresize_reproduces_matlab_low_resolution_files(
    benchmark_pairs: list[tuple[str, int, np.ndarray, np.ndarray]],
) -> None:
    equal = total = 0
    worst = 0
    for _, scale, hr, lr in benchmark_pairs:
        ours = imresize(hr, 1 / scale)
        assert ours.shape == lr.shape and ours.dtype == np.uint8
        diff = np.abs(ours.astype(int) - lr)
        equal += int((diff == 0).sum())
        total += diff.size
        worst = max(worst, int(diff.max()))
    assert equal / total >= 0.999
    assert worst <= 1


@pytest.mark.data
def test_mirrored_edges_do_not_reproduce_matlab_files(
    benchmark_pairs: list[tuple[str, int, np.ndarray, np.ndarray]],
) -> None:
    # MATLAB clamps indices at the edge; mirroring them (as some ports do) misses its borders.
    _, scale, hr, lr = next(p for p in benchmark_pairs if p[1] == 2)
    mirrored = imresize(hr, 1 / scale, boundary="symmetric").astype(int)
    assert np.abs(mirrored - lr).max() > 1
    assert np.array_equal(mirrored[..., 3:-3, 3:-3], lr[..., 3:-3, 3:-3])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_imresize_interior_matches_pillow_antialiased_bicubic(factor: int) -> None:
    # Pillow's BICUBIC resize is Keys a=-0.5 widened by the factor, on the same pixel grid; it
    # treats edges differently, so only pixels whose support stays inside the image are compared.
    image = RNG.random((12 * factor, 15 * factor)).astype(np.float32)
    ours = imresize(image, 1 / factor)
    size = (image.shape[1] // factor, image.shape[0] // factor)
    pillow = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    assert ours.shape == pillow.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours[3:-3, 3:-3], pillow[3:-3, 3:-3], atol=2e-6)


@pytest.mark.parametrize("factor", [2, 3])
def test_symmetric_boundary_equals_resizing_a_mirror_padded_image(factor: int) -> None:
    image = RNG.random((2, 5 * factor, 7 * factor))
    pad = 3 * factor
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    reference = imresize(padded, 1 / factor)[:, 3:-3, 3:-3]
    np.testing.assert_allclose(
        imresize(image, 1 / factor, boundary="symmetric"), reference, atol=1e-12
    )
    # With clamped indices the edge pixels differ, the interior does not.
    clamped = imresize(image, 1 / factor)
    assert not np.allclose(clamped, reference)
    np.testing.assert_allclose(clamped[:, 3:-3, 3:-3], reference[:, 3:-3, 3:-3], atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_upscaling_is_the_bicubic_method_inside_the_image(scale: int) -> None:
    image = RNG.random((3, 14, 17))
    ours = imresize(image, scale)
    method = dasksr.upscale(image, scale=scale, method="bicubic")
    inner = (..., slice(3 * scale, -3 * scale), slice(3 * scale, -3 * scale))
    np.testing.assert_allclose(ours[inner], method[inner], atol=1e-9)


def test_imresize_keeps_dtype_and_saturates_integers() -> None:
    edges = np.zeros((24, 24), dtype=np.uint8)
    edges[:, 12:] = 255
    small = imresize(edges, 1 / 2)
    assert small.dtype == np.uint8 and small.shape == (12, 12)
    # Bicubic overshoots past 0 and 255 next to the edge: saturated, never wrapped around.
    assert small[0, 0] == 0 and small[0, -1] == 255
    assert np.all(np.diff(small.astype(int), axis=1) >= 0)
    flat = np.full((3, 9, 9), 77, dtype=np.uint16)
    assert np.array_equal(imresize(flat, 1 / 3), np.full((3, 3, 3), 77, dtype=np.uint16))


def test_round_half_away_from_zero() -> None:
    ties = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert np.array_equal(round_half_away(ties), [-3, -2, -1, 1, 2, 3])
    values = RNG.normal(0, 100, 1000)
    assert np.array_equal(round_half_away(values), np.sign(values) * np.floor(np.abs(values) + 0.5))


def test_imresize_rejects_bad_arguments() -> None:
    image = np.zeros((8, 8))
    with pytest.raises(InvalidArgumentError, match="boundary"):
        imresize(image, 0.5, boundary="wrap")
    with pytest.raises(InvalidArgumentError, match="scale"):
        imresize(image, -2)
    with pytest.raises(InvalidArgumentError, match="NumPy"):
        imresize(da.zeros((8, 8)), 0.5)


def test_mod_crop_keeps_the_top_left_multiple() -> None:
    image = np.arange(7 * 10).reshape(7, 10)
    assert np.array_equal(mod_crop(image, 3), image[:6, :9])
    with pytest.raises(InvalidArgumentError):
        mod_crop(image, 0)


# Centre of the PSF on the high-resolution grid, (scale - 1) / 2 + shift * scale, is an integer for
# these cases, where scipy's gaussian_filter sampled every `scale` pixels is the same operator.
@pytest.mark.parametrize(
    ("scale", "shift", "start"),
    [(3, 0.0, 1), (5, 0.0, 2), (3, 1.0, 4), (2, 0.25, 1), (4, -0.375, 0)],
)
def test_sensor_psf_is_scipys_gaussian_filter_then_decimation(
    scale: int, shift: float, start: int
) -> None:
    sigma = 0.6
    image = RNG.random((2, 12 * scale, 10 * scale))
    ours = degrade_sensor(image, scale, sigma=sigma, shift=(shift, shift))
    blurred = ndimage.gaussian_filter(image, (0, sigma * scale, sigma * scale), mode="reflect")
    reference = blurred[:, start::scale, start::scale]
    n = min(ours.shape[-1], reference.shape[-1]) - 1
    np.testing.assert_allclose(ours[:, 1:n, 1:n], reference[:, 1:n, 1:n], atol=1e-12)


def test_sensor_shift_moves_the_sampling_grid() -> None:
    image = RNG.random((40, 40))
    base = degrade_sensor(image, 2, sigma=0.5)
    moved = degrade_sensor(image, 2, sigma=0.5, shift=(1.0, -2.0))
    np.testing.assert_allclose(moved[5:-5, 5:-5], base[6:-4, 3:-7], atol=1e-12)


def test_sensor_noise_has_the_requested_snr_per_band() -> None:
    y, x = np.mgrid[0:512, 0:512]
    texture = 100 + 20 * np.sin(x / 7.0) * np.cos(y / 11.0)
    scene = np.stack([texture, 10 * texture])
    clean = degrade_sensor(scene, 2)
    noisy = degrade_sensor(scene, 2, snr=20.0, seed=7)
    noise = noisy - clean
    for band in range(2):
        measured = 10 * np.log10(np.mean(clean[band] ** 2) / np.mean(noise[band] ** 2))
        assert measured == pytest.approx(20.0, abs=0.1)
        assert abs(noise[band].mean()) < 0.05 * noise[band].std()
    assert np.array_equal(noisy, degrade_sensor(scene, 2, snr=20.0, seed=7))
    assert not np.allclose(noisy, degrade_sensor(scene, 2, snr=20.0, seed=8))


def test_sensor_keeps_integer_dtype_and_rejects_bad_input() -> None:
    scene = np.full((2, 12, 12), 1000, dtype=np.uint16)
    out = degrade_sensor(scene, 3, snr=30.0)
    assert out.dtype == np.uint16 and out.shape == (2, 4, 4)
    assert degrade_sensor(scene, 3, dtype=np.float32).dtype == np.float32
    with pytest.raises(InvalidArgumentError, match="mod_crop"):
        degrade_sensor(np.zeros((10, 12)), 3)
    with pytest.raises(InvalidArgumentError, match="sigma"):
        degrade_sensor(np.zeros((12, 12)), 3, sigma=0)
    with pytest.raises(InvalidArgumentError, match="seed"):
        degrade_sensor(np.zeros((12, 12)), 3, seed=-1)
    with pytest.raises(InvalidArgumentError, match="shift"):
        degrade_sensor(np.zeros((12, 12)), 3, shift=0.5)  # type: ignore[arg-type]


def test_sensor_on_dask_is_lazy_with_scaled_chunks() -> None:
    scene = da.from_array(RNG.random((2, 48, 60)), chunks=(1, 12, 30))
    out = degrade_sensor(scene, 3, snr=25.0)
    assert isinstance(out, da.Array)
    assert out.chunks == ((1, 1), (4, 4, 4, 4), (10, 10))
    # The noise level is measured up front: the returned graph has no global reduction, which
    # would hold every block in memory until it finished.
    assert not any("mean" in str(key) for key in dict(out.__dask_graph__()))
    # Chunks that are not multiples of the scale are moved to multiples, not rejected.
    ragged = degrade_sensor(scene.rechunk((2, 13, 31)), 3)
    assert ragged.chunks[1:] == ((4, 4, 5, 3), (10, 10))
    assert np.array_equal(ragged.compute(), degrade_sensor(scene.compute(), 3))


@st.composite
def _sensor_case(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...], int, dict[str, object]]:
    scale = draw(st.integers(2, 4))
    ny, nx = draw(st.integers(1, 9)) * scale, draw(st.integers(1, 9)) * scale
    bands = draw(st.integers(1, 2))
    chunks = (1, draw(st.integers(1, ny)), draw(st.integers(1, nx)))
    dtype = draw(st.sampled_from([np.float64, np.uint16]))
    seed = draw(st.integers(0, 2**16))
    image = np.random.default_rng(seed).random((bands, ny, nx)) * 1000
    options = {
        "sigma": draw(st.floats(0.3, 1.5)),
        "shift": (draw(st.floats(-1.5, 1.5)), draw(st.floats(-1.5, 1.5))),
        "snr": draw(st.one_of(st.none(), st.floats(5, 40))),
        "seed": seed,
    }
    return image.astype(dtype), chunks, scale, options


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sensor_case())
def test_sensor_chunked_equals_whole_image(
    case: tuple[np.ndarray, tuple[int, ...], int, dict[str, object]],
) -> None:
    image, chunks, scale, options = case
    whole = degrade_sensor(image, scale, **options)  # type: ignore[arg-type]
    chunked = degrade_sensor(da.from_array(image, chunks=chunks), scale, **options)  # type: ignore[arg-type]
    result = chunked.compute(scheduler="synchronous")
    assert result.dtype == whole.dtype and result.shape == whole.shape
    if options["snr"] is None or image.dtype != np.float64:
        assert np.array_equal(result, whole)
    else:
        # The noise level comes from a mean that dask sums in another order: last-bit differences.
        np.testing.assert_allclose(result, whole, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize(
    ("psf_name", "dtype"),
    [
        ("area", np.uint16),
        ("gaussian", np.float32),
        ("bicubic", np.int16),
        ("gaussian", np.float64),
    ],
)
def test_compiled_decimation_is_the_array_path_bit_for_bit(psf_name: str, dtype: type) -> None:
    from dasksr.kernels import degrade as kd

    scale = 2 if psf_name != "bicubic" else 3
    psf = {
        "area": kd.area_psf(scale),
        "gaussian": kd.sensor_psf(scale, 0.6, 0.25),
        "bicubic": kd.bicubic_psf(scale),
    }[psf_name]
    halo = psf.halo
    # A cropped view of a larger block (rows not adjacent), as a task's block often is.
    big = RNG.normal(500, 300, (2, 3, 150 * scale + 2 * halo + 6, 140 * scale + 2 * halo + 4))
    block = big.astype(dtype)[:, :, 3:-3, 2:-2]
    if np.issubdtype(dtype, np.floating):
        block[0, 1, 40, 50] = np.nan
    assert kd._COMPILED_MIN_PIXELS <= 150 * 140  # the output planes: the compiled path
    compiled = kd.blur_decimate(block, psf, psf)
    arrays = kd._decimate_axis(kd._decimate_axis(block, psf, 2), psf, 3)
    assert compiled.dtype == np.float64 and compiled.shape == (2, 3, 150, 140)
    np.testing.assert_array_equal(compiled, arrays)  # NaN where the taps read the NaN
    assert np.isnan(compiled).sum() == (np.isnan(block).sum() > 0) * np.isnan(arrays).sum()
    # And what it computes, by an independent route: a 2-D correlation, then sampling.
    kernel = np.outer(psf.weights, psf.weights)
    first = halo + psf.offset
    windows = np.lib.stride_tricks.sliding_window_view(
        block.astype(np.float64), kernel.shape, axis=(2, 3)
    )[:, :, first::scale, first::scale][:, :, :150, :140]
    reference = (windows * kernel).sum(axis=(-2, -1))
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-9)
