"""Fusion and pan-sharpening metrics against sewar, a port of the toolbox Q2n and worked examples.

sewar 0.4.6 differs from the usual definitions in four places, which the comparisons account for:
its ``uqi`` copies Wang's ``img_qi.m`` formula, written for window sums, but feeds it window means
(``uniform_filter``), so the tests give it window sums back; it also leaves out the last row and
column of windows for an even window (it crops ``round(ws / 2)`` from the border of a ``'same'``
map), so it is fed images with one more row and column that no valid window reaches; its ``sam``
takes the angle between the columns of the ``(pixel, band)`` matrix, so it is fed the pixels as
columns; its ``d_s`` degrades the panchromatic image with a uniform filter divided once more by
``ws ** 2`` and a bicubic PIL resize, which is handed to ours as ``degraded_guide``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from dasksr.metrics import (
    _cayley_dickson_product,
    band_rmse,
    d_lambda,
    d_s,
    ergas,
    q2n,
    q_index,
    qnr,
    sam,
    sre,
)

RNG = np.random.default_rng(2018)


@pytest.fixture(scope="module")
def sewar() -> Any:
    with warnings.catch_warnings():  # sewar imports from scipy.ndimage.filters
        warnings.simplefilter("ignore", DeprecationWarning)
        module = pytest.importorskip("sewar", reason="the test extra (sewar) is not installed")
        import sewar.full_ref
        import sewar.no_ref
        import sewar.utils  # noqa: F401
    return module


def _pair(bands: int, size: int = 40, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """A smooth positive reference and a noisy estimate of it, ``(band, size, size)``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(3 * xx + b) * np.cos(2 * yy - b) for b in range(bands)])
    reference = 1 + 0.4 * base + 0.1 * RNG.random((bands, size, size))
    return reference, reference + noise * RNG.standard_normal(reference.shape)


def _yxb(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 0, -1))


def _brute_uiqi(x: np.ndarray, y: np.ndarray, block: int) -> np.ndarray:
    """Wang's img_qi.m window by window, with its rules for constant windows."""
    rows, cols = x.shape[0] - block + 1, x.shape[1] - block + 1
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            a, b = x[i : i + block, j : j + block], y[i : i + block, j : j + block]
            ma, mb = a.mean(), b.mean()
            cov = ((a - ma) * (b - mb)).mean()
            variance, square = a.var() + b.var(), ma**2 + mb**2
            if np.ptp(a) == 0 and np.ptp(b) == 0:
                variance = 0.0
            if variance * square != 0:
                out[i, j] = 4 * cov * ma * mb / (variance * square)
            else:
                out[i, j] = 2 * ma * mb / square if square != 0 else 1.0
    return out


# Against sewar -------------------------------------------------------------------------------------


def test_band_rmse_and_ergas_match_sewar(sewar: Any) -> None:
    ref = RNG.integers(100, 4000, (4, 30, 36)).astype(np.uint16)
    est = (ref + RNG.integers(-60, 61, ref.shape)).astype(np.uint16)
    expected = [sewar.full_ref.rmse(ref[b], est[b]) for b in range(4)]
    np.testing.assert_allclose(band_rmse(ref, est), expected, rtol=1e-12)
    # sewar's r is h / l, fine over coarse pixel size: 1 / ratio.
    for ratio in (2, 4, 6):
        expected_ergas = sewar.full_ref.ergas(_yxb(ref), _yxb(est), r=1 / ratio)
        assert ergas(ref, est, ratio) == pytest.approx(expected_ergas, rel=1e-12)


def test_sam_matches_sewar(sewar: Any) -> None:
    ref, est = _pair(5, 24, noise=0.3)
    # sewar averages the angles between the columns of its (pixel, band) matrix: given the pixels
    # as columns, a (1, band, pixel) image, it averages the pixels' spectral angles.
    expected = sewar.full_ref.sam(ref.reshape(1, 5, -1), est.reshape(1, 5, -1))
    assert sam(ref, est) == pytest.approx(math.degrees(expected), rel=1e-10)
    assert sam(ref, est) > 1  # a real angle, not a trivial agreement


