"""Registration and radiometric normalisation of a stack of frames (pure NumPy, eager, on a window).

Frame ``k`` is displaced by ``d_k = (dy, dx)`` LR pixels against the reference: its sample ``i``
lies at reference coordinate ``i + d_k`` (the sign of
``skimage.registration.phase_cross_correlation(reference, frame_k)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dasksr.kernels.resample import Mapper, cubic_shift, nan_box

__all__ = [
    "AGREE",
    "MIN_AGREEMENT",
    "RegisteredFrame",
    "agreement",
    "phase_shift",
    "refine_shift",
    "register_frames",
    "robust_linear_fit",
]

#: Residuals are smoothed over this many LR samples (odd) before the noise scale is taken.
_SMOOTH = 3
#: Width (LR pixels) of the coarse view on which frames are compared before registration: wide
#: enough that a shift of a few pixels changes it little.
_COARSE = 9
#: Local correlation (over the comparison's width) above which a pixel's texture agrees.
TEXTURE = 0.5
#: A pixel agrees with the reference within this many robust standard deviations.
AGREE = 4.0
#: Frames that agree with the reference on less than this share of their valid pixels are not
#: registered.
MIN_AGREEMENT = 0.05

# --------------------------------------------------------------------------------------------------
# Registration and radiometric normalisation (eager, on a window of each frame).


def robust_linear_fit(
    x: np.ndarray, y: np.ndarray, *, iterations: int = 10, c: float = 4.685
) -> tuple[float, float]:
    """``(gain, offset)`` minimising Tukey's biweight of ``y - (gain * x + offset)``.

    Iteratively reweighted least squares from the slope 1 and the median offset, the residual
    scale being 1.4826 x the median absolute residual: samples off by more than ``c`` scales
    (clouds, changes) get no weight.

    Examples
    --------
    >>> x = np.arange(100.0)
    >>> y = 2 * x + 1
    >>> y[::10] += 500  # outliers
    >>> [round(v, 6) for v in robust_linear_fit(x, y)]
    [2.0, 1.0]
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2 or np.ptp(x) == 0:
        return 1.0, float(np.median(y - x)) if x.size else 0.0
    # Start from the identity slope and the median offset, not from least squares: a cloud over a
    # fifth of the pixels would pull a least-squares start too far for the reweighting to recover.
    gain, offset = 1.0, float(np.median(y - x))
    residual = y - x - offset
    u = residual / (c * 1.4826 * (np.median(np.abs(residual)) + 1e-12))
    weights = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
    for _ in range(iterations):
        sw = weights.sum()
        if sw <= 0:
            break
        mx, my = (weights * x).sum() / sw, (weights * y).sum() / sw
        var = (weights * (x - mx) ** 2).sum()
        if var <= 0:
            break
        gain = float((weights * (x - mx) * (y - my)).sum() / var)
        offset = float(my - gain * mx)
        residual = y - (gain * x + offset)
        scale = 1.4826 * np.median(np.abs(residual))
        if scale <= 1e-12 * (np.abs(y).max() + 1):
            break
        u = residual / (c * scale)
        weights = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
    return gain, offset


