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
   and noise are not), gets the weight ``exp(-(r / (kappa * noise_k)) ** 2 / 2)``, the smallest
   over the bands (a cloud shows in every band). The reference frame's valid samples always weigh 1, so an unflagged cloud in another frame cannot print
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dasksr.kernels.degrade import sensor_psf
from dasksr.kernels.register import (
    RegisteredFrame,
    phase_shift,
    refine_shift,
    register_frames,
    robust_linear_fit,
)
from dasksr.kernels.resample import Mapper, cubic_shift, nan_box, pad_axis

__all__ = [
    "FuseParams",
    "PSF_SIGMAS",
    "Prior",
    "choose_iterations",
    "RegisteredFrame",
    "cubic_shift",
    "default_kernel_sigma",
    "estimate_psf",
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
#: The candidate PSF widths (LR pixels) of :func:`estimate_psf`.
PSF_SIGMAS = tuple(np.round(np.arange(0.2, 0.951, 0.05), 2))
#: Less support from the frames other than the reference than this (a share of one frame's) is
#: none: the fine pixel takes the single-image prior exactly.
_MIN_SUPPORT = 1e-3

#: The single-image super-resolution of the reference frame: its ``(band, y, x)`` block in the
#: working precision (NaN where invalid) in, ``(band, y * scale, x * scale)`` out (NaN where it
#: has no value). Its values within ``FuseParams.prior_halo`` LR pixels of the block's edge may be
#: wrong; the halo accounts for them.
Prior = Callable[[np.ndarray], np.ndarray]

# --------------------------------------------------------------------------------------------------
# Spreading samples onto the fine grid and simulating frames from it.


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
    padded = np.moveaxis(pad_axis(values, -first, first + ntaps - 1, axis), axis, -1)
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
        padded = np.moveaxis(pad_axis(out, before, after, axis), axis, -1)
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
    #: LR pixels either side that the single-image prior (`Prior`) reads; 0 without one.
    prior_halo: int = 0
    #: Whether the back-projection starts from the prior (else from the fusion; the prior is
    #: then only the result where no other frame is valid).
    prior_start: bool = True

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
    iteration the PSF's reach plus the fusion's, ``D`` being the largest shift. The prior (when
    ``prior_halo`` > 0) starts the iterations: its reach counts when it is the longer one.
    """
    d = params.shift_max
    robust = 2 * (math.ceil(d) + 2) + _SMOOTH // 2
    spread = _kernel_radius(params.kernel_sigma, d)
    per_iteration = _psf_radius(params.scale, params.psf_sigma, d) + spread
    start = max(robust + spread, params.prior_halo)
    return start + params.iterations * per_iteration


def fuse_block(
    frames: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    halo: int,
    nodata: float | None = None,
    work: Any = np.float32,
    prior: Prior | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse a padded block ``(time, band, y, x)`` into ``(band, y * s, x * s)`` of its interior.

    ``halo`` LR pixels are dropped on each side after the computation (at least
    :func:`fuse_halo`). ``invalid`` (same shape, or None) marks masked samples; NaN and ``nodata``
    samples are invalid too. With a ``prior`` (the single-image result of the reference) the
    back-projection starts from it, and each fine pixel is ``prior + w * (fused - prior)`` with
    ``w`` the support of the other frames' valid samples (their spread robust weights, capped at
    1): where no other frame is valid the result is the prior itself. Returns the fused values
    in ``work`` precision and the mask of fine pixels that are nodata: those whose nearest sample
    is invalid in every frame.
    """
    steps = _fuse_steps(frames, invalid, params, nodata=nodata, work=work, prior=prior)
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
    prior: Prior | None = None,
    blend: bool = True,
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
    support: Any = 0
    for k, (n_k, d_k, s_k) in enumerate(mapper(spread, range(len(shifts)))):  # in frame order
        num = n_k if num is None else num + n_k
        den = d_k if den is None else den + d_k
        seen = s_k if seen is None else seen + s_k
        if k != params.reference:
            support = support + d_k
    assert num is not None and den is not None and seen is not None
    empty = den <= 0
    den = np.where(empty, 1, den)
    estimate = num / den
    nodata_fine = (seen <= 0) | empty
    mix = _Blend.of(prior, y[params.reference], support if blend else 1, estimate.shape, work)
    estimate = mix.start(estimate) if params.prior_start else estimate
    yield mix(estimate), nodata_fine
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
        yield mix(estimate), nodata_fine


@dataclass(frozen=True)
class _Blend:
    """The prior and each fine pixel's share of the fused estimate (see :func:`fuse_block`)."""

    prior: np.ndarray | None
    share: np.ndarray | None

    @classmethod
    def of(
        cls, prior: Prior | None, reference: np.ndarray, support: Any, shape: Any, work: Any
    ) -> _Blend:
        if prior is None:
            return cls(None, None)
        values = np.asarray(prior(np.asarray(reference, dtype=work)), dtype=work)
        share = np.clip(np.broadcast_to(support, shape), 0, 1).astype(work)
        share[share < _MIN_SUPPORT] = 0
        share[~np.isfinite(values)] = 1  # no prior there: the fusion alone
        return cls(values, share)

    def start(self, fused: np.ndarray) -> np.ndarray:
        """Where the back-projection starts: the prior, the fusion where it has no value."""
        if self.prior is None:
            return fused
        return np.where(np.isfinite(self.prior), self.prior, fused)

    def __call__(self, estimate: np.ndarray) -> np.ndarray:
        if self.prior is None or self.share is None:
            return estimate
        prior = np.where(np.isfinite(self.prior), self.prior, 0)
        return prior + self.share * (estimate - prior)


def choose_iterations(
    window: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    held_out: int,
    max_iterations: int = 16,
    nodata: float | None = None,
    mapper: Mapper = map,
    prior: Prior | None = None,
) -> tuple[int, list[float]]:
    """The number of back-projection iterations that best predicts a frame left out of the fusion.

    Frame ``held_out`` of ``window`` ``(time, band, y, x)`` is left out; the others are fused with
    0 .. ``max_iterations`` iterations and each estimate simulates the left-out frame. More
    iterations recover more detail but amplify noise: the count with the smallest prediction error
    (the mean square over the best 95 % of the interior samples, so that clouds do not count) is
    the one noise allows on this scene (the fewest within 0.5 % of the smallest error). Returns it
    and the errors. With a ``prior`` the iterations start from it (0 iterations: the prior), and
    the estimate is scored without the blend of :func:`fuse_block`, which would return the prior
    wherever the held-out frame is the only other one. ``mapper`` maps the per-frame work; the
    result does not depend on it.
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
        prior_halo=params.prior_halo,
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
    steps = _fuse_steps(
        rest, masks, sub, nodata=nodata, work=work, mapper=mapper, prior=prior, blend=False
    )
    for estimate, _ in steps:
        simulated = _simulate(estimate, params.scale, params.shifts[held_out], params.psf_sigma)
        squares = np.sort(((target[0] - simulated)[use]) ** 2)
        errors.append(float(squares[: max(int(0.95 * squares.size), 1)].mean()))
    # The fewest iterations within 0.5 % of the best: a flat end costs halo and time for nothing.
    best = min(errors)
    return next(i for i, e in enumerate(errors) if e <= best * 1.005), errors


def estimate_psf(
    window: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    prior: Prior,
    *,
    sigmas: Any = PSF_SIGMAS,
    nodata: float | None = None,
    mapper: Mapper = map,
) -> tuple[float, list[float]]:
    """The sensor's PSF width (LR pixels) that best explains the frames from the prior.

    The prior (a single-image super-resolution of the reference that knows natural images, such
    as ``cnn-sensor``, trained over a range of blurs) estimates the scene; each candidate width of
    ``sigmas`` simulates every frame from it at its registered shift (:func:`dasksr.degrade_sensor`'s
    model), and the width with the smallest error (the mean square over the best 95 % of the
    interior valid samples of all frames, so that clouds and changes do not count), refined by a
    parabola through its neighbours, is returned with the errors. The frames only ever see the
    blurred scene, so the width is not in the data alone: the prior's notion of a sharp scene is
    what tells it, and nothing of a simulation's truth is used. ``mapper`` maps the candidate
    widths; the result does not depend on it.
    """
    work = np.dtype(np.float64)
    y, valid = _normalised(window, invalid, params, nodata, work)
    estimate = np.asarray(prior(y[params.reference]), dtype=work)
    margin = math.ceil(params.shift_max) + params.prior_halo // 2 + 4
    inner = np.zeros(valid.shape[1:], bool)
    inner[..., margin:-margin, margin:-margin] = True
    sigmas = np.asarray(sigmas, dtype=np.float64)

    def error(sigma: float) -> float:
        squares = []
        for k, shift in enumerate(params.shifts):
            simulated = _simulate(estimate, params.scale, shift, float(sigma))
            use = valid[k] & inner & np.isfinite(simulated)
            squares.append(((y[k] - simulated)[use]) ** 2)
        joined = np.sort(np.concatenate(squares)) if squares else np.zeros(0)
        return float(joined[: max(int(0.95 * joined.size), 1)].mean()) if joined.size else 0.0

    errors = list(mapper(error, sigmas))
    i = int(np.argmin(errors))
    best = float(sigmas[i])
    if 0 < i < len(sigmas) - 1:
        e0, e1, e2 = errors[i - 1 : i + 2]
        curve = e0 - 2 * e1 + e2
        if curve > 0:
            best += 0.5 * (e0 - e2) / curve * float(sigmas[i + 1] - sigmas[i])
    return best, errors


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
        smooth = nan_box(y[k] - anchor, _SMOOTH)
        scale = params.kappa * noise[k][:, None, None]
        with np.errstate(all="ignore"):
            value = np.exp(-0.5 * (smooth / scale) ** 2)
        value = np.where(np.isfinite(value), value, 1.0)
        # Clouds, haze and changed ground show in every band, most clearly in some: a sample
        # weighs what its least agreeing band says (a band NaN here says nothing).
        value = np.broadcast_to(value.min(axis=0), value.shape)
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
