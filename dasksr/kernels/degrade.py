"""Pure NumPy kernels of the degradation models: MATLAB ``imresize`` and a sensor-like blur.

Nothing here knows about Dask; :mod:`dasksr.degrade` validates arguments and wires the blockwise
layer. Two models live here:

- MATLAB's ``imresize`` with the bicubic kernel: the ``contributions`` algorithm (kernel width 4,
  widened by ``1 / scale`` when antialiasing a downscale, weights normalised per output pixel,
  all-zero columns dropped) applied one axis at a time, rows first, converting back to the input
  class after each axis as MATLAB's ``imresizemex`` does.
- A sensor point-spread function: a sampled Gaussian, centred on each low-resolution pixel (plus an
  optional subpixel shift), applied with stride ``scale``; the same weights for every output pixel,
  so a padded block gives exactly the pixels the whole image gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dasksr.kernels.interp import keys_cubic
from dasksr.kernels.loops import blur_decimate_planes

__all__ = [
    "IMRESIZE_BOUNDARIES",
    "SensorPSF",
    "add_noise",
    "area_psf",
    "bicubic_psf",
    "blur_decimate",
    "contributions",
    "noise_field",
    "resize_along_axis",
    "round_half_away",
    "sensor_psf",
]

#: Edge rules of :func:`contributions`: MATLAB clamps indices (``'replicate'``); some Python ports
#: mirror them (``'symmetric'``).
IMRESIZE_BOUNDARIES = ("replicate", "symmetric")

# MATLAB's bicubic kernel has support [-2, 2]: width 4.
_CUBIC_WIDTH = 4.0

# Noise is drawn in square tiles of the output grid, each from its own seeded stream, so a pixel's
# noise depends on its position only, never on the chunking.
_NOISE_TILE = 256


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (MATLAB's ``round`` and integer casts).

    Exact for every float, unlike ``floor(x + 0.5)``.

    Examples
    --------
    >>> round_half_away(np.array([0.5, 1.5, 2.5, -0.5, 0.49999999999999994]))
    array([ 1.,  2.,  3., -1.,  0.])
    """
    rounded = np.rint(values)  # halves to even; x - rint(x) is exact, so ties are found exactly
    ties = np.abs(values - rounded) == 0.5
    if ties.any():
        rounded[ties] = values[ties] + np.copysign(0.5, values[ties])
    return rounded