def phase_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    reference_valid: np.ndarray | None = None,
    moving_valid: np.ndarray | None = None,
    upsample: int = 100,
) -> np.ndarray:
    """``(dy, dx)`` of ``moving`` against ``reference`` by upsampled phase correlation.

    With masks, the masked normalised cross-correlation of scikit-image finds the integer shift
    (it has no subpixel step); the invalid pixels are then filled with the mean of the valid ones
    and the upsampled phase correlation refines it to ``1 / upsample`` pixel around that peak.
    """
    from skimage.registration import phase_cross_correlation

    ref = np.asarray(reference, dtype=np.float64)
    mov = np.asarray(moving, dtype=np.float64)
    masked = not (
        (reference_valid is None or reference_valid.all())
        and (moving_valid is None or moving_valid.all())
    )
    if masked:
        rv = np.ones(ref.shape, bool) if reference_valid is None else reference_valid
        mv = np.ones(mov.shape, bool) if moving_valid is None else moving_valid
        coarse = phase_cross_correlation(ref, mov, reference_mask=rv, moving_mask=mv)
        coarse = np.asarray(coarse[0] if isinstance(coarse, tuple) else coarse, dtype=np.float64)
        # Masked pixels take the valid mean, and the valid ones fade into it over a few pixels:
        # a hard edge around every masked pixel would outweigh the texture in the correlation.
        ref, mov = _faded(ref, rv), _faded(mov, mv)
        # Undo the integer part first, so the upsampled search starts from the right peak.
        iy, ix = (round(float(v)) for v in coarse)
        mov = np.roll(mov, (iy, ix), axis=(0, 1))
        fine, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample)
        return np.asarray(fine, dtype=np.float64) + np.array([iy, ix], dtype=np.float64)
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample)
    return np.asarray(shift, dtype=np.float64)


def _faded(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    mean = values[valid].mean()
    weight = np.where(valid, gaussian_filter(valid.astype(np.float64), 2.0), 0.0)
    return mean + (np.where(valid, values, mean) - mean) * weight


def refine_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    shift: np.ndarray,
    *,
    reference_valid: np.ndarray | None = None,
    moving_valid: np.ndarray | None = None,
    iterations: int = 20,
    tolerance: float = 1e-4,
) -> tuple[np.ndarray, float, float, int]:
    """Refine ``shift`` by Gauss-Newton on ``moving ~ gain * reference(x + shift) + offset``.

    The reference is resampled with Keys' cubic at the current shift; its gradient linearises the
    shift update, solved jointly with a gain and an offset by Tukey-weighted least squares over the
    pixels valid in both frames (masked pixels and outliers such as unflagged clouds do not count).

    Returns
    -------
    shift, gain, offset, valid
        The refined ``(dy, dx)``, the fitted radiometric model and the number of pixels used.
    """
    ref = np.asarray(reference, dtype=np.float64).copy()
    mov = np.asarray(moving, dtype=np.float64)
    if reference_valid is not None:
        ref[~reference_valid] = np.nan
    mvalid = np.isfinite(mov) if moving_valid is None else moving_valid & np.isfinite(mov)
    d = np.asarray(shift, dtype=np.float64).copy()
    gain, offset = 1.0, 0.0
    margin = math.ceil(float(np.abs(d).max())) + 3
    inner = np.zeros(ref.shape, bool)
    inner[margin:-margin, margin:-margin] = True
    robust = None
    used = 0
    for _ in range(iterations):
        warped = cubic_shift(ref, d[0], d[1])
        gy, gx = np.gradient(warped)
        ok = inner & mvalid & np.isfinite(warped) & np.isfinite(gy) & np.isfinite(gx)
        used = int(ok.sum())
        if used < 16:
            break
        r, y_, x_, m = warped[ok], gy[ok], gx[ok], mov[ok]
        # m ~ gain * (r + gy * ey + gx * ex) + offset: unknowns gain, gain*ey, gain*ex, offset.
        a = np.stack([r, y_, x_, np.ones_like(r)], axis=1)
        w = np.ones_like(r) if robust is None else robust[ok]
        sw = np.sqrt(w)
        solution, *_ = np.linalg.lstsq(a * sw[:, None], m * sw, rcond=None)
        gain, offset = float(solution[0]), float(solution[3])
        if gain == 0 or not np.isfinite(gain):
            break
        step = np.array([solution[1], solution[2]]) / gain
        d = d + step
        residual = np.full(ref.shape, np.nan)
        residual[ok] = m - a @ solution
        scale = 1.4826 * np.nanmedian(np.abs(residual[ok])) + 1e-12
        u = residual / (4.685 * scale)
        robust = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.abs(step).max() < tolerance:
            break
    return d, gain, offset, used