def _sewar_window_sums(sewar: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """sewar's uqi with the window sums its formula is written for (it is given window means)."""

    def window_sums(image: np.ndarray, size: int) -> np.ndarray:
        return uniform_filter(image, size) * size**2

    monkeypatch.setattr(sewar.full_ref, "uniform_filter", window_sums)


@pytest.mark.parametrize("block", [7, 8])
def test_q_index_matches_sewar_uqi(sewar: Any, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    ref, est = _pair(3, 36)
    as_given = sewar.full_ref.uqi(_yxb(ref), _yxb(est), ws=block)
    _sewar_window_sums(sewar, monkeypatch)
    expected = sewar.full_ref.uqi(_yxb(ref), _yxb(est), ws=block)
    # sewar averages the windows that start from round(ws / 2) - ws // 2 to round(ws / 2) + 1
    # before the last: the valid windows of the image less that margin.
    low = round(block / 2) - block // 2
    inner = (slice(None), slice(low, -1), slice(low, -1))
    ours = q_index(ref[inner], est[inner], block=block).mean()
    assert ours == pytest.approx(expected, rel=1e-9)
    assert abs(as_given - ours) > 1e-3  # the sums matter


def _sewar_valid_uqi(sewar: Any) -> Any:
    """sewar's own uqi (ws=8) on every valid window: one extra row and column that none reaches."""

    def uqi(gt: np.ndarray, p: np.ndarray, ws: int = 8) -> float:
        assert ws == 8
        pad = ((0, 1), (0, 1)) + ((0, 0),) * (gt.ndim - 2)
        return sewar.full_ref.uqi(np.pad(gt, pad, mode="edge"), np.pad(p, pad, mode="edge"), ws)

    return uqi


def _sewar_degraded_pan(sewar: Any, pan: np.ndarray, ratio: int, ws: int = 7) -> np.ndarray:
    """sewar's d_s degradation of the panchromatic image, step by step."""
    blurred = uniform_filter(pan.astype(np.float64), size=ws) / ws**2
    return sewar.utils.imresize(blurred, (pan.shape[0] // ratio, pan.shape[1] // ratio))


@pytest.mark.filterwarnings("ignore:Supplied images have different dtypes")  # its float32 pan
def test_qnr_matches_sewar(sewar: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _sewar_window_sums(sewar, monkeypatch)
    uqi = _sewar_valid_uqi(sewar)
    ref, est = _pair(4, 24)
    assert uqi(_yxb(ref), _yxb(est)) == pytest.approx(q_index(ref, est, 8).mean(), rel=1e-9)
    monkeypatch.setattr(sewar.no_ref, "uqi", uqi)

    ratio = 2
    fine, _ = _pair(4, 64, noise=0.0)
    pan = fine.mean(axis=0) + 0.05 * RNG.standard_normal(fine.shape[1:])
    coarse = fine.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4))
    fused = fine + 0.08 * RNG.standard_normal(fine.shape) * np.arange(1, 5)[:, None, None]
    low_pan = _sewar_degraded_pan(sewar, pan, ratio)
    ms, fz = _yxb(coarse), _yxb(fused)

    for p in (1, 2):
        expected = sewar.no_ref.d_lambda(ms, fz, p=p)
        assert d_lambda(fused, coarse, p=p, block=8) == pytest.approx(expected, rel=1e-8)
    for q in (1, 3):
        expected = sewar.no_ref.d_s(pan, ms, fz, q=q, r=ratio, ws=7)
        ours = d_s(fused, coarse, pan[None], ratio, q=q, block=8, degraded_guide=low_pan)
        assert ours == pytest.approx(expected, rel=1e-8)
    expected = sewar.no_ref.qnr(pan, ms, fz, alpha=1, beta=2, r=ratio, ws=7)
    scores = qnr(fused, coarse, pan[None], ratio, alpha=1, beta=2, block=8, degraded_guide=low_pan)
    assert scores["qnr"] == pytest.approx(expected, rel=1e-8)
    assert 0 < scores["d_lambda"] < 0.5 and 0 < scores["d_s"] < 0.5
    assert scores["qnr"] == pytest.approx((1 - scores["d_lambda"]) * (1 - scores["d_s"]) ** 2)


# QNR's own conventions -----------------------------------------------------------------------------


def test_d_s_degrades_the_mean_guide_by_block_averages() -> None:
    fine, _ = _pair(3, 66, noise=0.0)  # 66 = 2 * 32 + 2: fused and guide are cropped to 64
    guide = np.stack([fine[0], fine[1] + 0.1 * RNG.random(fine.shape[1:])])
    coarse = fine[:, :64, :64].reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))
    fused = fine + 0.05 * RNG.standard_normal(fine.shape)
    pan = guide.mean(axis=0)[:64, :64]
    low = pan.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    expected = np.mean(
        [
            abs(
                q_index(fused[b : b + 1, :64, :64], pan[None], 8)[0]
                - q_index(coarse[b : b + 1], low[None], 8)[0]
            )
            for b in range(3)
        ]
    )
    assert d_s(fused, coarse, guide, 2, block=8) == pytest.approx(expected, rel=1e-12)
    assert d_s(fused, coarse, guide, 2, block=8, degraded_guide=low) == pytest.approx(expected)
    # An image that is its own fusion keeps every relation: no distortion.
    assert d_lambda(coarse, coarse, block=8) == 0.0


# UIQI and Q2n -------------------------------------------------------------------------------------


def test_q_index_equals_wang_window_by_window() -> None:
    ref, est = _pair(1, 20)
    ref[0, 2:12, 3:14] = 5.0  # constant in both: the means alone score
    est[0, 2:12, 3:14] = 4.0
    ref[0, 12:, :6] = est[0, 12:, :6] = 0.0  # 0 / 0: scores 1
    for block in (4, 5):
        expected = _brute_uiqi(ref[0], est[0], block).mean()
        assert q_index(ref, est, block)[0] == pytest.approx(expected, rel=1e-10)


def _toolbox_conj(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z[:1], -z[1:]])


