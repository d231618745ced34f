"""Degradation models that make low-resolution inputs for evaluation and training.

- :func:`imresize`: MATLAB's ``imresize`` with the bicubic kernel and antialiasing, the resize
  behind the low-resolution images of the super-resolution literature (Set5, Set14, ...).
- :func:`degrade_sensor`: a sensor-like model for remote sensing (Gaussian PSF, optional subpixel
  shift, decimation, Gaussian noise at a given SNR), on NumPy or chunked on Dask.
- :func:`mod_crop`: crop an image so its size is a multiple of the scale, as the protocol does.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import dask.array as da
import numpy as np

from dasksr.blockwise import downscale_blocks, pad_block
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.degrade import (
    IMRESIZE_BOUNDARIES,
    add_noise,
    blur_decimate,
    contributions,
    resize_along_axis,
    sensor_psf,
)
from dasksr.kernels.method import check_scale
from dasksr.kernels.values import finalize

__all__ = ["degrade_sensor", "imresize", "mod_crop"]


def imresize(
    image: Any,
    scale: float,
    *,
    antialiasing: bool = True,
    boundary: str = "replicate",
) -> np.ndarray:
    """Resize the last two axes of ``image`` as MATLAB's ``imresize(image, scale, 'bicubic')``.

    Parameters
    ----------
    image : array_like
        Image with the spatial axes last: ``(y, x)`` or ``(band, y, x)``. Integer or floating-point.
    scale : float
        Output size over input size, MATLAB's convention: ``1 / 2`` halves, ``1 / 3`` divides by
        three, ``2`` doubles. The output is ``ceil(scale * n)`` pixels along each axis.
    antialiasing : bool
        When downscaling, widen the bicubic kernel by ``1 / scale`` (MATLAB's default), which
        low-pass filters the image before it is decimated.
    boundary : {'replicate', 'symmetric'}
        How source indices past the edge are mapped. ``'replicate'`` clamps them to the edge
        pixel, as MATLAB does; it reproduces the published Set5/Set14 low-resolution files pixel
        for pixel. ``'symmetric'`` mirrors them, as some Python ports of ``imresize`` do.

    Returns
    -------
    numpy.ndarray
        The resized image, in the dtype of ``image``.

    Notes
    -----
    A port of MATLAB's ``contributions`` algorithm: the cubic kernel of Keys (a = -0.5, width 4)
    is scaled by ``scale`` and widened by ``1 / scale`` when antialiasing a downscale; output pixel
    ``k`` (1-based) maps to input coordinate ``k / scale + 0.5 * (1 - 1 / scale)``; the weights of
    each output pixel are normalised to sum to one and all-zero tap columns are dropped. Rows are
    resized first, then columns, each in float64; as MATLAB keeps the input class between the two
    passes, integer images are rounded (halves away from zero) and saturated after each pass.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import imresize
    >>> image = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    >>> imresize(image, 1 / 2)
    array([[ 26,  46],
           [104, 124]], dtype=uint8)
    """
    if isinstance(image, da.Array):
        raise InvalidArgumentError(
            "imresize works on in-memory images: call it on a NumPy array "
            "(for chunked rasters use degrade_sensor)"
        )
    array = np.asarray(image)
    if array.ndim < 2 or array.dtype.kind not in "uif":
        raise InvalidArgumentError(
            f"image has shape {array.shape} and dtype {array.dtype}: pass integer or "
            "floating-point pixels with at least (y, x) axes"
        )
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise InvalidArgumentError(f"scale={scale!r} is not a positive number: use e.g. 1 / 2")
    if boundary not in IMRESIZE_BOUNDARIES:
        raise InvalidArgumentError(
            f"boundary={boundary!r} is not known: use one of {', '.join(IMRESIZE_BOUNDARIES)}"
        )
    out = array
    for axis in (-2, -1):
        n = array.shape[axis]
        size = math.ceil(scale * n)
        if size < 1:
            raise InvalidArgumentError(
                f"scale={scale!r} leaves no pixel of an axis of length {n}: use a larger scale"
            )
        weights, indices = contributions(
            n, size, float(scale), antialiasing=antialiasing, boundary=boundary
        )
        out = resize_along_axis(out, weights, indices, axis)
    return out


def mod_crop(image: Any, scale: int) -> Any:
    """Crop the last two axes of ``image`` to multiples of ``scale``, keeping the top-left corner.

    This is how the ground truth of the Set5/Set14 protocol is cut before it is downscaled.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import mod_crop
    >>> mod_crop(np.zeros((3, 7, 10)), 3).shape
    (3, 6, 9)
    """
    scale = check_scale(scale, minimum=1)
    ny, nx = image.shape[-2:]
    return image[..., : ny - ny % scale, : nx - nx % scale]


def degrade_sensor(
    image: Any,
    scale: int,
    *,
    sigma: float = 0.5,
    shift: tuple[float, float] = (0.0, 0.0),
    snr: float | None = None,
    seed: int = 0,
    dtype: Any = None,
) -> Any:
    """Simulate a coarser sensor: Gaussian PSF, subpixel shift, decimation by ``scale``, noise.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        The high-resolution scene, spatial axes last; each leading index (band, time) is a plane.
        Its spatial size must be a multiple of ``scale`` (see :func:`mod_crop`).
    scale : int
        Decimation factor; the result is ``scale`` times smaller along y and x.
    sigma : float
        Standard deviation of the Gaussian point-spread function, in low-resolution pixels
        (0.5 gives a modulation transfer of about 0.29 at the low-resolution Nyquist frequency).
    shift : (float, float)
        Subpixel displacement ``(dy, dx)`` of the low-resolution grid, in low-resolution pixels:
        pixel ``i`` is centred on high-resolution coordinate ``(i + 0.5 + d) * scale - 0.5``, so
        the content appears moved by ``-d``.
    snr : float, optional
        Signal-to-noise ratio in dB of the added white Gaussian noise, per plane:
        ``10 * log10(mean(signal ** 2) / noise_std ** 2)`` over the noise-free low-resolution
        plane (NaN ignored). None adds no noise.
    seed : int
        Seed of the noise. A pixel's noise depends on the seed and its position only, so any
        chunking gives the same result.
    dtype : dtype, optional
        Output dtype; the default keeps the input dtype (integers are rounded and clipped).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        NumPy in, NumPy out; Dask in, lazy Dask out with chunks ``scale`` times smaller.

    Notes
    -----
    Low-resolution pixel ``i`` is ``sum_k g(k - c_i) x[k]`` along each axis, with ``g`` a sampled
    Gaussian of standard deviation ``sigma * scale`` high-resolution pixels, truncated at four
    standard deviations and normalised, and ``c_i`` the pixel's centre above. Past the image edge
    the scene is extended half-sample symmetrically (``numpy.pad(mode='symmetric')``), the rule the
    upscaling methods use. Dask inputs are processed blockwise with a halo of the PSF's radius;
    chunks are moved to multiples of ``scale`` first. With ``snr`` on a Dask array, the power of
    the noise-free result is computed when this function is called (a first streaming pass over the
    scene), so that the returned graph streams too; the scene is read twice. NaN spreads to every
    low-resolution pixel whose PSF support touches it.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import degrade_sensor
    >>> scene = np.full((8, 8), 100, dtype=np.uint16)
    >>> degrade_sensor(scene, 2, sigma=0.6)
    array([[100, 100, 100, 100],
           [100, 100, 100, 100],
           [100, 100, 100, 100],
           [100, 100, 100, 100]], dtype=uint16)
    >>> noisy = degrade_sensor(scene.astype(float), 2, snr=20, seed=1)
    >>> bool(noisy.std() > 0)
    True
    """
    scale = check_scale(scale, minimum=1)
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
        raise InvalidArgumentError(f"sigma={sigma!r} must be a positive number of pixels")
    try:
        dy, dx = (float(v) for v in shift)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"shift={shift!r} is not a pair of numbers: pass (dy, dx) in low-resolution pixels"
        ) from None
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise InvalidArgumentError(f"shift={shift!r} must be finite")
    if snr is not None and not math.isfinite(snr):
        raise InvalidArgumentError(f"snr={snr!r} must be a finite number of dB or None")
    if not (isinstance(seed, int) and seed >= 0):
        raise InvalidArgumentError(f"seed={seed!r} must be a non-negative integer")
    lazy = isinstance(image, da.Array)
    array: Any = image if lazy else np.asarray(image)
    if array.ndim < 2 or array.dtype.kind not in "uif":
        raise InvalidArgumentError(
            f"image has shape {array.shape} and dtype {array.dtype}: pass integer or "
            "floating-point pixels with at least (y, x) axes"
        )
    if any(n % scale or n == 0 for n in array.shape[-2:]):
        raise InvalidArgumentError(
            f"image is {array.shape[-2]} x {array.shape[-1]} pixels, not a multiple of "
            f"scale={scale}: crop it first with dasksr.mod_crop(image, {scale})"
        )
    out_dtype = np.dtype(array.dtype if dtype is None else dtype)
    psf_y, psf_x = sensor_psf(scale, sigma, dy), sensor_psf(scale, sigma, dx)
    halo = max(psf_y.halo, psf_x.halo)
    kernel = partial(_blur_decimate_padded, psf_y=psf_y, psf_x=psf_x, halo=halo)

    if not lazy:
        whole = kernel(pad_block(array, halo, "reflect"))
        if snr is None:
            return _finish(whole, out_dtype)
        sigma_whole = _noise_std(np.nanmean(whole**2, axis=(-2, -1), keepdims=True), snr)
        noisy = add_noise(whole, sigma_whole, seed=seed, origin=(0,) * whole.ndim)
        return _finish(noisy, out_dtype)

    clean = downscale_blocks(kernel, array, halo=halo, scale=scale, boundary="reflect")
    if snr is None:
        return da.map_blocks(_finish, clean, out_dtype, dtype=out_dtype)
    # The noise level needs the power of the whole result. Computed here, in a first streaming
    # pass: left lazy, every block would be held in memory until the global mean is known.
    power = da.nanmean(clean**2, axis=(-2, -1), keepdims=True).compute()
    return da.map_blocks(
        _noisy_block,
        clean,
        sigma=_noise_std(np.asarray(power), snr),
        seed=seed,
        out_dtype=out_dtype,
        dtype=out_dtype,
    )


def _blur_decimate_padded(block: np.ndarray, *, psf_y: Any, psf_x: Any, halo: int) -> np.ndarray:
    # The block is padded by the larger halo of the two axes; trim each axis to its own halo.
    trim_y, trim_x = halo - psf_y.halo, halo - psf_x.halo
    ny, nx = block.shape[-2:]
    block = block[..., trim_y : ny - trim_y, trim_x : nx - trim_x]
    return blur_decimate(block, psf_y, psf_x)


def _noise_std(power: np.ndarray, snr: float) -> np.ndarray:
    return np.sqrt(power / 10 ** (snr / 10))


def _finish(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    # finalize rounds in place: never let it touch a block that dask may hand to another task.
    return finalize(np.array(values, copy=True), dtype, None, None)


def _noisy_block(
    clean: np.ndarray,
    *,
    sigma: np.ndarray,
    seed: int,
    out_dtype: np.dtype[Any],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    location = block_info[0]["array-location"] if block_info else [(0, 0)] * clean.ndim
    origin = tuple(int(start) for start, _ in location)
    # sigma has one value per plane of the whole array: take this block's planes.
    lead = tuple(slice(start, stop) for start, stop in location[:-2])
    return _finish(add_noise(clean, sigma[lead], seed=seed, origin=origin), out_dtype)