def contributions(
    in_length: int,
    out_length: int,
    scale: float,
    *,
    antialiasing: bool = True,
    boundary: str = "replicate",
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices of MATLAB ``imresize`` along one axis.

    Row ``k`` of both arrays describes output pixel ``k``: it is
    ``sum(weights[k] * source[indices[k]])``.

    Parameters
    ----------
    in_length, out_length : int
        Input and output lengths of the axis.
    scale : float
        Output over input size (``0.5`` halves).
    antialiasing : bool
        When downscaling, stretch the kernel by ``1 / scale`` (MATLAB's default).
    boundary : {'replicate', 'symmetric'}
        ``'replicate'`` clamps out-of-range indices to the edge pixel, as MATLAB's ``imresize``
        does; ``'symmetric'`` mirrors them about the edge (half-sample symmetric).

    Returns
    -------
    weights : ndarray of float64, shape (out_length, taps)
    indices : ndarray of intp, shape (out_length, taps)

    Examples
    --------
    >>> w, i = contributions(4, 2, 0.5)
    >>> i[0]
    array([0, 0, 0, 0, 1, 2, 3, 3])
    >>> bool(np.allclose(w.sum(axis=1), 1))
    True
    """
    width = _CUBIC_WIDTH
    if scale < 1 and antialiasing:
        width = width / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * keys_cubic(scale * x)

    else:
        kernel = keys_cubic
    # 1-based output coordinates mapped to 1-based input coordinates, as in MATLAB.
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    zero_based = indices.astype(np.intp) - 1
    if boundary == "replicate":
        zero_based = np.clip(zero_based, 0, in_length - 1)
    elif boundary == "symmetric":
        mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
        zero_based = mirror[np.mod(zero_based, mirror.size)]
    else:
        raise ValueError(f"boundary must be one of {IMRESIZE_BOUNDARIES}, not {boundary!r}")
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], zero_based[:, keep]


def resize_along_axis(
    image: np.ndarray, weights: np.ndarray, indices: np.ndarray, axis: int
) -> np.ndarray:
    """Apply one axis of :func:`contributions`, returning ``image``'s dtype as MATLAB does.

    The sum runs in float64 over the taps in order; integer results are rounded half away from
    zero and saturated to the dtype's range (MATLAB's class conversion), floats are cast back.
    """
    source = np.moveaxis(image, axis, 0)
    out = np.zeros((weights.shape[0], *source.shape[1:]), dtype=np.float64)
    expand = (slice(None),) + (None,) * (source.ndim - 1)
    for k in range(weights.shape[1]):
        out += weights[:, k][expand] * source[indices[:, k]]
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        out = np.clip(round_half_away(out), info.min, info.max)
    return np.moveaxis(out.astype(image.dtype, copy=False), 0, axis)


@dataclass(frozen=True)
class SensorPSF:
    """The 1-D weights of the sensor model along one axis.

    Low-resolution pixel ``i`` is ``sum(weights[t] * hr[i * scale + offset + t])``.
    ``halo`` is the number of high-resolution pixels needed past each edge of a block.
    """

    weights: np.ndarray
    offset: int
    scale: int

    @property
    def halo(self) -> int:
        last = self.offset + self.weights.size - 1
        return max(-self.offset, last - (self.scale - 1), 0)


def sensor_psf(scale: int, sigma: float, shift: float = 0.0, truncate: float = 4.0) -> SensorPSF:
    """Sampled Gaussian PSF of one axis for decimation by ``scale``.

    ``sigma`` and ``shift`` are in low-resolution pixels. The PSF of low-resolution pixel ``i`` is
    centred at high-resolution coordinate ``i * scale + (scale - 1) / 2 + shift * scale`` (the
    centre of the ``scale`` pixels it covers, moved by ``shift``); taps within
    ``truncate * sigma * scale + 0.5`` of the centre are kept (scipy's radius for integer centres),
    then normalised to sum to one.

    Examples
    --------
    >>> psf = sensor_psf(2, 0.5)
    >>> psf.offset, psf.weights.size, psf.halo
    (-4, 10, 4)
    """
    sigma_hr = sigma * scale
    centre = (scale - 1) / 2 + shift * scale
    radius = truncate * sigma_hr + 0.5
    first = math.ceil(centre - radius)
    last = math.floor(centre + radius)
    taps = np.arange(first, last + 1, dtype=np.float64)
    weights = np.exp(-0.5 * ((taps - centre) / sigma_hr) ** 2)
    weights /= weights.sum()
    weights.setflags(write=False)
    return SensorPSF(weights=weights, offset=first, scale=scale)


def area_psf(scale: int) -> SensorPSF:
    """The pixel-is-area model: low-resolution pixel ``i`` is the mean of the ``scale`` pixels it
    covers (``i * scale .. i * scale + scale - 1``); no halo.

    Examples
    --------
    >>> psf = area_psf(2)
    >>> psf.weights, psf.offset, psf.halo
    (array([0.5, 0.5]), 0, 0)
    """
    weights = np.full(scale, 1.0 / scale)
    weights.setflags(write=False)
    return SensorPSF(weights=weights, offset=0, scale=scale)


def bicubic_psf(scale: int) -> SensorPSF:
    """MATLAB ``imresize(image, 1 / scale)``'s antialiased bicubic as a `SensorPSF`.

    For an integer ``scale`` every low-resolution pixel has the same taps: Keys' cubic (a = -0.5)
    stretched by ``scale``, centred on the middle of the ``scale`` pixels it covers, normalised
    (`contributions` without its all-zero columns and its edge clamping).

    Examples
    --------
    >>> psf = bicubic_psf(2)
    >>> psf.offset, psf.weights.size, round(float(psf.weights.sum()), 12)
    (-3, 8, 1.0)
    """
    centre = (scale - 1) / 2
    first = math.floor(centre - 2 * scale) + 1
    taps = np.arange(first, math.ceil(centre + 2 * scale), dtype=np.float64)
    weights = keys_cubic((taps - centre) / scale)
    weights /= weights.sum()
    weights.setflags(write=False)
    return SensorPSF(weights=weights, offset=first, scale=scale)


def blur_decimate(block: np.ndarray, psf_y: SensorPSF, psf_x: SensorPSF) -> np.ndarray:
    """Blur and decimate the last two axes of a padded ``block`` (float64 result).

    ``block`` carries ``psf.halo`` extra pixels on each side of each axis; the interior length must
    be a multiple of the scale. Each output pixel is the same tap sequence wherever it lies (the
    rows' taps, then the columns'; the first product, then each following one added), so blocks
    reproduce the whole-image result bit for bit. The block is read in its own dtype: each tap
    converts only the samples it reads to float64 (the same values as converting first). Large
    NumPy planes run the compiled loop (`dasksr.kernels.loops.blur_decimate_planes`), small ones
    the same arithmetic array-at-a-time (a small job never loads Numba).
    """
    if psf_y.scale != psf_x.scale:
        raise ValueError(f"the two axes decimate by {psf_y.scale} and {psf_x.scale}")
    n_y = (block.shape[-2] - 2 * psf_y.halo) // psf_y.scale
    n_x = (block.shape[-1] - 2 * psf_x.halo) // psf_x.scale
    if isinstance(block, np.ndarray) and n_y * n_x >= _COMPILED_MIN_PIXELS:
        first_y = psf_y.halo + psf_y.offset
        first_x = psf_x.halo + psf_x.offset
        return blur_decimate_planes(
            block, psf_y.weights, first_y, psf_x.weights, first_x, psf_y.scale, (n_y, n_x)
        )
    out = _decimate_axis(block, psf_y, axis=block.ndim - 2)
    return _decimate_axis(out, psf_x, axis=out.ndim - 1)


#: Planes of fewer output (coarse) pixels are decimated array-at-a-time (`blur_decimate`): the
#: rule of the interpolation kernels (`dasksr.kernels.interp`), on the input grid, so that the
#: consistency figure of a job whose upscaling never loads Numba does not load it either.
_COMPILED_MIN_PIXELS = 128 * 128


def _decimate_axis(values: np.ndarray, psf: SensorPSF, axis: int) -> np.ndarray:
    # Slices along ``axis`` in place (whole rows for the row axis), not a moved axis: strided
    # reads across rows cost three times as much.
    halo, scale = psf.halo, psf.scale
    n_out = (values.shape[axis] - 2 * halo) // scale
    shape = list(values.shape)
    shape[axis] = n_out
    out = np.empty(shape, dtype=np.float64)
    term = np.empty(shape, dtype=np.float64)
    lead = (slice(None),) * axis
    for t, w in enumerate(psf.weights):
        start = halo + psf.offset + t
        taps = values[(*lead, slice(start, start + (n_out - 1) * scale + 1, scale))]
        if t == 0:
            np.multiply(taps, w, out=out, dtype=np.float64)
        else:
            np.multiply(taps, w, out=term, dtype=np.float64)
            out += term
    return out


def noise_field(
    seed: int, lead: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Standard normal noise for the window ``rows x cols`` of the plane at ``lead``.

    The plane is cut into fixed tiles, each drawn from ``numpy.random.default_rng([seed, *lead,
    tile_row, tile_col])``, so a pixel gets the same value whatever window asks for it.

    Examples
    --------
    >>> whole = noise_field(0, (), (0, 300), (0, 300))
    >>> part = noise_field(0, (), (250, 300), (10, 20))
    >>> bool(np.array_equal(whole[250:300, 10:20], part))
    True
    """
    (r0, r1), (c0, c1) = rows, cols
    out = np.empty((r1 - r0, c1 - c0), dtype=np.float64)
    tile = _NOISE_TILE
    for ty in range(r0 // tile, (r1 - 1) // tile + 1 if r1 > r0 else r0 // tile):
        for tx in range(c0 // tile, (c1 - 1) // tile + 1 if c1 > c0 else c0 // tile):
            draw = np.random.default_rng([seed, *lead, ty, tx]).standard_normal((tile, tile))
            y0, y1 = max(r0, ty * tile), min(r1, (ty + 1) * tile)
            x0, x1 = max(c0, tx * tile), min(c1, (tx + 1) * tile)
            out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = draw[
                y0 - ty * tile : y1 - ty * tile, x0 - tx * tile : x1 - tx * tile
            ]
    return out


def add_noise(
    values: np.ndarray,
    sigma: np.ndarray,
    *,
    seed: int,
    origin: tuple[int, ...],
) -> np.ndarray:
    """Add ``sigma * noise_field`` to every plane of ``values`` (float64, new array).

    ``origin`` is the global index of ``values[0, ..., 0]``; ``sigma`` broadcasts against the
    leading axes (shape ``(..., 1, 1)``).
    """
    out = np.array(values, dtype=np.float64, copy=True)
    *lead_shape, ny, nx = out.shape
    *lead_origin, y0, x0 = origin
    for index in np.ndindex(*lead_shape):
        plane = tuple(int(i + o) for i, o in zip(index, lead_origin, strict=True))
        noise = noise_field(seed, plane, (y0, y0 + ny), (x0, x0 + nx))
        out[index] += np.broadcast_to(sigma, (*lead_shape, 1, 1))[index] * noise
    return out