def _toolbox_onion_mult(o1: np.ndarray, o2: np.ndarray) -> np.ndarray:
    """onion_mult2D of the MATLAB pan-sharpening toolbox (Vivone et al.), components on axis 0."""
    n = len(o1)
    if n == 1:
        return o1 * o2
    half = n // 2
    a, b = o1[:half], _toolbox_conj(o1[half:])
    c, d = o2[:half], _toolbox_conj(o2[half:])
    if n == 2:
        return np.concatenate([a * c - d * b, a * d + c * b])
    first = _toolbox_onion_mult(a, c) - _toolbox_onion_mult(d, _toolbox_conj(b))
    second = _toolbox_onion_mult(_toolbox_conj(a), d) + _toolbox_onion_mult(c, b)
    return np.concatenate([first, second])


def _toolbox_onions_quality(dat1: np.ndarray, dat2: np.ndarray) -> float:
    """onions_quality.m of the toolbox on one (band, s, s) block, its block normalisation too."""
    size = dat1.shape[1] * dat1.shape[2]
    mean, std = dat1.mean(axis=(1, 2), keepdims=True), dat1.std(axis=(1, 2), ddof=1, keepdims=True)
    dat1, dat2 = (dat1 - mean) / std + 1, _toolbox_conj((dat2 - mean) / std + 1)
    m1, m2 = dat1.mean(axis=(1, 2)), dat2.mean(axis=(1, 2))
    mod_q1m, mod_q2m = np.sqrt((m1**2).sum()), np.sqrt((m2**2).sum())
    factor = size / (size - 1)
    int1, int2 = factor * (dat1**2).sum(axis=0).mean(), factor * (dat2**2).sum(axis=0).mean()
    term3 = int1 + int2 - factor * (mod_q1m**2 + mod_q2m**2)
    mean_bias = 2 * mod_q1m * mod_q2m / (mod_q1m**2 + mod_q2m**2)
    qv = factor * _toolbox_onion_mult(dat1, dat2).mean(axis=(1, 2))
    q = (qv - factor * _toolbox_onion_mult(m1, m2)) * mean_bias * 2 / term3
    return float(np.sqrt((q**2).sum()))


