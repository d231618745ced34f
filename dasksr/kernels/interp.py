"""Interpolation kernels: nearest, bilinear, bicubic (Keys, a = -0.5) and Lanczos-3.

Each kernel is separable and, for an integer scale ``s``, polyphase: fine pixel ``j`` has its centre
at coarse coordinate ``(j + 0.5) / s - 0.5`` (pixel-is-area), so the ``s`` output phases of every
coarse pixel use ``s`` fixed weight vectors over the taps ``-halo .. halo``. The arithmetic of each
output pixel is the same element-wise multiply-add sequence wherever the pixel lies in a block,
which is what makes chunked and whole-image results bit-identical.

Nodata rule (design.md section 4): a fine pixel is nodata exactly when the coarse pixel that
contains its centre is nodata (the nodata footprint is upscaled like ``nearest``). A valid fine pixel
whose kernel support touches invalid pixels is computed from the valid ones only, with the weights
renormalised to sum to one; if the valid weights sum to less than one half, it takes the value of its
own coarse pixel instead. Invalid values never enter a valid pixel, so nodata cannot ring into data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from dasksr.backend import array_namespace
from dasksr.kernels.loops import polyphase_rows
from dasksr.kernels.method import Method
from dasksr.kernels.values import (
    finalize,
    integer_range,
    invalid_mask,
    keep_off_nodata,
    work_dtype,
)

__all__ = [
    "neighbourhood_bounds",
    "INTERPOLATION_METHODS",
    "keys_cubic",
    "lanczos",
    "triangle",
    "phase_weights",
    "upsample_nearest",
    "upsample_separable",
]

# Input pixels per strip: a strip and its temporaries stay in the CPU cache, and each NumPy call
# still has enough work to hide the interpreter's overhead (measured best at 16 rows of 4096 pixels
# and 64 rows of 1024).
_STRIP_PIXELS = 65536


def triangle(x: np.ndarray) -> np.ndarray:
    """The linear interpolation kernel (support 1)."""
    return np.maximum(0.0, 1.0 - np.abs(x))


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (support 2); ``a = -0.5`` as MATLAB and Pillow use."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def lanczos(x: np.ndarray, lobes: int = 3) -> np.ndarray:
    """The Lanczos windowed sinc with ``lobes`` lobes (support ``lobes``)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < lobes, np.sinc(x) * np.sinc(x / lobes), 0.0)


@cache
def phase_weights(kernel: str, scale: int) -> np.ndarray:
    """Weights of shape ``(scale, 2 * halo + 1)``: phase ``p`` over taps ``-halo .. halo``.

    Each row is normalised to sum to one (this matters only for Lanczos, as in Pillow).
    """
    function, radius = _KERNELS[kernel]
    taps = np.arange(-radius, radius + 1)
    centres = (np.arange(scale) + 0.5) / scale - 0.5
    weights = function(centres[:, None] - taps[None, :])
    weights = weights / weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