@dataclass(frozen=True)
class RegisteredFrame:
    """What registration found for one frame: shifts in LR pixels, radiometry, quality."""

    shift: tuple[float, float]
    phase_shift: tuple[float, float]
    gain: tuple[float, ...]
    offset: tuple[float, ...]
    noise: tuple[float, ...]
    correlation: float
    valid_fraction: float
    #: The share of the frame's valid pixels that agree with the reference (`agreement`).
    agreement: float = 1.0


def agreement(
    reference: np.ndarray,
    moving: np.ndarray,
    shift: tuple[float, float] | np.ndarray,
    *,
    reference_valid: np.ndarray | None = None,
    moving_valid: np.ndarray | None = None,
    width: int = _SMOOTH,
    search: int = 0,
    scale: float | None = None,
) -> np.ndarray:
    """The pixels of ``moving`` that agree with ``reference`` seen at ``shift``: a boolean mask.

    Both are cleared of lone outliers (a 3 x 3 median) and averaged over ``width x width``
    pixels (clouds, haze, floods and harvests are
    larger than that; noise, aliasing and a residual misregistration are not), the frame mapped
    onto the reference by a robust linear fit (Tukey, :func:`robust_linear_fit`) on the pixels
    whose local texture agrees (local correlation over the same width at least `TEXTURE`), and
    a pixel
    agrees when its residual is within `AGREE` robust standard deviations (1.4826 x the median
    absolute residual) of zero. The disagreeing pixels are then grown by ``width // 2 + 1``
    pixels, so that the faint fringe of a cloud goes with it. Invalid pixels never agree. With
    ``search`` > 0 a pixel agrees when it does at any whole-pixel offset up to ``search`` from
    ``shift``: before registration, a shift is not a change. ``scale`` replaces the robust
    standard deviation (to compare two registrations of one frame on one scale).
    """
    from scipy.ndimage import binary_dilation

    ref = np.asarray(reference, dtype=np.float64)
    mov = np.asarray(moving, dtype=np.float64)
    if reference_valid is not None:
        ref = np.where(reference_valid, ref, np.nan)
    if moving_valid is not None:
        mov = np.where(moving_valid, mov, np.nan)
    anchor = cubic_shift(ref, float(shift[0]), float(shift[1]))
    ok = np.isfinite(anchor) & np.isfinite(mov)
    a, m = _despeckled(anchor, ok), _despeckled(mov, ok)
    low_a, low_m = nan_box(a, width), nan_box(m, width)
    both = ok & np.isfinite(low_a) & np.isfinite(low_m)
    if both.sum() < 16:
        return np.zeros(ref.shape, bool)
    # The fit's pixels: where the local texture of both agrees (a local correlation, blind to
    # gain and offset), so that a cloud over more than half of the view cannot win the fit.
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = nan_box(a * m, width) - low_a * low_m
        var = (nan_box(a * a, width) - low_a**2) * (nan_box(m * m, width) - low_m**2)
        textured = both & (cov >= TEXTURE * np.sqrt(np.maximum(var, 0)))
    fit = textured if textured.sum() >= 16 else both
    gain, offset = robust_linear_fit(low_m[fit], low_a[fit])
    residual = np.where(both, low_a - (gain * low_m + offset), 0.0)
    spread = np.subtract(*np.percentile(low_a[both], [99, 1]))
    if scale is None:
        scale = agreement_scale(residual[fit], spread)
    for dy in range(-search, search + 1):  # the best of the nearby positions: misregistration
        for dx in range(-search, search + 1):  # is not a disagreement
            if dy or dx:
                moved = cubic_shift(ref, float(shift[0]) + dy, float(shift[1]) + dx)
                low = nan_box(_despeckled(moved, np.isfinite(moved)), width)
                other = np.abs(np.where(np.isfinite(low), low - (gain * low_m + offset), np.inf))
                residual = np.where(both, np.minimum(np.abs(residual), other), 0.0)
    disagree = both & (np.abs(residual) > AGREE * scale)
    if disagree.any():
        disagree = binary_dilation(disagree, iterations=width // 2 + 1)
    return both & ~disagree


def agreement_scale(residual: np.ndarray, spread: float) -> float:
    """The robust standard deviation of ``residual``, at least 1e-3 of the scene's ``spread``."""
    return max(1.4826 * float(np.median(np.abs(residual))), 1e-3 * float(spread), 1e-12)


def _despeckled(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``values`` through a 3 x 3 median (NaN where not ``ok``): a lone saturated or dead pixel
    would otherwise spread over the whole averaging box and hide the clouds."""
    from scipy.ndimage import median_filter

    if not ok.any():
        return np.full(values.shape, np.nan)
    filled = np.where(ok, values, np.median(values[ok]))
    return np.where(ok, median_filter(filled, size=3, mode="nearest"), np.nan)


def _scale_at(
    ref: np.ndarray, mov: np.ndarray, shift: np.ndarray, ref_valid: np.ndarray, valid: np.ndarray
) -> float:
    """The robust scale of the 3 x 3 residual of ``mov`` against ``ref`` seen at ``shift``."""
    anchor = cubic_shift(np.where(ref_valid, ref, np.nan), float(shift[0]), float(shift[1]))
    ok = valid & np.isfinite(anchor)
    if ok.sum() < 16:
        return 1e-12
    a, m = (
        nan_box(np.where(ok, anchor, np.nan), _SMOOTH),
        nan_box(np.where(ok, mov, np.nan), _SMOOTH),
    )
    both = ok & np.isfinite(a) & np.isfinite(m)
    gain, offset = robust_linear_fit(m[both], a[both])
    spread = np.subtract(*np.percentile(a[both], [99, 1]))
    return agreement_scale(a[both] - (gain * m[both] + offset), spread)


def register_frames(
    window: np.ndarray,
    invalid: np.ndarray | None = None,
    *,
    reference: int = 0,
    refine: bool = True,
    upsample: int = 100,
    mapper: Mapper = map,
) -> list[RegisteredFrame]:
    """Register every frame of ``window`` ``(time, band, y, x)`` against frame ``reference``.

    Shifts are found on the band mean; gains, offsets and the residual noise scale of the robust
    weights per band. ``invalid`` marks pixels to ignore (same shape). Only the pixels where a frame
    agrees with the reference count (:func:`agreement`). The frame is registered from two starts:
    all its valid pixels, and the pixels that agree before registration, on a coarse view near zero shift (shifts are small, clouds
    and changed fields are not); the phase correlation and refinement of the start under which
    more pixels agree at the refined shift win, and the shift is refined once more on them; gains, offsets, noise and correlation come from those pixels only.
    A frame that agrees on fewer than `MIN_AGREEMENT` of its valid pixels, or whose correlation
    with the reference (after registration and normalisation, over the agreeing pixels) is NaN,
    is not registered (NaN shift); the caller decides what correlation is too low. ``mapper``
    maps the per-frame work (for example a thread pool's ``map``); the result does not depend on
    it.
    """
    stack = np.asarray(window, dtype=np.float64)
    bad = ~np.isfinite(stack) if invalid is None else (invalid | ~np.isfinite(stack))
    valid = ~bad
    plane_valid = np.asarray(valid.all(axis=1))  # (time, y, x); asarray: an array, not a scalar
    mean = np.where(valid, stack, 0).sum(axis=1) / max(stack.shape[1], 1)
    ref, ref_valid = mean[reference], plane_valid[reference]
    bands = stack.shape[1]

    def one(k: int) -> RegisteredFrame:
        fraction = float(plane_valid[k].mean())
        if k == reference:
            return RegisteredFrame(
                (0.0, 0.0),
                (0.0, 0.0),
                (1.0,) * bands,
                (0.0,) * bands,
                (0.0,) * bands,
                1.0,
                fraction,
            )
        both = ref_valid.any() and plane_valid[k].any()
        if not both or fraction == 0:
            return _unregistered(bands, fraction, 0.0)
        masks = {"reference_valid": ref_valid, "moving_valid": plane_valid[k]}
        coarse = agreement(ref, mean[k], (0.0, 0.0), width=_COARSE, search=1, **masks)
        # Two starts: every valid pixel, and the pixels that agree before registration; the
        # registration under which more pixels agree, on the smaller of their scales, wins.
        found = []
        for start in (plane_valid[k], coarse):
            if start.sum() < 16:
                continue
            pc = phase_shift(
                ref,
                mean[k],
                reference_valid=ref_valid & start,
                moving_valid=plane_valid[k] & start,
                upsample=upsample,
            )
            d = pc
            if refine:
                d, *_ = refine_shift(
                    ref, mean[k], pc, reference_valid=ref_valid, moving_valid=start
                )
            found.append((pc, d, _scale_at(ref, mean[k], d, ref_valid, plane_valid[k])))
        scale = min((f[2] for f in found), default=None)
        tries = []
        for i, (pc, d, _) in enumerate(found):
            agree = agreement(ref, mean[k], d, scale=scale, **masks)
            tries.append((int(agree.sum()), -i, pc, d, agree))
        if not tries:
            return _unregistered(bands, fraction, 0.0)
        count, first, pc, d, agree = max(tries, key=lambda t: t[:2])
        agreed = float(count / max(plane_valid[k].sum(), 1))
        if agreed < MIN_AGREEMENT:
            return _unregistered(bands, fraction, agreed)
        if refine and first < 0:  # the second start: refined again on the pixels that agree
            d, *_ = refine_shift(ref, mean[k], d, reference_valid=ref_valid, moving_valid=agree)
        gains, offsets, noises, corrs = [], [], [], []
        for b in range(bands):
            ref_b = np.where(valid[reference, b], stack[reference, b], np.nan)
            anchor = cubic_shift(ref_b, d[0], d[1])
            ok = valid[k, b] & np.isfinite(anchor) & agree
            if ok.sum() < 16:
                return _unregistered(bands, fraction, agreed)
            # Normalisation maps the frame onto the reference: reference ~ gain * frame + offset.
            # Both are averaged over 5 x 5 pixels first: the resampled reference is smoother than
            # the frame, and noise in the frame would bias the slope towards 0 (regression
            # dilution); neither survives the averaging.
            frame_b = np.where(ok, stack[k, b], np.nan)
            low_x, low_y = nan_box(frame_b, 5), nan_box(np.where(ok, anchor, np.nan), 5)
            both_low = ok & np.isfinite(low_x) & np.isfinite(low_y)
            gain, offset = robust_linear_fit(low_x[both_low], low_y[both_low])
            residual = np.where(ok, gain * stack[k, b] + offset - anchor, np.nan)
            smooth = nan_box(residual, _SMOOTH)
            # A floor keeps noise-free frames from rejecting every sample that is not exact.
            spread = np.subtract(*np.nanpercentile(anchor[ok], [99, 1]))
            noise = max(1.4826 * float(np.nanmedian(np.abs(smooth))), 1e-3 * spread, 1e-12)
            gains.append(gain)
            offsets.append(offset)
            noises.append(noise)
            corrs.append(float(np.corrcoef(stack[k, b][ok], anchor[ok])[0, 1]))
        return RegisteredFrame(
            (float(d[0]), float(d[1])),
            (float(pc[0]), float(pc[1])),
            tuple(gains),
            tuple(offsets),
            tuple(noises),
            float(np.nanmin(corrs)),
            fraction,
            agreed,
        )

    return list(mapper(one, range(stack.shape[0])))


def _unregistered(bands: int, fraction: float, agreed: float) -> RegisteredFrame:
    nan = (float("nan"),) * bands
    return RegisteredFrame(
        (float("nan"),) * 2, (float("nan"),) * 2, nan, nan, nan, float("nan"), fraction, agreed
    )