@pytest.mark.parametrize("bands", [2, 4, 8])
def test_q2n_equals_the_toolbox_on_normalised_blocks(bands: int) -> None:
    ref, est = _pair(bands, 16, noise=0.2)
    est[1] += 0.3  # a bias, so that the mean term counts
    expected = _toolbox_onions_quality(ref, est)
    # The toolbox first maps each band of both blocks by the reference's block mean and standard
    # deviation; given blocks so mapped, ours is the same number (its product differs from the
    # Cayley-Dickson one by a fixed isometry of the result, which leaves the modulus alone).
    mean, std = ref.mean(axis=(1, 2), keepdims=True), ref.std(axis=(1, 2), ddof=1, keepdims=True)
    ours = q2n((ref - mean) / std + 1, (est - mean) / std + 1, block=16, shift=16)
    assert ours == pytest.approx(expected, rel=1e-10)
    assert 0.2 < ours < 0.99


@pytest.mark.parametrize("bands", [3, 4, 6, 8])
def test_q2n_of_equal_images_is_one(bands: int) -> None:
    ref, _ = _pair(bands, 40)
    assert abs(q2n(ref, ref, block=16, shift=12) - 1) < 1e-12
    assert abs(q2n(ref.astype(np.float32), ref.astype(np.float32), 8, 8) - 1) < 1e-12


def test_q2n_of_one_band_is_the_mean_uiqi() -> None:
    ref, est = _pair(1, 32, noise=0.05)
    assert (_brute_uiqi(ref[0], est[0], 8) > 0).all()  # so |UIQI| is UIQI
    assert q2n(ref, est, block=8, shift=1) == pytest.approx(q_index(ref, est, 8)[0], rel=1e-10)
    tiles = [
        q_index(ref[:, i : i + 8, j : j + 8], est[:, i : i + 8, j : j + 8], 8)[0]
        for i in range(0, 25, 6)
        for j in range(0, 25, 6)
    ]
    assert q2n(ref, est, block=8, shift=6) == pytest.approx(np.mean(tiles), rel=1e-10)


def test_q2n_falls_with_a_bias_in_one_band_and_pads_six_bands_to_eight() -> None:
    ref, est = _pair(4, 32, noise=0.0)
    biased = est.copy()
    biased[2] += 0.5
    assert q2n(ref, biased, 16, 16) < 0.999
    assert q2n(ref, ref + 0.01 * RNG.standard_normal(ref.shape), 16, 16) > q2n(ref, biased, 16, 16)
    six, noisy = _pair(6, 32, noise=0.1)
    padded = [np.concatenate([a, np.zeros((2, 32, 32))]) for a in (six, noisy)]
    value = q2n(six, noisy, 16, 8)
    assert value == q2n(*padded, 16, 8)
    assert 0.3 < value < 0.999


def test_cayley_dickson_product_is_hamilton_and_octonion_norms_multiply() -> None:
    a, b = RNG.standard_normal(4), RNG.standard_normal(4)
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    hamilton = [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]
    np.testing.assert_allclose(_cayley_dickson_product(a, b), hamilton, rtol=1e-12, atol=1e-15)
    for n in (2, 4, 8):
        u, v = RNG.standard_normal((2, n))
        norm = np.linalg.norm(_cayley_dickson_product(u, v))
        assert norm == pytest.approx(np.linalg.norm(u) * np.linalg.norm(v), rel=1e-12)
        toolbox = np.linalg.norm(_toolbox_onion_mult(u, v))
        assert toolbox == pytest.approx(norm, rel=1e-12)


