"""Interpolation kernels against independent references: Pillow, a direct formula, NumPy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from dasksr.api import upscale_numpy
from dasksr.kernels.interp import keys_cubic, lanczos, triangle
from dasksr.methods import get_method

PILLOW = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
KERNELS = {"bilinear": (triangle, 1), "bicubic": (keys_cubic, 2), "lanczos": (lanczos, 3)}


def smooth_image(ny: int = 61, nx: int = 83, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx]
    return (np.sin(x / 4.0) * np.cos(y / 5.0) * 100 + rng.normal(0, 20, (ny, nx))).astype(
        np.float32
    )


def direct_reference(image: np.ndarray, scale: int, method: str) -> np.ndarray:
    """Slow, obviously correct resampling: every fine pixel sums its taps directly.

    Fine pixel j sits at coarse coordinate (j + 0.5) / scale - 0.5; input indices past the edge
    are mirrored half-sample symmetrically (-1 -> 0, n -> n - 1).
    """
    kernel, radius = KERNELS[method]

    def matrix(n: int) -> np.ndarray:
        m = np.zeros((n * scale, n))
        for j in range(n * scale):
            c = (j + 0.5) / scale - 0.5
            taps = np.arange(int(np.floor(c)) - radius, int(np.floor(c)) + radius + 2)
            w = kernel(c - taps)
            w = w / w.sum()
            for t, wt in zip(taps, w, strict=True):
                i = t
                while i < 0 or i >= n:  # half-sample symmetric mirror, repeated for tiny n
                    i = -i - 1 if i < 0 else 2 * n - i - 1
                m[j, i] += wt
        return m

    ny, nx = image.shape
    return matrix(ny) @ image.astype(np.float64) @ matrix(nx).T


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8])
def test_matches_pillow_away_from_edges(method: str, scale: int) -> None:
    image = smooth_image()
    ours = upscale_numpy(image, get_method(method), scale)
    pil = Image.fromarray(image, mode="F").resize(
        (image.shape[1] * scale, image.shape[0] * scale), PILLOW[method]
    )
    theirs = np.asarray(pil)
    margin = (KERNELS[method][1] + 1) * scale
    inner = (slice(margin, -margin), slice(margin, -margin))
    span = float(image.max() - image.min())
    assert np.max(np.abs(ours[inner] - theirs[inner])) <= 1e-4 * span


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3), (17, 9)])
@pytest.mark.parametrize("scale", [2, 3, 7])
def test_matches_direct_formula_including_edges(
    method: str, shape: tuple[int, int], scale: int
) -> None:
    image = smooth_image(*shape, seed=3)
    ours = upscale_numpy(image, get_method(method), scale)
    expected = direct_reference(image, scale, method)
    span = max(float(np.ptp(image)), 1.0)
    np.testing.assert_allclose(ours, expected, atol=2e-5 * span)


def test_nearest_is_pixel_replication() -> None:
    image = np.arange(12, dtype=np.int16).reshape(3, 4) - 6
    for scale in (2, 5):
        out = upscale_numpy(image, get_method("nearest"), scale)
        np.testing.assert_array_equal(out, np.kron(image, np.ones((scale, scale), np.int16)))


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_integers_are_rounded_and_clipped_never_wrapped(method: str, dtype: type) -> None:
    info = np.iinfo(dtype)
    image = np.full((12, 12), info.min, dtype=dtype)
    image[:, 6:] = info.max  # a full-range step: bicubic and lanczos overshoot both ways
    out = upscale_numpy(image, get_method(method), 4)
    as_float = upscale_numpy(image.astype(np.float64), get_method(method), 4)
    assert as_float.max() > info.max and as_float.min() < info.min  # the overshoot is real
    expected = np.clip(np.rint(as_float), info.min, info.max).astype(dtype)
    assert out.dtype == dtype
    assert np.abs(out.astype(np.int64) - expected.astype(np.int64)).max() <= 1
    # Never wrapped: the left half stays near the minimum, the right half near the maximum.
    assert out[:, :20].max() <= info.min + (info.max - info.min) // 2
    assert out[:, -20:].min() >= info.min + (info.max - info.min) // 2


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
def test_nodata_never_rings_into_valid_pixels_and_stays_nodata(method: str) -> None:
    image = np.full((20, 24), 1000, dtype=np.uint16)
    image[5:9, 3:15] = 0  # nodata block inside a flat valid field
    image[:, 20:] = 0
    scale = 3
    out = upscale_numpy(image, get_method(method), scale, nodata=0)
    footprint = np.kron(image == 0, np.ones((scale, scale), bool))
    np.testing.assert_array_equal(out == 0, footprint)
    # A flat valid field stays exactly flat: no value of the nodata pixels leaked in.
    assert np.all(out[~footprint] == 1000)
    # Without declaring nodata, the zeros would ring into the field: the rule is doing the work.
    plain = upscale_numpy(image, get_method(method), scale)
    assert np.any(plain[~footprint] != 1000)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
def test_nan_is_invalid_in_float_data(method: str) -> None:
    image = smooth_image(16, 16)
    image[4:7, 4:7] = np.nan
    out = upscale_numpy(image, get_method(method), 2)
    footprint = np.kron(np.isnan(image), np.ones((2, 2), bool))
    np.testing.assert_array_equal(np.isnan(out), footprint)
    # Far from the hole the result equals the hole-free computation.
    filled = upscale_numpy(np.nan_to_num(image), get_method(method), 2)
    far = np.ones_like(footprint)
    far[2 * 4 - 8 : 2 * 7 + 8, 2 * 4 - 8 : 2 * 7 + 8] = False
    np.testing.assert_array_equal(out[far], filled[far])


def test_valid_pixels_never_take_the_nodata_value() -> None:
    # Valid 1s beside a bright edge undershoot to 0 with bicubic; 0 is the nodata value.
    image = np.ones((10, 10), dtype=np.uint8)
    image[:, 5:] = 255
    image[0, 0] = 0
    out = upscale_numpy(image, get_method("bicubic"), 4, nodata=0)
    np.testing.assert_array_equal(out == 0, np.kron(image == 0, np.ones((4, 4), bool)))
    assert out[~np.kron(image == 0, np.ones((4, 4), bool))].min() == 1


def test_leading_axes_are_processed_plane_by_plane() -> None:
    stack = np.stack([smooth_image(seed=s) for s in range(3)])[None]  # (1, 3, y, x)
    out = upscale_numpy(stack, get_method("lanczos"), 2)
    assert out.shape == (1, 3, stack.shape[2] * 2, stack.shape[3] * 2)
    for b in range(3):
        np.testing.assert_array_equal(
            out[0, b], upscale_numpy(stack[0, b], get_method("lanczos"), 2)
        )


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_loops_match_the_array_path_bit_for_bit(
    method: str, scale: int, dtype: type
) -> None:
    # NumPy blocks run the compiled loops, CuPy blocks and small NumPy ones the array-at-a-time
    # path: both must do the same arithmetic, or a cluster mixing CPUs and GPUs would give seams.
    from dasksr.kernels import interp
    from dasksr.kernels.loops import polyphase_rows

    halo = interp._KERNELS[method][1]
    rows = np.pad(smooth_image(23, 37, seed=scale), halo, mode="symmetric").astype(dtype)
    weights = interp.phase_weights(method, scale).astype(dtype)
    compiled = polyphase_rows(rows, weights)  # the loops, whatever the size
    arrays = interp._polyphase_rows_arrays(rows, scale, halo, weights, np.dtype(dtype))
    assert compiled.dtype == arrays.dtype == dtype
    np.testing.assert_array_equal(compiled, arrays)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("smallest", [0, None])
def test_compiled_rounding_matches_finalize(
    method: str, dtype: type, scale: int, smallest: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The compiled loops round, clip and cast in the same pass; finalize() is the reference. With
    # smallest=0 every block is compiled; by default one this small takes the array path.
    from dasksr.kernels import interp
    from dasksr.kernels.values import finalize

    if smallest is not None:
        monkeypatch.setattr(interp, "_COMPILED_MIN_PIXELS", smallest)

    halo = interp._KERNELS[method][1]
    info = np.iinfo(dtype)
    image = smooth_image(29, 31, seed=1) * (info.max - info.min) / 150 + (info.max + info.min) / 2
    # Ringing past both ends of the range is clipped; bilinear x2 makes exact halves (weights
    # 1/4 and 3/4 on odd neighbours), which round half to even.
    image[:3] = info.max
    image[-3:] = info.min
    block = np.pad(np.clip(np.rint(image), info.min, info.max), halo, mode="symmetric").astype(
        dtype
    )
    weights = interp.phase_weights(method, scale).astype(np.float32)
    got = interp.upsample_separable(block, scale, method)
    fine = interp._polyphase_rows_arrays(block, scale, halo, weights, np.dtype(np.float32))
    np.testing.assert_array_equal(got, finalize(fine, np.dtype(dtype), None, None))


@pytest.mark.parametrize("work", [np.float32, np.float64])
@pytest.mark.parametrize("target", [np.int32, np.uint32, np.int64, np.uint64])
def test_cast_clips_to_the_integer_range_as_the_working_precision_holds_it(
    work: type, target: type
) -> None:
    # float32 holds 2**32 - 1 as 2**32 (and float64 2**63 - 1 as 2**63): clipping to those would
    # wrap in the cast. Out-of-range values land on the largest representable value inside.
    from dasksr.kernels.values import cast

    info = np.iinfo(target)
    values = np.array([1e30, -1e30, 12.4], dtype=work)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cast(values, target)
    assert out.dtype == target
    top, bottom = int(out[0]), int(out[1])
    assert info.max - top < 2 ** (64 - np.finfo(work).nmant) and top <= info.max
    assert bottom == info.min
    assert int(out[2]) == 12
