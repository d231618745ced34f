"""Multi-frame super-resolution of a time stack: register eagerly, then fuse blockwise.

Registration and radiometric normalisation run once, on a central window of every frame, before
the graph is built (:func:`dasksr.kernels.fuse.register_frames`); their results are parameters of
the block function (:func:`dasksr.kernels.fuse.fuse_block`), which the blockwise layer runs with
the declared halo, ``time`` in one chunk and reduced away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from dasksr.api import check_nodata_fits, fine_dataarray, spatial_dims
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.fuse import (
    FuseParams,
    Prior,
    choose_iterations,
    default_kernel_sigma,
    estimate_psf,
    fuse_block,
    fuse_halo,
    register_frames,
)
from dasksr.kernels.method import Method, check_scale
from dasksr.kernels.quality import QualityRule, decode_quality, quality_rule
from dasksr.kernels.register import MIN_AGREEMENT
from dasksr.kernels.values import finalize, work_dtype
from dasksr.methods import get_method
from dasksr.operation import Operand, Operation, plan

__all__ = ["SOLVERS", "FrameDroppedWarning", "fuse", "fuse_numpy", "fuse_operation"]

#: ``solver`` of :func:`fuse`: the fusion, followed by back-projection or not.
SOLVERS = ("ibp", "kernel")
#: The most back-projection iterations that ``iterations=None`` may choose.
MAX_ITERATIONS = 16

#: Largest scale of :func:`fuse`.
_MAX_SCALE = 8
#: Edge of the central window (LR pixels) on which frames are registered.
_WINDOW = 512
#: Boundary rule past the image edge, as the upscaling methods (half-sample symmetric).
_BOUNDARY = "reflect"
#: The PSF width (LR pixels) assumed when it is not estimated (no prior to estimate it from).
_DEFAULT_PSF = 0.5


class FrameDroppedWarning(UserWarning):
    """A frame of the stack could not be registered and was left out of the fusion."""


def fuse(
    stack: xr.DataArray,
    scale: int = 2,
    *,
    dim: str = "time",
    masks: Any = None,
    reference: int = 0,
    solver: str = "ibp",
    iterations: int | None = None,
    nodata: float | None = None,
    chunks: Any = None,
    psf_sigma: float | None = None,
    max_shift: float = 4.0,
    min_correlation: float = 0.5,
    fallback: str | Method | None = "auto",
    mask_rule: str | QualityRule = "nonzero",
) -> xr.DataArray:
    """Super-resolve the reference frame of a stack of acquisitions of the same ground.

    Parameters
    ----------
    stack : xarray.DataArray
        Frames ``(time, [band,] y, x)`` on one grid, lazy (dask) or in memory; integer or float.
    scale : int
        Integer factor, 2..8.
    dim : str
        The dimension that holds the frames.
    masks : xarray.DataArray or array_like, optional
        Where a frame's pixels are invalid (cloud, shadow), ``(time, y, x)`` or the stack's
        shape: booleans or 0/1, or a product's quality layer decoded by ``mask_rule``. Nodata
        and NaN pixels are always invalid. Without masks, clouds, haze and changes on the ground
        are found against the reference all the same (see Notes); masks add to that.
    reference : int
        Position along ``dim`` of the frame whose grid, georeferencing and radiometry the result
        takes.
    solver : {'ibp', 'kernel'}
        How the fine grid is reconstructed from the frames. ``'ibp'``: iterative back-projection
        of the robustly fused frames (detail recovery) from the single-image prior.
        ``'kernel'``: the robust fusion alone (normalised convolution); the prior only where no
        other frame is valid.
    iterations : int, optional
        Back-projection iterations of ``'ibp'``. The default chooses them once per scene, on the
        registration window, by leaving one frame out of the fusion and keeping the count
        (0..16) that predicts it best: as many as the noise allows.
    nodata : float, optional
        Value marking invalid pixels; the default is ``stack.rio.nodata``.
    chunks : optional
        Spatial chunks (an int or a ``(y, x)`` pair) of the computation; the default keeps the
        stack's.
    psf_sigma : float, optional
        Standard deviation of the sensor's Gaussian point-spread function in LR pixels (the model
        of :func:`dasksr.degrade_sensor`). The default estimates it from the stack
        (:func:`dasksr.kernels.fuse.estimate_psf`: the width that best explains the frames from
        the single-image result of the reference); 0.5 when ``fallback`` is None.
    max_shift : float
        Frames displaced by more than this (LR pixels) from the reference are dropped.
    min_correlation : float
        Frames whose correlation with the reference after registration (over the pixels that
        agree with it) is lower are dropped.
    fallback : str, Method or None
        The single-image super-resolution of the reference: the result wherever no other frame
        is valid, where the back-projection starts, and the whole result when every other frame
        is dropped. ``'auto'``: ``cnn-sensor`` at the scales it has (2 and 4), else
        ``lanczos``; or any registered method's name. None: no prior (the fusion and
        back-projection alone, as before 0.2), and fewer than two usable frames is an error.
    mask_rule : str or QualityRule
        How ``masks`` are read (:func:`dasksr.kernels.quality.quality_rule`): ``'nonzero'``
        (booleans, 0/1: non-zero is invalid), ``'scl'`` (Sentinel-2 scene classification),
        ``'qa_pixel'`` (Landsat Collection 2 QA_PIXEL bits), ``'bqa'`` (Landsat Collection 1
        BQA), or ``'classes:V,V,...'`` / ``'bits:B,B,...'`` for other layers.

    Returns
    -------
    xarray.DataArray
        ``([band,] y, x)`` on the reference frame's grid ``scale`` times finer, lazy, in the
        stack's dtype (integers rounded and clipped). Attributes ``fuse_frames`` (labels of the
        frames used), ``fuse_shift_y``/``fuse_shift_x`` (their shifts in LR pixels, refined;
        ``fuse_phase_shift_y``/``fuse_phase_shift_x`` from phase correlation alone),
        ``fuse_gain``/``fuse_offset`` (per frame and band: ``reference ~ gain * frame + offset``),
        ``fuse_iterations``, ``fuse_halo``, ``fuse_solver``, ``fuse_psf_sigma``,
        ``fuse_fallback`` and ``fuse_dropped`` (each dropped frame and why) say what was done.

    Warns
    -----
    FrameDroppedWarning
        For every frame left out: entirely masked in the registration window, agreeing with the
        reference on too few pixels, no correlation with it, or shifted more than ``max_shift``.
        When every other frame is dropped the result is the single-image one (``fallback``).

    Notes
    -----
    Frame ``k`` displaced by ``d_k`` has its pixel ``i`` at reference coordinate ``i + d_k``.
    Shifts, gains and offsets are found on the central 512 x 512 LR pixels of every frame (phase
    correlation, then Gauss-Newton refinement), once, on the pixels that agree with the reference
    (:func:`dasksr.kernels.register.agreement`: clouds, haze and changed ground do not). In the
    blocks every sample is weighted by its agreement with the reference again, and each fine
    pixel blends the fusion with the single-image result by the other frames' support. A fine pixel is nodata when the sample
    nearest to it is invalid in every frame; elsewhere invalid samples simply do not count. The
    chunked result equals the whole-scene result (:func:`fuse_numpy`): each block is padded by the
    halo ``fuse_halo`` (the largest shift plus the fusion kernel's reach, plus the PSF's and the
    kernel's reach per iteration), with the half-sample symmetric rule at the image edge.

    Examples
    --------
    >>> import numpy as np
    >>> import dasksr
    >>> scene = np.random.default_rng(0).uniform(0, 100, (96, 96))
    >>> frames, shifts, _ = dasksr.simulate_stack(scene, 4, 2, snr=40, seed=1)
    >>> fused = dasksr.fuse(frames.chunk({"x": 24, "y": 24}), 2)
    >>> fused.shape, len(fused.attrs["fuse_frames"])
    ((96, 96), 4)
    """
    import rioxarray  # noqa: F401  (registers the rio accessor)

    if not isinstance(stack, xr.DataArray):
        raise InvalidArgumentError(
            f"stack of type {type(stack).__name__} is not supported: pass an xarray DataArray "
            "(time, [band,] y, x)"
        )
    scale = check_scale(scale, range(2, _MAX_SCALE + 1), method="fuse")
    if solver not in SOLVERS:
        raise InvalidArgumentError(
            f"solver={solver!r} is not known: use one of {', '.join(SOLVERS)}"
        )
    if iterations is not None:
        _check_iterations(iterations)
    frames, band_dim = _frames(stack, dim)
    n = frames.sizes[dim]
    if n < 2:
        raise InvalidArgumentError(
            f"the stack has {n} frame along {dim!r}: fuse needs at least 2 "
            "(for a single image use upscale)"
        )
    if not (isinstance(reference, int | np.integer) and -n <= reference < n):
        raise InvalidArgumentError(f"reference={reference!r} is not a frame index: use 0..{n - 1}")
    reference = int(reference) % n
    if frames.dtype.kind not in "uif":
        raise InvalidArgumentError(
            f"stack has dtype {frames.dtype}: use integer or floating-point pixels"
        )
    if nodata is None:
        nodata = stack.rio.nodata
    check_nodata_fits(nodata, frames.dtype)
    method = _fallback_method(fallback, scale)
    pixels = _as_dask(frames.data)
    invalid = _mask_array(masks, frames, dim, quality_rule(mask_rule))
    labels = [_label(v) for v in frames[dim].values]

    window, window_invalid = _window(pixels, invalid, nodata)
    # Registration, the PSF and the choice of iterations: one thread pool (see eager_threads).
    with _eager_mapper() as mapper:
        found = register_frames(
            window, window_invalid, reference=reference, upsample=100, refine=True, mapper=mapper
        )
        keep, dropped = _kept_frames(found, labels, reference, max_shift, min_correlation)
        if len(keep) < 2:
            if method is None:
                raise InvalidArgumentError(
                    f"only {len(keep)} frame(s) of {len(found)} can be registered: fuse without a "
                    "fallback needs at least 2 (check the masks, or use upscale on one frame)"
                )
            out = _single_image(frames, reference, scale, method, nodata, chunks, band_dim, dim)
            out.attrs["fuse_dropped"] = dropped
            return out
        ref_pos = keep.index(reference)
        prior = None if method is None else _prior(method, scale)
        params = FuseParams(
            scale=scale,
            shifts=tuple(found[k].shift for k in keep),
            gains=tuple(found[k].gain for k in keep),
            offsets=tuple(found[k].offset for k in keep),
            noise=tuple(found[k].noise for k in keep),
            reference=ref_pos,
            kernel_sigma=default_kernel_sigma(len(keep)),
            psf_sigma=_DEFAULT_PSF if psf_sigma is None else float(psf_sigma),
            iterations=0,
            prior_halo=0 if method is None else method.halo(scale),
            prior_start=solver == "ibp",
        )
        if psf_sigma is None and prior is not None and solver == "ibp":
            sigma, _ = estimate_psf(
                window[keep], window_invalid[keep], params, prior, mapper=mapper
            )
            params = dataclasses.replace(params, psf_sigma=round(sigma, 3))
        if solver == "ibp":
            if iterations is None:
                # Leave out the best-covered frame other than the reference (the last of equals).
                others = [i for i in range(len(keep)) if i != ref_pos]
                held_out = max(others, key=lambda i: (found[keep[i]].valid_fraction, i))
                iterations, _ = choose_iterations(
                    window[keep],
                    window_invalid[keep],
                    params,
                    held_out=held_out,
                    max_iterations=MAX_ITERATIONS,
                    nodata=None,  # nodata is already in window_invalid
                    mapper=mapper,
                    prior=prior,
                )
            params = dataclasses.replace(params, iterations=_check_iterations(iterations))
    pixels = pixels[keep]
    invalid = None if invalid is None else invalid[keep]
    fine = _fuse_array(pixels, invalid, params, nodata=nodata, chunks=chunks, method=method)

    template = frames.isel({dim: reference}, drop=True)
    if band_dim is None:
        template = template.isel(band=0, drop=True)
        fine = fine[0]
    out = fine_dataarray(template, fine, scale, nodata=nodata)
    out.attrs.update(
        fuse_solver=solver,
        fuse_frames=[labels[k] for k in keep],
        fuse_shift_y=[found[k].shift[0] for k in keep],
        fuse_shift_x=[found[k].shift[1] for k in keep],
        fuse_phase_shift_y=[found[k].phase_shift[0] for k in keep],
        fuse_phase_shift_x=[found[k].phase_shift[1] for k in keep],
        fuse_gain=[list(found[k].gain) for k in keep],
        fuse_offset=[list(found[k].offset) for k in keep],
        fuse_halo=fuse_halo(params),
        fuse_iterations=params.iterations,
        fuse_psf_sigma=params.psf_sigma,
        fuse_fallback="none" if method is None else method.name,
        fuse_dropped=dropped,
    )
    if band_dim is not None and band_dim != "band":
        out = out.rename({"band": band_dim})
    return out


def fuse_operation(
    params: FuseParams, *, masked: bool, nodata: float | None, method: Method | None = None
) -> Operation:
    """Multi-frame fusion with the registration results ``params``, as an `Operation`.

    Its operands are the frames ``(time, band, y, x)`` and, when ``masked``, their invalid
    pixels (the same shape, boolean); ``time`` and ``band`` are taken whole and ``time`` is
    reduced away. The halo is :func:`dasksr.kernels.fuse.fuse_halo`. ``method`` is the
    single-image prior (``params.prior_halo`` must be its halo at the scale), or None.
    """
    if method is not None and params.prior_halo != method.halo(params.scale):
        raise ValueError("params.prior_halo is not the prior method's halo")
    halo = fuse_halo(params)
    prior = None if method is None else _prior(method, params.scale)
    names = ("frames", "masks") if masked else ("frames",)
    operands = tuple(Operand(name, whole_leading=True) for name in names)
    return Operation(
        name="fuse",
        token=tokenize(params, nodata, masked, None if method is None else method.token),
        operands=operands,
        scale=params.scale,
        halo=halo,
        block=partial(_fuse_padded, params=params, halo=halo, nodata=nodata, prior=prior),
        dtype=None,
        boundary=_BOUNDARY,
        nodata=nodata,
        nodata_rule="a fine pixel is nodata when the sample nearest to it is invalid in every frame",
        drop_axis=0,
    )


def fuse_numpy(
    frames: np.ndarray,
    invalid: np.ndarray | None,
    params: FuseParams,
    *,
    nodata: float | None = None,
    method: Method | None = None,
) -> np.ndarray:
    """The whole-scene result: pad the whole stack ``(time, band, y, x)`` by the halo, fuse once.

    The reference of the seamless contract for :func:`fuse` (``method``: the prior, as in
    `fuse_operation`).
    """
    operation = fuse_operation(params, masked=invalid is not None, nodata=nodata, method=method)
    arrays = [np.asarray(frames)] + ([] if invalid is None else [np.asarray(invalid)])
    return operation.whole(*arrays)


def _fuse_padded(
    frames: np.ndarray,
    invalid: np.ndarray | None = None,
    *,
    params: FuseParams,
    halo: int,
    nodata: float | None,
    prior: Prior | None = None,
) -> np.ndarray:
    dtype = frames.dtype
    values, empty = fuse_block(
        frames, invalid, params, halo=halo, nodata=nodata, work=work_dtype(dtype), prior=prior
    )
    return finalize(values, dtype, nodata, empty if empty.any() else None)


def _fuse_array(
    pixels: da.Array,
    invalid: da.Array | None,
    params: FuseParams,
    *,
    nodata: float | None,
    chunks: Any,
    method: Method | None = None,
) -> da.Array:
    """Plan :func:`fuse_operation` over the blocks."""
    operation = fuse_operation(params, masked=invalid is not None, nodata=nodata, method=method)
    spatial = None
    if chunks is not None:
        ys, xs = _spatial_chunks(chunks)
        spatial = da.core.normalize_chunks((ys, xs), pixels.shape[2:])
    arrays = [pixels] + ([] if invalid is None else [invalid])
    return plan(operation, *arrays, spatial_chunks=spatial).array


def _spatial_chunks(chunks: Any) -> tuple[int, int]:
    """``chunks`` as a ``(y, x)`` pair of ints: it must be an int or a 2-tuple of ints."""

    def whole(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    if whole(chunks):
        return int(chunks), int(chunks)
    if isinstance(chunks, tuple) and len(chunks) == 2 and all(whole(v) for v in chunks):
        return int(chunks[0]), int(chunks[1])
    raise InvalidArgumentError(
        f"chunks={chunks!r} is not spatial chunks: give an int or a (y, x) pair of ints"
    )


def _check_iterations(iterations: Any) -> int:
    if (
        not isinstance(iterations, int | np.integer)
        or isinstance(iterations, bool)
        or iterations < 0
    ):
        raise InvalidArgumentError(
            f"iterations={iterations!r} is not a number of iterations: use an integer >= 0 or None"
        )
    return int(iterations)


def _frames(stack: xr.DataArray, dim: str) -> tuple[xr.DataArray, Hashable | None]:
    """``stack`` as ``(dim, band, y, x)`` and the name of its band dim (None when it has none)."""
    if dim not in stack.dims:
        raise InvalidArgumentError(
            f"the stack has dims {stack.dims}, no {dim!r}: pass dim= naming its frames' dimension"
        )
    ydim, xdim = spatial_dims(stack)
    others = [d for d in stack.dims if d not in (dim, ydim, xdim)]
    if len(others) > 1:
        raise InvalidArgumentError(
            f"the stack has dims {stack.dims}: fuse takes ({dim}, [band,] y, x), select the extra "
            f"dims {others[1:]} first"
        )
    frames = stack.transpose(dim, *others, ydim, xdim)
    if not others:
        return frames.expand_dims("band", axis=1), None
    return frames.rename({others[0]: "band"}) if others[0] != "band" else frames, others[0]


def _as_dask(data: Any) -> da.Array:
    if isinstance(data, da.Array):
        return data
    return da.from_array(np.asarray(data), chunks=(-1, -1, 1024, 1024))


def _mask_array(masks: Any, frames: xr.DataArray, dim: str, rule: QualityRule) -> da.Array | None:
    """``masks`` decoded by ``rule``, a boolean dask array of the frames' shape
    ``(time, band, y, x)``."""
    if masks is None:
        return None
    data = masks.data if isinstance(masks, xr.DataArray) else masks
    array = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    shape = frames.shape
    expected = (shape[0], *shape[2:])
    if tuple(array.shape) == expected:
        array = array[:, None]
    elif tuple(array.shape) != shape:
        raise InvalidArgumentError(
            f"masks have shape {tuple(array.shape)} but the stack has {shape[0]} frames of "
            f"{shape[2]} x {shape[3]} pixels: pass one mask per frame, shape {expected}"
        )
    if array.dtype != bool:
        array = da.map_blocks(decode_quality, array, rule=rule, dtype=bool)
    return da.broadcast_to(array, shape)


def _label(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="auto"))
    return str(value.item() if hasattr(value, "item") else value)


def _window(
    pixels: da.Array, invalid: da.Array | None, nodata: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The central window of every frame and its invalid pixels, computed now."""
    ny, nx = pixels.shape[-2:]
    cut = []
    for n in (ny, nx):
        size = min(n, _WINDOW)
        start = (n - size) // 2
        cut.append(slice(start, start + size))
    values = pixels[..., cut[0], cut[1]]
    bad = ~da.isfinite(values) if values.dtype.kind == "f" else da.zeros_like(values, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        bad = bad | (values == values.dtype.type(nodata))
    if invalid is not None:
        bad = bad | invalid[..., cut[0], cut[1]]
    window, mask = da.compute(values, bad)
    return np.asarray(window), np.asarray(mask)


def eager_threads() -> int:
    """Threads of the eager steps (registration, the PSF's estimate, the choice of iterations) in
    this process: dask's ``num_workers`` setting where one is made
    (``dask.config.set(num_workers=...)``), else the machine's cores. Their results do not depend
    on it."""
    import dask
    from dask.system import CPU_COUNT

    value = dask.config.get("num_workers", None)
    return max(1, int(value)) if value else max(1, CPU_COUNT)


@contextlib.contextmanager
def _eager_mapper() -> Iterator[Any]:
    """``map`` over the frames in :func:`eager_threads` threads (NumPy and SciPy release the GIL),
    the BLAS held to one thread meanwhile so that the threads do not oversubscribe the cores."""
    threads = eager_threads()
    if threads == 1:
        yield map
        return
    from threadpoolctl import threadpool_limits

    with (
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(threads, thread_name_prefix="dasksr-fuse") as pool,
    ):
        yield pool.map


def _kept_frames(
    found: list[Any],
    labels: list[str],
    reference: int,
    max_shift: float,
    min_correlation: float,
) -> tuple[list[int], list[str]]:
    if found[reference].valid_fraction == 0:
        raise InvalidArgumentError(
            f"the reference frame {labels[reference]} has no valid pixel in the registration "
            "window: choose another reference"
        )
    keep, dropped = [], []
    for k, frame in enumerate(found):
        reason = None
        if frame.valid_fraction == 0:
            reason = "is entirely masked in the registration window"
        elif frame.agreement < MIN_AGREEMENT:
            reason = (
                f"agrees with the reference on {frame.agreement:.0%} of its pixels only "
                "(clouds, haze or changed ground)"
            )
        elif not np.all(np.isfinite(frame.shift)):
            reason = "has no usable overlap with the reference"
        elif np.abs(frame.shift).max() > max_shift:
            reason = f"is shifted by {np.abs(frame.shift).max():.2f} px (> max_shift={max_shift})"
        elif k != reference and not frame.correlation >= min_correlation:
            reason = f"correlates with the reference at {frame.correlation:.2f} only"
        if reason is None:
            keep.append(k)
        else:
            dropped.append(f"{labels[k]}: {reason}")
            warnings.warn(
                f"frame {labels[k]} {reason}: dropped from the fusion",
                FrameDroppedWarning,
                stacklevel=3,
            )
    return keep, dropped


def _fallback_method(fallback: Any, scale: int) -> Method | None:
    """The single-image method of ``fallback`` at ``scale`` (see :func:`fuse`), or None."""
    if fallback is None:
        return None
    if isinstance(fallback, str) and fallback == "auto":
        learned = get_method("cnn-sensor")
        return learned if scale in learned.scales else get_method("lanczos")
    method = get_method(fallback)
    method.check_scale(scale)
    return method


def _prior(method: Method, scale: int) -> Prior:
    return partial(_prior_block, block=method.block, scale=scale, halo=method.halo(scale))


def _prior_block(reference: np.ndarray, *, block: Any, scale: int, halo: int) -> np.ndarray:
    """``method``'s result on the reference block (NaN where invalid): the block's edge repeated
    by the method's halo, so the values within ``halo`` of the edge are wrong (the fuse halo
    covers them) and the others are exactly those of `dasksr.upscale`."""
    padded = np.pad(reference, ((0, 0), (halo, halo), (halo, halo)), mode="edge")
    return np.asarray(block(padded, scale, nodata=None))


def _single_image(
    frames: xr.DataArray,
    reference: int,
    scale: int,
    method: Method,
    nodata: float | None,
    chunks: Any,
    band_dim: Hashable | None,
    dim: str,
) -> xr.DataArray:
    """Every other frame dropped: the reference's single-image result, with fuse's attributes."""
    from dasksr.api import upscale

    template = frames.isel({dim: reference}, drop=True)
    if band_dim is None:
        template = template.isel(band=0, drop=True)
    if chunks is not None:
        ys, xs = _spatial_chunks(chunks)
        template = template.chunk(dict(zip(template.dims[-2:], (ys, xs), strict=True)))
    out = upscale(template, scale=scale, method=method, nodata=nodata)
    label = _label(frames[dim].values[reference])
    out.attrs.update(
        fuse_solver=f"single-image {method.name}",
        fuse_frames=[label],
        fuse_shift_y=[0.0],
        fuse_shift_x=[0.0],
        fuse_phase_shift_y=[0.0],
        fuse_phase_shift_x=[0.0],
        fuse_gain=[[1.0] * frames.sizes["band"]],
        fuse_offset=[[0.0] * frames.sizes["band"]],
        fuse_halo=method.halo(scale),
        fuse_iterations=0,
        fuse_fallback=method.name,
    )
    if band_dim is not None and band_dim != "band":
        out = out.rename({"band": band_dim})
    return out