# Worked examples ----------------------------------------------------------------------------------


def test_sre_on_a_worked_example() -> None:
    ref = np.array([[[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]]])
    est = np.array([[[1.0, 2.0], [3.0, 5.0]], [[1.0, 3.0], [1.0, 3.0]]])
    # Band 0: mean square 30 / 4 over mean error 1 / 4; band 1: 4 over 1.
    np.testing.assert_allclose(sre(ref, est), [10 * math.log10(30), 10 * math.log10(4)])
    np.testing.assert_allclose(band_rmse(ref, est), [0.5, 1.0])
    assert sre(ref, ref)[0] == np.inf


def test_sam_on_worked_examples() -> None:
    # Pixels: (1, 0) against (0, 2) is 90 degrees, (1, 1) against (2, 2) is 0; a zero vector is
    # left out.
    ref = np.array([[[1.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]]])
    est = np.array([[[0.0, 2.0, 1.0]], [[2.0, 2.0, 1.0]]])
    assert sam(ref, est) == pytest.approx(45.0, abs=1e-12)
    assert sam(ref, ref) == 0.0
    assert sam(ref, 3 * ref) < 1e-12  # arccos of the rounded cosine reads about 1e-6 here
    assert sam(ref[:, :, :1], est[:, :, :1]) == pytest.approx(90.0, abs=1e-12)
    assert math.isnan(sam(ref[:, :, 2:], est[:, :, 2:]))


# Masks and errors ---------------------------------------------------------------------------------


def test_a_mask_scores_the_selected_pixels() -> None:
    ref, est = _pair(4, 30, noise=0.1)
    mask = RNG.random((30, 30)) > 0.4
    picked = [a[:, mask][:, None, :] for a in (ref, est)]
    np.testing.assert_allclose(band_rmse(ref, est, mask), band_rmse(*picked), rtol=1e-13)
    np.testing.assert_allclose(sre(ref, est, mask), sre(*picked), rtol=1e-13)
    assert sam(ref, est, mask) == pytest.approx(sam(*picked), rel=1e-13)
    assert ergas(ref, est, 2, mask) == pytest.approx(ergas(*picked, 2), rel=1e-13)
    assert band_rmse(ref, est, mask)[0] != pytest.approx(band_rmse(ref, est)[0], rel=1e-6)
    # Windowed: the windows wholly inside a rectangle, whatever lies outside it (NaN fill here).
    box = np.zeros((30, 30), dtype=bool)
    box[3:25, 5:29] = True
    filled = np.where(box, est, np.nan)
    np.testing.assert_allclose(
        q_index(ref, filled, 8, mask=box),
        q_index(ref[:, 3:25, 5:29], est[:, 3:25, 5:29], 8),
        rtol=1e-9,
    )


def test_bad_arguments_raise_value_errors() -> None:
    ref, est = _pair(3, 20)
    with pytest.raises(ValueError, match="same"):
        band_rmse(ref, est[:, :-1])
    with pytest.raises(ValueError, match="band, y, x"):
        sam(ref[0], est[0])
    with pytest.raises(ValueError, match="mask"):
        sre(ref, est, mask=np.ones((20, 19), dtype=bool))
    with pytest.raises(ValueError, match="block"):
        q_index(ref, est, block=21)
    with pytest.raises(ValueError, match="window"):
        q_index(ref, est, block=8, mask=np.eye(20, dtype=bool))
    with pytest.raises(ValueError, match="ratio=2"):
        d_s(ref[:, :15, :15], ref[:, :8, :8], ref[:1], 2, block=4)
    with pytest.raises(ValueError, match="degraded_guide"):
        qnr(ref, ref[:, :10, :10], ref[:1], 2, block=4, degraded_guide=np.ones((9, 10)))
    with pytest.raises(ValueError, match="at least two"):
        d_lambda(ref[:1], ref[:1, :10, :10], block=4)
