"""Artefacts that no reconstruction should make: new extrema.

An output pixel lies at coarse coordinate ``u = (j + 0.5) / scale - 0.5`` (pixel-is-area, see
:mod:`dasksr.grid`); the 4 x 4 input pixels around it (``floor(u) - 1 .. floor(u) + 2`` on each
axis, the support of bicubic interpolation) bound what the data say there. A pixel brighter than
their maximum, or darker than their minimum, by more than the noise level is a new extremum: a
halo, an overshoot, a stroke or a dark spot that the input does not hold. Bicubic makes some
(its kernel has negative lobes); `new_extrema` counts them so that a method can be held to a
multiple of bicubic's share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from dasksr.errors import InvalidArgumentError
from dasksr.kernels.interp import neighbourhood_bounds

__all__ = ["estimate_noise", "neighbourhood_bounds", "new_extrema"]


def estimate_noise(small: Any) -> np.ndarray:
    """The standard deviation of white noise in each plane of ``small`` (Immerkaer 1996: the
    mean absolute response of a Laplacian difference that cancels smooth structure), shaped to
    broadcast against the planes."""
    values = np.asarray(small, dtype=np.float64)
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    kernel = kernel.reshape((1,) * (values.ndim - 2) + (3, 3))
    response = np.abs(ndimage.convolve(values, kernel, mode="reflect"))[..., 1:-1, 1:-1]
    sigma = np.sqrt(np.pi / 2) / 6 * response.mean(axis=(-2, -1), keepdims=True)
    return np.asarray(sigma)


def new_extrema(
    output: Any,
    small: Any,
    scale: int,
    *,
    noise: Any = None,
    mask: Any = None,
) -> float:
    """The share of ``output`` pixels beyond the bounds of their 4 x 4 input neighbourhood by
    more than ``noise`` (`neighbourhood_bounds`).

    Parameters
    ----------
    output : array_like
        The reconstruction, ``(..., y * scale, x * scale)``.
    small : array_like
        Its input, ``(..., y, x)``.
    scale : int
        Output pixels per input pixel.
    noise : float or array_like, optional
        The tolerance, in the data's units: the input's noise standard deviation (one value, or
        one per plane). The default estimates it from ``small`` (`estimate_noise`).
    mask : array_like of bool, optional
        The output pixels to count (default: all).

    Returns
    -------
    float
        The share, 0 to 1, of the counted pixels that are new extrema.

    Examples
    --------
    >>> small = np.array([[0.0, 0.0, 10.0, 10.0]] * 4)
    >>> from dasksr import upscale
    >>> new_extrema(upscale(small, scale=2, method="nearest"), small, 2, noise=0.1)
    0.0
    >>> round(new_extrema(upscale(small, scale=2, method="bicubic"), small, 2, noise=0.1), 3)
    0.5
    """
    out = np.asarray(output, dtype=np.float64)
    values = np.asarray(small, dtype=np.float64)
    if out.shape[-2:] != tuple(n * scale for n in values.shape[-2:]):
        raise InvalidArgumentError(
            f"output is {out.shape[-2:]} pixels, not scale={scale} times the input's "
            f"{values.shape[-2:]}: pass the input that the output was made from"
        )
    tolerance = estimate_noise(values) if noise is None else np.asarray(noise, dtype=np.float64)
    low, high = neighbourhood_bounds(values, scale)
    beyond = (out > high + tolerance) | (out < low - tolerance)
    counted = np.ones(out.shape, bool) if mask is None else np.broadcast_to(mask, out.shape)
    total = int(counted.sum())
    return float(beyond[counted].sum() / total) if total else float("nan")