def neighbourhood_bounds(small: Any, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The minimum and maximum of the 4 x 4 input pixels around every output pixel's centre, on
    the output grid (the input extended by its edge values), in the input's floating-point dtype
    (float64 for integers).

    An output pixel ``j`` lies at input coordinate ``u = (j + 0.5) / scale - 0.5``; its
    neighbourhood is ``floor(u) - 1 .. floor(u) + 2`` on each axis, bicubic's support.

    Examples
    --------
    >>> low, high = neighbourhood_bounds(np.arange(16.0).reshape(4, 4), 2)
    >>> low.shape, float(low[0, 0]), float(high[0, 0]), float(high[3, 3])
    ((8, 8), 0.0, 10.0, 15.0)
    """
    from scipy import ndimage  # not at import: a job that never bounds pays nothing for it

    values = np.asarray(small)
    if values.dtype.kind not in "fc":
        values = values.astype(np.float64)
    size = (1,) * (values.ndim - 2) + (4, 4)
    # A 4-wide filter's window at index i is i - 2 .. i + 1; origin -1 moves it to i - 1 .. i + 2.
    origin = (0,) * (values.ndim - 2) + (-1, -1)
    low = ndimage.minimum_filter(values, size=size, mode="nearest", origin=origin)
    high = ndimage.maximum_filter(values, size=size, mode="nearest", origin=origin)
    index = [
        np.floor((np.arange(n * scale) + 0.5) / scale - 0.5).astype(np.intp)
        for n in values.shape[-2:]
    ]
    # floor(u) is -1 before the first pixel's centre: the window there starts at -2, clamped.
    rows, cols = (np.clip(i, 0, n - 1) for i, n in zip(index, values.shape[-2:], strict=True))
    pick = (..., rows[:, None], cols[None, :])
    return low[pick], high[pick]


def upsample_nearest(block: Any, scale: int, *, nodata: float | None = None) -> Any:
    """Replicate every pixel into a ``scale x scale`` square (halo 0)."""
    xp = array_namespace(block)
    *lead, ny, nx = block.shape
    view = block[..., :, None, :, None]
    out = xp.broadcast_to(view, (*lead, ny, scale, nx, scale))
    out = xp.ascontiguousarray(out).reshape(*lead, ny * scale, nx * scale)
    if nodata is not None and out.dtype.kind == "f" and not np.isnan(nodata):
        # Every invalid pixel is written as the nodata value, as the other methods do.
        out[~xp.isfinite(out)] = nodata
    return out


def upsample_separable(block: Any, scale: int, kernel: str, *, nodata: float | None = None) -> Any:
    """Upsample the last two axes of a padded ``block`` with the separable ``kernel``.

    ``block`` carries ``halo`` extra pixels on each side of both spatial axes; the result covers
    only the valid interior, ``scale`` times larger, in ``block``'s dtype. See the module docstring
    for the nodata rule.

    The work is done in strips of about ``_STRIP_PIXELS`` input pixels, from the float computation to the
    final rounding, so that each strip's temporaries stay in the CPU cache and memory stays bounded.
    """
    xp = array_namespace(block)
    halo = _KERNELS[kernel][1]
    dtype = block.dtype
    wdtype = work_dtype(dtype)
    weights = phase_weights(kernel, scale).astype(wdtype)
    invalid = invalid_mask(block, nodata)
    *lead, py, px = block.shape
    ny, nx = py - 2 * halo, px - 2 * halo
    planes = block.reshape(-1, py, px)
    masks = None if invalid is None else invalid.reshape(-1, py, px)
    out = xp.empty((planes.shape[0], ny * scale, nx * scale), dtype=dtype)
    strip = max(8, min(256, _STRIP_PIXELS // max(px, 1))) if xp is np else max(ny, 1)
    clip, inner = None, None
    if dtype.kind in "iu":
        low, high, inner = integer_range(dtype, nodata)
        clip = (low, high)
    # The compiled loops also round, clip and cast, straight into the output, when the strip has
    # no invalid pixel and no valid value can land on nodata.
    compiled = xp is np and dtype in _COMPILED_OUTPUT and inner is None and _worth_compiling(block)
    for b in range(planes.shape[0]):
        for r0 in range(0, ny, strip):
            r1 = min(ny, r0 + strip)
            rows = planes[b, r0 : r1 + 2 * halo]
            mask = None if masks is None else masks[b, r0 : r1 + 2 * halo]
            if mask is not None and not bool(mask.any()):
                mask = None
            target = out[b, r0 * scale : r1 * scale]
            if mask is None and compiled:
                # The compiled loops round, clip and cast straight into the output.
                polyphase_rows(rows, weights, out=target, clip=clip)
                keep_off_nodata(target, nodata)
                continue
            if mask is None:
                fine = _polyphase_rows(rows, scale, halo, weights, wdtype)
                fine_invalid = None
            else:
                fine, fine_invalid = _with_invalid(rows, mask, scale, halo, weights, wdtype)
            finalize(fine, dtype, nodata, fine_invalid, out=target)
    return out.reshape(*lead, ny * scale, nx * scale)


def _with_invalid(
    rows: Any, mask: Any, scale: int, halo: int, weights: np.ndarray, wdtype: Any
) -> tuple[Any, Any]:
    """The nodata rule on one strip: renormalised valid weights where the kernel touches nodata.

    Only the columns whose kernel support can reach an invalid pixel are renormalised; elsewhere
    the plain result (invalid values set to zero never enter it) is already the answer.
    """
    xp = array_namespace(rows)
    values = rows.astype(wdtype, copy=True)
    values[mask] = 0
    fine = _polyphase_rows(values, scale, halo, weights, wdtype)
    nx = rows.shape[1] - 2 * halo
    bad = xp.flatnonzero(mask.any(axis=0))  # padded columns holding an invalid pixel
    # Coarse column i reads padded columns i .. i + 2 * halo.
    first = max(int(bad.min()) - 2 * halo, 0)
    last = min(int(bad.max()), nx - 1)
    window = slice(first, last + 2 * halo + 1)
    sub_mask = mask[:, window]
    weight_sum = _polyphase_rows((~sub_mask).astype(wdtype), scale, halo, weights, wdtype)
    touched = _polyphase_rows(sub_mask.astype(wdtype), scale, halo, np.abs(weights), wdtype) > 0
    core = (slice(halo, rows.shape[0] - halo), slice(halo + first, halo + last + 1))
    own = upsample_nearest(rows[core], scale).astype(wdtype)
    part = fine[:, first * scale : (last + 1) * scale]
    enough = weight_sum >= 0.5
    normalised = xp.where(enough, part / xp.where(enough, weight_sum, 1), own)
    part[...] = xp.where(touched, normalised, part)
    core = (slice(halo, rows.shape[0] - halo), slice(halo, halo + nx))
    return fine, upsample_nearest(mask[core], scale)


#: Planes of fewer padded pixels take the array path on NumPy too (the same arithmetic, bit for
#: bit): about 0.1 ms slower per 128 x 128 plane, where the compiled loops' first use costs about
#: 0.5 s (importing Numba, loading the cached code). A 64 x 64 raster then never loads Numba.
_COMPILED_MIN_PIXELS = 128 * 128


def _worth_compiling(array: Any) -> bool:
    return int(array.shape[-1]) * int(array.shape[-2]) >= _COMPILED_MIN_PIXELS


def _polyphase_rows(rows: Any, scale: int, halo: int, weights: np.ndarray, wdtype: Any) -> Any:
    """Separable polyphase upsampling of one padded 2-D strip, in working precision.

    NumPy strips run the compiled loops; other arrays (CuPy) the same arithmetic array-at-a-time.
    """
    if array_namespace(rows) is np and _worth_compiling(rows):
        return polyphase_rows(rows, weights)
    return _polyphase_rows_arrays(rows, scale, halo, weights, wdtype)


def _polyphase_rows_arrays(
    rows: Any, scale: int, halo: int, weights: np.ndarray, wdtype: Any
) -> Any:
    """:func:`_polyphase_rows` with whole-array operations (any array module)."""
    xp = array_namespace(rows)
    n, nx = rows.shape[0] - 2 * halo, rows.shape[1] - 2 * halo
    across = xp.empty((rows.shape[0], nx, scale), dtype=wdtype)
    _apply_taps(rows, across, weights, axis=-1, wdtype=wdtype)
    across = across.reshape(rows.shape[0], nx * scale)
    fine = xp.empty((n, scale, nx * scale), dtype=wdtype)
    _apply_taps(across, fine, weights, axis=0, wdtype=wdtype)
    return fine.reshape(n * scale, nx * scale)


def _apply_taps(src: Any, dst: Any, weights: np.ndarray, *, axis: int, wdtype: Any) -> None:
    """``dst[..., p] = sum_k w[p, k] * src shifted by k`` along ``axis``, one phase at a time.

    With ``axis=-1`` ``dst`` has shape ``(rows, n, scale)``: each phase is summed in a contiguous
    buffer and copied into its interleaved place once. With ``axis=0`` ``dst`` has shape
    ``(n, scale, cols)`` and each phase is summed in place (its rows are contiguous). The taps are
    always summed in the same order, so a pixel's arithmetic never depends on its position.
    """
    xp = array_namespace(src)
    scale, ntaps = weights.shape
    n = dst.shape[-2] if axis == -1 else dst.shape[0]
    src = src.astype(wdtype, copy=False)
    shape = dst.shape[:-1] if axis == -1 else (n, dst.shape[-1])
    tmp = xp.empty(shape, dtype=wdtype)
    acc = xp.empty(shape, dtype=wdtype) if axis == -1 else None
    for phase in range(scale):
        target = acc if acc is not None else dst[:, phase]
        first = True
        for k in range(ntaps):
            w = weights[phase, k]
            if w == 0:
                continue
            shifted = src[..., k : k + n] if axis == -1 else src[k : k + n]
            if first:
                xp.multiply(shifted, w, out=target)
                first = False
            else:
                xp.multiply(shifted, w, out=tmp)
                xp.add(target, tmp, out=target)
        if acc is not None:
            dst[..., phase] = acc


#: Output dtypes the compiled loops write directly (wider integers go through ``finalize``).
_COMPILED_OUTPUT = frozenset(
    np.dtype(t)
    for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)

_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]] = {
    "bilinear": (triangle, 1),
    "bicubic": (keys_cubic, 2),
    "lanczos": (lanczos, 3),
}


def _separable_method(name: str, summary: str) -> Method:
    radius = _KERNELS[name][1]

    def block(block: Any, scale: int, *, nodata: float | None = None) -> Any:
        return upsample_separable(block, scale, name, nodata=nodata)

    block.__name__ = f"upsample_{name}"
    return Method(name=name, summary=summary, halo=lambda scale: radius, block=block)


#: The interpolation methods, as plain records: :mod:`dasksr.methods` registers them.
INTERPOLATION_METHODS: tuple[Method, ...] = (
    Method(
        name="nearest",
        summary="nearest neighbour: each pixel becomes a scale x scale square",
        halo=lambda scale: 0,
        block=upsample_nearest,
    ),
    _separable_method("bilinear", "bilinear interpolation (triangle kernel, support 1)"),
    _separable_method("bicubic", "bicubic convolution, Keys a=-0.5 as MATLAB and Pillow"),
    _separable_method("lanczos", "Lanczos-3 windowed sinc, normalised weights as Pillow"),
)
