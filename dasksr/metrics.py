"""Image quality the literature's way: PSNR and SSIM, on NumPy or chunked on Dask.

The super-resolution protocol compares the Y channel of ITU-R BT.601 YCbCr (MATLAB's
``rgb2ycbcr``) with ``scale`` pixels cropped from every border; SSIM uses an 11 x 11 Gaussian window
of standard deviation 1.5 (Wang et al. 2004). NumPy inputs give Python floats; Dask inputs give
lazy 0-d Dask arrays, computed in chunks (SSIM windows get a halo), so scenes larger than memory
can be measured. Both use scikit-image's SSIM, so they agree to rounding.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from dasksr.blockwise import downscale_blocks
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.degrade import round_half_away

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["psnr", "rgb2y", "ssim", "SSIM_WINDOW"]

#: Side of the SSIM window: scikit-image's Gaussian (sigma 1.5, truncated at 3.5 sigma) is 11 wide.
SSIM_WINDOW = 11
_SSIM_HALO = SSIM_WINDOW // 2
_SSIM_OPTIONS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}

# ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it, for RGB in [0, 1]: Y in [16, 235] / 255.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def rgb2y(rgb: Any, *, axis: int = 0, quantize: bool = True) -> Any:
    """The Y (luma) channel of BT.601 YCbCr, as MATLAB's ``rgb2ycbcr`` computes it.

    Parameters
    ----------
    rgb : numpy.ndarray or dask.array.Array
        RGB image with the three bands on ``axis``: uint8 in [0, 255], or floats in [0, 1].
    axis : int
        The band axis: 0 for dasksr's ``(band, y, x)``, -1 for ``(y, x, band)`` images.
    quantize : bool
        For uint8 input, round Y to integers (halves away from zero) as MATLAB does, since its
        ``rgb2ycbcr`` returns uint8 for uint8 input. The published Set5/Set14 numbers are computed
        that way. Ignored for floats.

    Returns
    -------
    numpy.ndarray or dask.array.Array of float64
        ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` in [16, 235] for uint8 input;
        ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for floats.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import rgb2y
    >>> rgb2y(np.array([[[255]], [[255]], [[255]]], dtype=np.uint8))
    array([[235.]])
    >>> rgb2y(np.array([[[255]], [[0]], [[0]]], dtype=np.uint8), quantize=False)
    array([[81.481]])
    """
    if rgb.ndim < 1 or rgb.shape[axis] != 3:
        raise InvalidArgumentError(
            f"rgb has shape {rgb.shape}: it needs 3 bands on axis {axis} (set axis= to the band axis)"
        )
    if rgb.dtype == np.uint8:
        scale = 1 / 255
    elif rgb.dtype.kind == "f":
        scale = 1.0
    else:
        raise InvalidArgumentError(
            f"rgb has dtype {rgb.dtype}: pass uint8 in [0, 255] or floats in [0, 1]"
        )
    xp = da if isinstance(rgb, da.Array) else np
    bands = xp.moveaxis(rgb, axis, 0).astype(np.float64)
    weighted = sum(w * bands[i] for i, w in enumerate(_Y_WEIGHTS))
    if scale == 1.0:
        return (_Y_OFFSET + weighted) / 255
    y = _Y_OFFSET + weighted * scale
    if not quantize:
        return y
    if xp is da:
        return y.map_blocks(round_half_away, dtype=np.float64)
    return round_half_away(y)


def psnr(
    reference: Any,
    estimate: Any,
    *,
    crop: int = 0,
    data_range: float | None = None,
    y_channel: bool = False,
    mask: ArrayLike | None = None,
) -> Any:
    """Peak signal-to-noise ratio of ``estimate`` against ``reference``, in dB.

    Parameters
    ----------
    reference, estimate : numpy.ndarray or dask.array.Array
        Images of the same shape, spatial axes last (``(y, x)`` or ``(band, y, x)``).
    crop : int
        Pixels dropped from every border first (the protocol crops ``scale``).
    data_range : float, optional
        The peak value. Default: the whole range of ``reference``'s integer dtype (255 for uint8,
        also with ``y_channel`` on uint8 RGB; 65535 for uint16 and int16). Required for
        floating-point images.
    y_channel : bool
        For 3-band images (bands on axis 0), compare the Y channel of :func:`rgb2y`; a single-band
        image is compared as it is. This is the super-resolution protocol.
    mask : numpy.ndarray, optional
        Boolean, of ``reference``'s shape: only its true pixels (inside the crop) are scored, for
        scenes with fill. NumPy images only, without ``y_channel``.

    Returns
    -------
    float or dask.array.Array
        ``10 * log10(data_range ** 2 / MSE)``, the MSE pooled over all bands (and the pixels of
        ``mask``); ``inf`` for equal images. A lazy 0-d Dask array when either input is a Dask
        array.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import psnr
    >>> a = np.zeros((16, 16), dtype=np.uint8)
    >>> round(psnr(a, a + 5), 4)  # MSE = 25
    34.1514
    >>> b, scored = a + 5, np.ones((16, 16), dtype=bool)
    >>> b[:8], scored[:8] = 255, False  # fill, left out of the score
    >>> round(psnr(a, b, mask=scored), 4)
    34.1514
    """
    x, y, peak = _prepare(
        reference, estimate, crop=crop, data_range=data_range, y_channel=y_channel
    )
    squared = (x.astype(np.float64) - y.astype(np.float64)) ** 2
    if mask is not None:
        squared = squared[_cropped_mask(mask, reference, crop, y_channel)]
    mse = squared.mean()
    if isinstance(mse, da.Array):
        return da.map_blocks(_psnr_from_mse, mse, peak, dtype=np.float64)
    return float(_psnr_from_mse(mse, peak))


def _cropped_mask(mask: Any, reference: Any, crop: int, y_channel: bool) -> np.ndarray:
    """`psnr`'s ``mask``, checked and cropped as the images are."""
    mask = np.asarray(mask)
    if isinstance(reference, da.Array) or y_channel:
        raise InvalidArgumentError("mask= scores NumPy images as they are: no Dask, no y_channel")
    if mask.dtype != bool or mask.shape != np.shape(reference):
        raise InvalidArgumentError(
            f"mask must be boolean of the images' shape {np.shape(reference)}, not {mask.dtype} "
            f"{mask.shape}"
        )
    ny, nx = mask.shape[-2:]
    return mask[..., crop : ny - crop, crop : nx - crop]


def ssim(
    reference: Any,
    estimate: Any,
    *,
    data_range: float | None = None,
    crop: int = 0,
    y_channel: bool = False,
) -> float | da.Array:
    """Mean structural similarity (Wang et al. 2004) of ``estimate`` against ``reference``.

    Parameters
    ----------
    reference, estimate : numpy.ndarray or dask.array.Array
        Images of the same shape, spatial axes last; at least 11 x 11 after ``crop``.
    crop : int
        Pixels dropped from every border first (the protocol crops ``scale``).
    data_range : float, optional
        As in :func:`psnr`.
    y_channel : bool
        As in :func:`psnr`.

    Returns
    -------
    float or dask.array.Array
        The SSIM map averaged over every window that fits inside the (cropped) image, and over the
        bands. A lazy 0-d Dask array when either input is a Dask array.

    Notes
    -----
    The window is an 11 x 11 Gaussian of standard deviation 1.5, the constants are K1 = 0.01 and
    K2 = 0.03 and the variances are population variances: scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``,
    which equals Wang's ``ssim_index.m`` (its ``'valid'`` filtering). Dask inputs are processed
    blockwise with a halo of 5 pixels and the same scikit-image function on every block.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import ssim
    >>> a = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    >>> ssim(a, a)
    1.0
    """
    x, y, peak = _prepare(
        reference, estimate, crop=crop, data_range=data_range, y_channel=y_channel
    )
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise InvalidArgumentError(
            f"images are {x.shape[-2]} x {x.shape[-1]} pixels after crop={crop}: SSIM needs at "
            f"least {SSIM_WINDOW} x {SSIM_WINDOW}; crop less or pass larger images"
        )
    if isinstance(x, da.Array):
        return _ssim_dask(x, y, peak)
    planes = zip(x.reshape(-1, *x.shape[-2:]), y.reshape(-1, *y.shape[-2:]), strict=True)
    values = [_ssim_plane(a, b, peak)[0] for a, b in planes]
    return float(np.mean(values))


def _prepare(
    reference: Any, estimate: Any, *, crop: int, data_range: float | None, y_channel: bool
) -> tuple[Any, Any, float]:
    """Validate, convert to Y if asked and crop; return the peak value too.

    The pixels keep their dtype (Y is float64): a Dask SSIM holds halo strips of its inputs in
    memory, and uint8 strips are eight times smaller than float64 ones.
    """
    lazy = isinstance(reference, da.Array) or isinstance(estimate, da.Array)
    xp: Any = da if lazy else np
    x, y = xp.asarray(reference), xp.asarray(estimate)
    if x.shape != y.shape:
        raise InvalidArgumentError(
            f"reference is {x.shape} but estimate is {y.shape}: compare images of the same shape"
        )
    if x.ndim < 2 or x.dtype.kind not in "uif" or y.dtype.kind not in "uif":
        raise InvalidArgumentError(
            f"images have shape {x.shape} and dtypes {x.dtype}, {y.dtype}: pass numeric images "
            "with at least (y, x) axes"
        )
    if not (isinstance(crop, int) and crop >= 0) or 2 * crop >= min(x.shape[-2:]):
        raise InvalidArgumentError(
            f"crop={crop!r} must be a non-negative integer smaller than half the image "
            f"({x.shape[-2]} x {x.shape[-1]})"
        )
    peak = _data_range(x.dtype, data_range)
    if y_channel and x.ndim == 3 and x.shape[0] == 3:
        x, y = rgb2y(x), rgb2y(y)
    elif y_channel and not (x.ndim == 2 or (x.ndim == 3 and x.shape[0] == 1)):
        raise InvalidArgumentError(
            f"y_channel=True needs RGB (3, y, x) or single-band images, not shape {x.shape}"
        )
    ny, nx = x.shape[-2:]
    window = (..., slice(crop, ny - crop), slice(crop, nx - crop))
    x, y = x[window], y[window]
    if lazy:
        y = y.rechunk(x.chunks)
    return x, y, peak


def _data_range(dtype: np.dtype[Any], data_range: float | None) -> float:
    if data_range is not None:
        if not (np.isfinite(data_range) and data_range > 0):
            raise InvalidArgumentError(f"data_range={data_range!r} must be a positive number")
        return float(data_range)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    raise InvalidArgumentError(
        f"images have dtype {dtype}: pass data_range= (e.g. 1.0 for reflectance in [0, 1])"
    )


def _psnr_from_mse(mse: Any, peak: float) -> Any:
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10 * np.log10(peak**2 / mse))


def _ssim_dask(x: da.Array, y: da.Array, peak: float) -> da.Array:
    """Blockwise SSIM map with a halo, averaged over the windows inside the image."""
    ssim_map = downscale_blocks(
        partial(_ssim_map_block, peak=peak), x, y, halo=_SSIM_HALO, scale=1, boundary="reflect"
    )
    ny, nx = x.shape[-2:]
    inside = (..., slice(_SSIM_HALO, ny - _SSIM_HALO), slice(_SSIM_HALO, nx - _SSIM_HALO))
    return ssim_map[inside].mean()


def _ssim_map_block(x: np.ndarray, y: np.ndarray, *, peak: float) -> np.ndarray:
    """SSIM map of the unpadded pixels of one padded block (every plane of it)."""
    h = _SSIM_HALO
    out = np.empty((*x.shape[:-2], x.shape[-2] - 2 * h, x.shape[-1] - 2 * h), dtype=np.float64)
    for index in np.ndindex(*x.shape[:-2]):
        out[index] = _ssim_plane(x[index], y[index], peak)[1][h:-h, h:-h]
    return out


def _ssim_plane(x: np.ndarray, y: np.ndarray, peak: float) -> tuple[float, np.ndarray]:
    """scikit-image's mean SSIM and full SSIM map of two planes, computed in float64."""
    from skimage.metrics import structural_similarity

    mean, full = structural_similarity(
        x.astype(np.float64), y.astype(np.float64), data_range=peak, full=True, **_SSIM_OPTIONS
    )
    return float(mean), full
