"""Resampling helpers of the multi-frame kernels: separable sums over fixed taps, the edge pixel
repeated past the array (pure NumPy).

Every helper here is a fixed set of taps around each pixel, so a pixel's value depends only on the
pixels within the taps' reach: the property that keeps chunked fusion equal to the whole scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from dasksr.kernels.interp import keys_cubic

__all__ = ["Mapper", "cubic_shift", "nan_box", "pad_axis", "taps_sum"]

#: ``map``-like: applies a function to each item and yields the results in order. The per-frame
#: loops take one (the builtin ``map``, or a thread pool's ``map`` for the eager window); results
#: are always combined in frame order, so they do not depend on it.
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def pad_axis(values: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    if before <= 0 and after <= 0:
        return values
    widths = [(0, 0)] * values.ndim
    widths[axis] = (max(before, 0), max(after, 0))
    return np.pad(values, widths, mode="edge")


def taps_sum(values: np.ndarray, weights: np.ndarray, first: int, axis: int) -> np.ndarray:
    """``out[i] = sum_t weights[t] * values[i + first + t]`` along ``axis`` (edge repeated)."""
    n = values.shape[axis]
    last = first + weights.size - 1
    padded = pad_axis(values, -first, last, axis)
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
        out = taps_sum(out, weights.astype(out.dtype), first, axis)
    return out


def nan_box(values: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size x size`` box of the finite values (NaN where none), edge repeated."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    box = np.full(size, 1.0, dtype=values.dtype)
    first = -(size // 2)
    total = taps_sum(taps_sum(filled, box, first, -2), box, first, -1)
    count = taps_sum(taps_sum(finite.astype(values.dtype), box, first, -2), box, first, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
