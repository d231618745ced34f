"""Pure NumPy kernels of multi-frame super-resolution: registration, fusion, detail recovery.

Nothing here knows about Dask, xarray or files; :mod:`dasksr.multiframe` validates the stack, runs the
registration eagerly on a small window and hands the results to :func:`fuse_block` as parameters.

Geometry (design.md section 3, pixel-is-area). Frame ``k`` is displaced by ``d_k = (dy, dx)``
low-resolution (LR) pixels against the reference: its sample ``i`` lies at reference coordinate
``i + d_k``, so ``frame_k(x) ~ reference(x + d_k)`` (``skimage.registration.phase_cross_correlation``
returns ``d_k`` for ``(reference, frame_k)``). Fine pixel ``j`` has its centre at reference coordinate
``(j + 0.5) / scale - 0.5``.

Steps of :func:`fuse_block` on one block padded by :func:`fuse_halo` LR pixels:

1. radiometric normalisation ``g_k * frame_k + o_k`` with the eagerly fitted gain and offset;
2. per-sample robust weights: each sample is compared with an anchor, the reference interpolated
   (Keys cubic) at the sample's position where the reference is valid, else the per-pixel median of
   the registered frames; the residual, smoothed over 3 x 3 samples (clouds are smooth, aliasing
   and noise are not), gets the weight ``exp(-(r / (kappa * noise_k)) ** 2 / 2)``. The reference
   frame's valid samples always weigh 1, so an unflagged cloud in another frame cannot print
   through where the reference is clear;
3. fusion by normalised convolution: every weighted sample is spread onto the fine grid with a
   Gaussian of ``kernel_sigma`` LR pixels centred on its registered position, divided by the spread
   weights;
4. detail recovery by iterative back-projection (Irani and Peleg 1991): each iteration simulates every
   frame from the estimate (Gaussian PSF of ``psf_sigma`` LR pixels, sampled at the frame's positions,
   as :func:`dasksr.degrade_sensor` does), and adds 1.5 times (over-relaxation) the normalised
   convolution of the weighted residuals. The number of iterations is fixed, so the halo is known
   in advance. The fusion kernel narrows as frames are added (:func:`default_kernel_sigma`).

Every step is a separable sum over a fixed set of taps (no FFT, no data-dependent support), computed
on the whole padded block with the edge pixel repeated past the block; a pixel further than
:func:`fuse_halo` from the block edge never sees that padding, and the chunked result equals the
whole-image result.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dasksr.kernels.degrade import sensor_psf
from dasksr.kernels.interp import keys_cubic

__all__ = [
    "FuseParams",
    "choose_iterations",
    "RegisteredFrame",
    "cubic_shift",
    "default_kernel_sigma",
    "fuse_block",
    "fuse_halo",
    "phase_shift",
    "refine_shift",
    "register_frames",
    "robust_linear_fit",
    "shifted_upsample",
]

#: A Gaussian fusion kernel is truncated at this many standard deviations.
_TRUNCATE = 3.0
#: Residuals are smoothed over this many LR samples (odd) before the robust weight is taken.
_SMOOTH = 3
#: Robust weights never fall below this, so that a fine pixel with valid samples is never 0 / 0.
_MIN_WEIGHT = 1e-6

#: ``map``-like: applies a function to each item and yields the results in order. The per-frame
#: loops take one (the builtin ``map``, or a thread pool's ``map`` for the eager window); results
#: are always combined in frame order, so they do not depend on it.
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


# --------------------------------------------------------------------------------------------------
# Resampling helpers: separable sums over fixed taps, the edge pixel repeated past the array.


def _pad_axis(values: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    if before <= 0 and after <= 0:
        return values
    widths = [(0, 0)] * values.ndim
    widths[axis] = (max(before, 0), max(after, 0))
    return np.pad(values, widths, mode="edge")


def _taps_sum(values: np.ndarray, weights: np.ndarray, first: int, axis: int) -> np.ndarray:
    """``out[i] = sum_t weights[t] * values[i + first + t]`` along ``axis`` (edge repeated)."""
    n = values.shape[axis]
    last = first + weights.size - 1
    padded = _pad_axis(values, -first, last, axis)
    start = max(-first, 0) + first
    moved = np.moveaxis(padded, axis, -1)
    out = np.zeros((*moved.shape[:-1], n), dtype=values.dtype)
    for t, w in enumerate(weights):
        if w != 0:
            out += values.dtype.type(w) * moved[..., start + t : start + t + n]
    return np.moveaxis(out, -1, axis)


def _cubic_weights(shift: float) -> tuple[np.ndarray, int]:
    base = math.floor(shift)
    frac = shift - base
    taps = np.arange(-1, 3)
    return keys_cubic(frac - taps), base - 1


def cubic_shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``image`` resampled at ``(i + dy, j + dx)`` with Keys' cubic (a = -0.5), edge repeated.

    NaN spreads to every output pixel whose 4 x 4 support touches it.

    Examples
    --------
    >>> ramp = np.tile(np.arange(6.0), (3, 1))
    >>> cubic_shift(ramp, 0.0, 0.5)[1, 1:4]
    array([1.5, 2.5, 3.5])
    """
    out = np.asarray(image)
    for shift, axis in ((dy, -2), (dx, -1)):
        weights, first = _cubic_weights(float(shift))
        out = _taps_sum(out, weights.astype(out.dtype), first, axis)
    return out


def _gaussian_phases(
    scale: int, shift: float, sigma: float, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(scale, taps)`` of fine phase ``p`` over samples ``m + t``, ``t`` in ``taps``.

    The sample ``m + t`` of a frame displaced by ``shift`` lies at ``m + t + shift``; fine pixel
    ``scale * m + p`` at ``m + (p + 0.5) / scale - 0.5``. Each phase's weights sum to one, so a
    fully valid frame contributes exactly 1 to the spread weights.
    """
    taps = np.arange(-radius, radius + 1)
    centres = (np.arange(scale) + 0.5) / scale - 0.5
    distance = centres[:, None] - taps[None, :] - shift
    if sigma == 0:  # nearest sample (ties to the lower one)
        nearest = np.floor(distance + 0.5) == 0
        weights = nearest & (np.abs(distance) <= 0.5)
        weights = weights.astype(np.float64)
    else:
        weights = np.exp(-0.5 * (distance / sigma) ** 2)
        weights[np.abs(distance) > _TRUNCATE * sigma] = 0.0
    # A phase out of reach of every sample (a kernel narrower than the gaps) gets no weight.
    sums = weights.sum(axis=1, keepdims=True)
    return weights / np.where(sums > 0, sums, 1.0), taps


def _kernel_radius(sigma: float, shift_max: float) -> int:
    """LR taps either side that a shifted Gaussian (or nearest, ``sigma=0``) support can reach."""
    return math.ceil(max(_TRUNCATE * sigma, 0.5) + shift_max) + 1


def shifted_upsample(
    values: np.ndarray, scale: int, shift: tuple[float, float], sigma: float, radius: int
) -> np.ndarray:
    """Spread the samples of a frame displaced by ``shift`` onto the fine grid (last two axes).

    Fine pixel ``(J, I)`` gets ``sum_{m} K(q - m - shift) values[m]`` with ``K`` a Gaussian of
    ``sigma`` LR pixels (separable; weights of each phase normalised to one) and ``q`` its centre in
    LR units; ``sigma=0`` takes the nearest sample instead. ``radius`` is the tap reach (see
    :func:`fuse_halo`).
    """
    out = values
    for d, axis in zip(shift, (-2, -1), strict=True):
        weights, taps = _gaussian_phases(scale, float(d), sigma, radius)
        out = _polyphase(out, weights.astype(values.dtype), int(taps[0]), scale, axis)
    return out


def _polyphase(
    values: np.ndarray, weights: np.ndarray, first: int, scale: int, axis: int
) -> np.ndarray:
    n = values.shape[axis]
    ntaps = weights.shape[1]
    padded = np.moveaxis(_pad_axis(values, -first, first + ntaps - 1, axis), axis, -1)
    out = np.zeros((*padded.shape[:-1], n, scale), dtype=values.dtype)
    for t in range(ntaps):
        column = weights[:, t]
        if not column.any():
            continue
        window = padded[..., t : t + n, None]
        out += window * column
    out = out.reshape(*out.shape[:-2], n * scale)
    return np.moveaxis(out, -1, axis)


def _simulate(
    fine: np.ndarray, scale: int, shift: tuple[float, float], psf_sigma: float
) -> np.ndarray:
    """The frame displaced by ``shift`` as the sensor sees ``fine``: Gaussian PSF, decimation.

    The PSF of :func:`dasksr.kernels.degrade.sensor_psf` (the model of ``degrade_sensor``):
    LR pixel ``i`` is ``sum_t w[t] * fine[i * scale + offset + t]`` on each axis.
    """
    out = fine
    for d, axis in zip(shift, (-2, -1), strict=True):
        psf = sensor_psf(scale, psf_sigma, float(d))
        n = out.shape[axis] // scale
        weights = psf.weights.astype(out.dtype)
        last = psf.offset + weights.size - 1 + (n - 1) * scale
        before, after = max(-psf.offset, 0), max(last - (out.shape[axis] - 1), 0)
        padded = np.moveaxis(_pad_axis(out, before, after, axis), axis, -1)
        acc = np.zeros((*padded.shape[:-1], n), dtype=out.dtype)
        for t, w in enumerate(weights):
            start = before + psf.offset + t
            acc += w * padded[..., start : start + (n - 1) * scale + 1 : scale]
        out = np.moveaxis(acc, -1, axis)
    return out


def _psf_radius(scale: int, psf_sigma: float, shift_max: float) -> int:
    """LR pixels either side of a simulated sample that its PSF reaches on the fine grid."""
    reach = _TRUNCATE_PSF * psf_sigma + 0.5 / scale + shift_max
    return math.ceil(reach) + 1


# sensor_psf keeps taps within 4 standard deviations.
_TRUNCATE_PSF = 4.0


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
        ref = np.where(rv, ref, ref[rv].mean())
        mov = np.where(mv, mov, mov[mv].mean())
        # Undo the integer part first, so the upsampled search starts from the right peak.
        iy, ix = (round(float(v)) for v in coarse)
        mov = np.roll(mov, (iy, ix), axis=(0, 1))
        fine, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample)
        return np.asarray(fine, dtype=np.float64) + np.array([iy, ix], dtype=np.float64)
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample)
    return np.asarray(shift, dtype=np.float64)


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
    weights per band. ``invalid`` marks pixels to ignore (same shape). A frame whose correlation with
    the reference (after registration and normalisation, over the valid overlap) is NaN has no usable
    overlap; the caller decides what is too low. ``mapper`` maps the per-frame work (for example a
    thread pool's ``map``); the result does not depend on it.
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
            return _unregistered(bands, fraction)
        pc = phase_shift(
            ref,
            mean[k],
            reference_valid=ref_valid,
            moving_valid=plane_valid[k],
            upsample=upsample,
        )
        d = pc
        if refine:
            d, *_ = refine_shift(
                ref, mean[k], pc, reference_valid=ref_valid, moving_valid=plane_valid[k]
            )
        gains, offsets, noises, corrs = [], [], [], []
        for b in range(bands):
            ref_b = np.where(valid[reference, b], stack[reference, b], np.nan)
            anchor = cubic_shift(ref_b, d[0], d[1])
            ok = valid[k, b] & np.isfinite(anchor)
            if ok.sum() < 16:
                return _unregistered(bands, fraction)
            # Normalisation maps the frame onto the reference: reference ~ gain * frame + offset.
            # Both are averaged over 5 x 5 pixels first: the resampled reference is smoother than
            # the frame, and noise in the frame would bias the slope towards 0 (regression
            # dilution); neither survives the averaging.
            frame_b = np.where(ok, stack[k, b], np.nan)
            low_x, low_y = _nan_box(frame_b, 5), _nan_box(np.where(ok, anchor, np.nan), 5)
            both_low = ok & np.isfinite(low_x) & np.isfinite(low_y)
            gain, offset = robust_linear_fit(low_x[both_low], low_y[both_low])
            residual = np.where(ok, gain * stack[k, b] + offset - anchor, np.nan)
            smooth = _nan_box(residual, _SMOOTH)
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
        )

    return list(mapper(one, range(stack.shape[0])))


def _unregistered(bands: int, fraction: float) -> RegisteredFrame:
    nan = (float("nan"),) * bands
    return RegisteredFrame(
        (float("nan"),) * 2, (float("nan"),) * 2, nan, nan, nan, float("nan"), fraction
    )


def _nan_box(values: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size x size`` box of the finite values (NaN where none), edge repeated."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    box = np.full(size, 1.0, dtype=values.dtype)
    first = -(size // 2)
    total = _taps_sum(_taps_sum(filled, box, first, -2), box, first, -1)
    count = _taps_sum(_taps_sum(finite.astype(values.dtype), box, first, -2), box, first, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


# --------------------------------------------------------------------------------------------------
# Fusion and detail recovery on one padded block.


@dataclass(frozen=True)
class FuseParams:
    """Everything :func:`fuse_block` needs besides the pixels, found once per scene.

    ``shifts`` is ``(frames, 2)`` in LR pixels against the reference; ``gains``, ``offsets`` and
    ``noise`` are ``(frames, bands)``; ``reference`` indexes the frames.
    """

    scale: int
    shifts: tuple[tuple[float, float], ...]
    gains: tuple[tuple[float, ...], ...]
    offsets: tuple[tuple[float, ...], ...]
    noise: tuple[tuple[float, ...], ...]
    reference: int = 0
    kernel_sigma: float = 0.5
    psf_sigma: float = 0.5
    iterations: int = 8
    step: float = 1.5
    kappa: float = 3.0

    @property
    def shift_max(self) -> float:
        return float(np.abs(np.asarray(self.shifts, dtype=np.float64)).max(initial=0.0))


def default_kernel_sigma(frames: int) -> float:
    """Width (LR pixels) of the fusion kernel for ``frames`` frames: narrower as samples get denser.

    ``0.5 * (2 / frames) ** (1 / 6)`` (0.5 up to 2 frames, 0.45 for 4, 0.40 for 8, 0.35 for 16),
    fitted on stacks simulated from the shared Sentinel-2 and aerial scenes at x2 and 40 dB
    (``benchmarks/fuse.py``): a kernel too narrow for the sample density leaves gaps that the
    back-projection amplifies into noise, one too wide blurs what the extra frames bring.
    """
    return 0.5 * min(1.0, (2 / max(frames, 1)) ** (1 / 6))


def fuse_halo(params: FuseParams) -> int:
    """The halo of :func:`fuse_block` in LR pixels: how far an output pixel's inputs reach.

    The robust weights look ``2 * (ceil(D) + 2) + 1`` samples away (anchor resampling twice,
    3 x 3 smoothing), the fusion ``ceil(3 * kernel_sigma + D) + 1`` and each back-projection
    iteration the PSF's reach plus the fusion's, ``D`` being the largest shift.
    """
    d = params.shift_max
    robust = 2 * (math.ceil(d) + 2) + _SMOOTH // 2
    spread = _kernel_radius(params.kernel_sigma, d)
    per_iteration = _psf_radius(params.scale, params.psf_sigma, d) + spread
    return robust + spread + params.iterations * per_iteration


def fuse_block(
    frames: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    halo: int,
    nodata: float | None = None,
    work: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse a padded block ``(time, band, y, x)`` into ``(band, y * s, x * s)`` of its interior.

    ``halo`` LR pixels are dropped on each side after the computation (at least
    :func:`fuse_halo`). ``invalid`` (same shape, or None) marks masked samples; NaN and ``nodata``
    samples are invalid too. Returns the fused values in ``work`` precision and the mask of fine
    pixels that are nodata: those whose nearest sample is invalid in every frame.
    """
    steps = _fuse_steps(frames, invalid, params, nodata=nodata, work=work)
    estimate, nodata_fine = deque(steps, maxlen=1)[0]  # the last step, the others not kept
    trim = halo * params.scale
    cut = (..., slice(trim, estimate.shape[-2] - trim), slice(trim, estimate.shape[-1] - trim))
    return estimate[cut], nodata_fine[cut]


def _normalised(
    frames: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    nodata: float | None,
    work: np.dtype[Any],
) -> tuple[np.ndarray, np.ndarray]:
    """``gain * frame + offset`` (NaN where invalid) and the valid samples."""
    y = np.asarray(frames).astype(work, copy=True)
    bad = ~np.isfinite(y)
    if nodata is not None and not np.isnan(nodata):
        bad |= np.asarray(frames) == np.asarray(frames).dtype.type(nodata)
    if invalid is not None:
        bad |= np.asarray(invalid, dtype=bool)
    gains = np.asarray(params.gains, dtype=work)[:, :, None, None]
    offsets = np.asarray(params.offsets, dtype=work)[:, :, None, None]
    y = gains * y + offsets
    y[bad] = np.nan
    return y, ~bad


def _fuse_steps(
    frames: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    nodata: float | None,
    work: Any,
    mapper: Mapper = map,
) -> Any:
    """Yield ``(estimate, nodata)`` on the whole block after 0, 1, ... ``iterations`` iterations."""
    scale = params.scale
    work = np.dtype(work)
    y, valid = _normalised(frames, invalid, params, nodata, work)
    shifts = [(float(dy), float(dx)) for dy, dx in params.shifts]
    weights = _robust_weights(y, valid, shifts, params, work, mapper)
    y = np.where(valid, y, 0).astype(work, copy=False)

    d = params.shift_max
    radius = _kernel_radius(params.kernel_sigma, d)
    near = _kernel_radius(0.0, d)
    sigma = params.kernel_sigma

    def spread(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wk, shift = weights[k], shifts[k]
        return (
            shifted_upsample(wk * y[k], scale, shift, sigma, radius),
            shifted_upsample(wk, scale, shift, sigma, radius),
            shifted_upsample(valid[k].astype(work), scale, shift, 0.0, near),
        )

    seen = None
    num = None
    den = None
    for n_k, d_k, s_k in mapper(spread, range(len(shifts))):  # summed in frame order
        num = n_k if num is None else num + n_k
        den = d_k if den is None else den + d_k
        seen = s_k if seen is None else seen + s_k
    assert num is not None and den is not None and seen is not None
    empty = den <= 0
    den = np.where(empty, 1, den)
    estimate = num / den
    nodata_fine = (seen <= 0) | empty
    yield estimate, nodata_fine
    step = work.type(params.step)

    def back_project(k: int) -> np.ndarray:
        shift = shifts[k]
        residual = weights[k] * (y[k] - _simulate(estimate, scale, shift, params.psf_sigma))
        return shifted_upsample(residual, scale, shift, sigma, radius)

    for _ in range(params.iterations):
        update = None
        for spread_k in mapper(back_project, range(len(shifts))):
            update = spread_k if update is None else update + spread_k
        assert update is not None
        estimate = estimate + step * update / den
        yield estimate, nodata_fine


def choose_iterations(
    window: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    held_out: int,
    max_iterations: int = 16,
    nodata: float | None = None,
    mapper: Mapper = map,
) -> tuple[int, list[float]]:
    """The number of back-projection iterations that best predicts a frame left out of the fusion.

    Frame ``held_out`` of ``window`` ``(time, band, y, x)`` is left out; the others are fused with
    0 .. ``max_iterations`` iterations and each estimate simulates the left-out frame. More
    iterations recover more detail but amplify noise: the count with the smallest prediction error
    (the mean square over the best 95 % of the interior samples, so that clouds do not count) is
    the one noise allows on this scene (the fewest within 0.5 % of the smallest error). Returns it
    and the errors. ``mapper`` maps the per-frame work; the result does not depend on it.
    """
    keep = [k for k in range(window.shape[0]) if k != held_out]
    pick = lambda values: tuple(values[k] for k in keep)  # noqa: E731
    sub = FuseParams(
        scale=params.scale,
        shifts=pick(params.shifts),
        gains=pick(params.gains),
        offsets=pick(params.offsets),
        noise=pick(params.noise),
        reference=keep.index(params.reference),
        kernel_sigma=default_kernel_sigma(len(keep)),
        psf_sigma=params.psf_sigma,
        iterations=max_iterations,
        step=params.step,
        kappa=params.kappa,
    )
    work = np.dtype(np.float64)
    target, valid = _normalised(
        window[held_out : held_out + 1],
        None if invalid is None else invalid[held_out : held_out + 1],
        FuseParams(
            scale=params.scale,
            shifts=(params.shifts[held_out],),
            gains=(params.gains[held_out],),
            offsets=(params.offsets[held_out],),
            noise=(params.noise[held_out],),
        ),
        nodata,
        work,
    )
    margin = 2 * _kernel_radius(sub.kernel_sigma, params.shift_max) + 4
    inner = np.zeros(valid.shape[1:], bool)
    inner[..., margin:-margin, margin:-margin] = True
    use = valid[0] & inner
    if use.sum() < 16:  # a window too small for the margin: use all its valid samples
        use = valid[0]
    errors = []
    rest = window[keep]
    masks = None if invalid is None else invalid[keep]
    for estimate, _ in _fuse_steps(rest, masks, sub, nodata=nodata, work=work, mapper=mapper):
        simulated = _simulate(estimate, params.scale, params.shifts[held_out], params.psf_sigma)
        squares = np.sort(((target[0] - simulated)[use]) ** 2)
        errors.append(float(squares[: max(int(0.95 * squares.size), 1)].mean()))
    # The fewest iterations within 0.5 % of the best: a flat end costs halo and time for nothing.
    best = min(errors)
    return next(i for i, e in enumerate(errors) if e <= best * 1.005), errors


def _robust_weights(
    y: np.ndarray,
    valid: np.ndarray,
    shifts: list[tuple[float, float]],
    params: FuseParams,
    work: np.dtype[Any],
    mapper: Mapper = map,
) -> np.ndarray:
    """Per-sample weights: 0 where invalid, 1 on the reference, a Gaussian of the anchored residual
    elsewhere (see the module notes)."""
    ref = params.reference
    weights = valid.astype(work)
    if len(shifts) == 1:
        return weights
    noise = np.asarray(params.noise, dtype=work)
    # The fallback anchor where the reference is invalid (a NaN in it reaches every anchor).
    median = None if np.isfinite(y[ref]).all() else _registered_median(y, shifts)

    def robust(k: int) -> np.ndarray:
        dy, dx = shifts[k]
        anchor = cubic_shift(y[ref], dy, dx)
        if median is not None:
            anchor = np.where(np.isfinite(anchor), anchor, cubic_shift(median, dy, dx))
        smooth = _nan_box(y[k] - anchor, _SMOOTH)
        scale = params.kappa * noise[k][:, None, None]
        with np.errstate(all="ignore"):
            value = np.exp(-0.5 * (smooth / scale) ** 2)
        value = np.where(np.isfinite(value), value, 1.0)
        return np.maximum(value, _MIN_WEIGHT).astype(work)

    others = [k for k in range(len(shifts)) if k != ref]
    for k, factor in zip(others, mapper(robust, others), strict=True):
        weights[k] *= factor
    return weights


def _registered_median(y: np.ndarray, shifts: Any) -> np.ndarray:
    """The median of all frames moved onto the reference (NaN where none is valid)."""
    registered = np.stack([cubic_shift(y[k], -dy, -dx) for k, (dy, dx) in enumerate(shifts)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nanmedian(registered, axis=0)
