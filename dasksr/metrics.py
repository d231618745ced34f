"""Image quality the literature's way: PSNR and SSIM, on NumPy or chunked on Dask.

The super-resolution protocol compares the Y channel of ITU-R BT.601 YCbCr (MATLAB's
``rgb2ycbcr``) with ``scale`` pixels cropped from every border; SSIM uses an 11 x 11 Gaussian window
of standard deviation 1.5 (Wang et al. 2004). NumPy inputs give Python floats; Dask inputs give
lazy 0-d Dask arrays, computed in chunks (SSIM windows get a halo), so scenes larger than memory
can be measured. Both use scikit-image's SSIM, so they agree to rounding.

The fusion and pan-sharpening measures take NumPy ``(band, y, x)`` images of any real dtype (in
float64): with a reference, per-band RMSE and SRE (DSen2), SAM, ERGAS, UIQI (:func:`q_index`) and
Q2^n (Q4 for four bands); without one, QNR and its distortions D_lambda and D_s.
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dasksr.blockwise import downscale_blocks
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.degrade import round_half_away

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "psnr",
    "rgb2y",
    "ssim",
    "SSIM_WINDOW",
    "band_rmse",
    "sre",
    "sam",
    "ergas",
    "q_index",
    "q2n",
    "d_lambda",
    "d_s",
    "qnr",
]

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


# Multi-band fusion and pan-sharpening quality -----------------------------------------------------


def band_rmse(
    reference: ArrayLike, estimate: ArrayLike, mask: ArrayLike | None = None
) -> np.ndarray:
    """Root mean square error of every band, in the images' units.

    Parameters
    ----------
    reference, estimate : numpy.ndarray
        Images of one ``(band, y, x)`` shape, any real dtype (computed in float64).
    mask : numpy.ndarray, optional
        Boolean ``(y, x)``: only its true pixels count.

    Returns
    -------
    numpy.ndarray
        One float64 RMSE per band.
    """
    x, y, inside = _band_pair(reference, estimate, mask)
    return np.sqrt(np.mean((_pixels(x, inside) - _pixels(y, inside)) ** 2, axis=1))


def sre(reference: ArrayLike, estimate: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Signal to reconstruction error of every band, in dB (Lanaras et al. 2018, DSen2).

    Parameters
    ----------
    reference, estimate, mask
        As in :func:`band_rmse`.

    Returns
    -------
    numpy.ndarray
        ``10 * log10(mean(reference_b ** 2) / mean((reference_b - estimate_b) ** 2))`` per band:
        the mean signal power over the mean error power. ``inf`` for an exact band (``nan`` when
        that band is all zeros).

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr.metrics import sre
    >>> sre(np.full((1, 2, 2), 10.0), np.full((1, 2, 2), 11.0))  # 100 / 1
    array([20.])
    """
    x, y, inside = _band_pair(reference, estimate, mask)
    signal, error = _pixels(x, inside), _pixels(x, inside) - _pixels(y, inside)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(np.mean(signal**2, axis=1) / np.mean(error**2, axis=1))


def sam(reference: ArrayLike, estimate: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean spectral angle between the pixels' band vectors, in degrees.

    Parameters
    ----------
    reference, estimate, mask
        As in :func:`band_rmse`.

    Returns
    -------
    float
        The mean over the pixels of ``arccos(<r, e> / (|r| |e|))`` (computed as
        ``2 arctan2(|u - v|, |u + v|)`` of the unit vectors, exact also near 0, where arccos of a
        rounded cosine reads 1e-6 degrees as 0). Pixels where either vector is all zeros have no
        angle and are skipped; ``nan`` when no pixel is left.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr.metrics import sam
    >>> sam(np.array([[[1.0, 1.0]], [[0.0, 0.0]]]), np.array([[[0.0, 1.0]], [[1.0, 1.0]]]))
    67.5
    """
    x, y, inside = _band_pair(reference, estimate, mask)
    r, e = _pixels(x, inside), _pixels(y, inside)
    nr, ne = np.linalg.norm(r, axis=0), np.linalg.norm(e, axis=0)
    scored = (nr > 0) & (ne > 0)
    if not scored.any():
        return float("nan")
    u, v = r[:, scored] / nr[scored], e[:, scored] / ne[scored]
    # arccos of the cosine, computed as Kahan does: arccos loses half the digits near 0.
    angles = 2 * np.arctan2(np.linalg.norm(u - v, axis=0), np.linalg.norm(u + v, axis=0))
    return float(np.degrees(np.mean(angles)))


def ergas(
    reference: ArrayLike, estimate: ArrayLike, ratio: float, mask: ArrayLike | None = None
) -> float:
    """Relative dimensionless global error in synthesis (ERGAS, Wald 2002).

    Parameters
    ----------
    reference, estimate, mask
        As in :func:`band_rmse`.
    ratio : float
        The resolution ratio, coarse pixel size over fine pixel size: 2 for 20 m bands sharpened
        to 10 m. The formula's ``h / l`` (fine over coarse pixel size) is ``1 / ratio``.

    Returns
    -------
    float
        ``100 / ratio * sqrt(mean_b((rmse_b / mean(reference_b)) ** 2))``; lower is better.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr.metrics import ergas
    >>> ergas(np.full((1, 2, 2), 10.0), np.full((1, 2, 2), 11.0), ratio=2)  # 50 * 1 / 10
    5.0
    """
    x, y, inside = _band_pair(reference, estimate, mask)
    ratio = _positive(ratio, "ratio")
    r, e = _pixels(x, inside), _pixels(y, inside)
    rmse = np.sqrt(np.mean((r - e) ** 2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(100 / ratio * np.sqrt(np.mean((rmse / r.mean(axis=1)) ** 2)))


def q_index(
    reference: ArrayLike, estimate: ArrayLike, block: int = 32, mask: ArrayLike | None = None
) -> np.ndarray:
    """Universal image quality index (UIQI, Wang and Bovik 2002) of every band.

    Parameters
    ----------
    reference, estimate : numpy.ndarray
        As in :func:`band_rmse`; at least ``block`` pixels on each side.
    block : int
        Side of the square windows.
    mask : numpy.ndarray, optional
        Boolean ``(y, x)``: only windows that lie wholly on its true pixels count.

    Returns
    -------
    numpy.ndarray
        Per band, the mean over every ``block x block`` window inside the image (step 1, the
        ``'valid'`` windows, as Wang's ``img_qi.m``) of
        ``4 cov(x, y) mean(x) mean(y) / ((var(x) + var(y)) (mean(x) ** 2 + mean(y) ** 2))``,
        in [-1, 1] with 1 for equal windows. A window where both images are constant scores
        ``2 mean(x) mean(y) / (mean(x) ** 2 + mean(y) ** 2)``, and 1 where that is 0 / 0, as in
        ``img_qi.m`` (constant windows are found exactly, not by rounded window sums).
    """
    x, y, inside = _band_pair(reference, estimate, mask)
    return np.array([_uiqi(a, b, block, inside) for a, b in zip(x, y, strict=True)])


def q2n(reference: ArrayLike, estimate: ArrayLike, block: int = 32, shift: int = 32) -> float:
    """The hypercomplex quality index Q2^n of Garzelli and Nencini (2009): Q4 for four bands.

    Parameters
    ----------
    reference, estimate : numpy.ndarray
        As in :func:`band_rmse`; at least ``block`` pixels on each side.
    block : int
        Side of the square windows.
    shift : int
        Step between the windows (``block`` for tiles side by side, as the toolboxes default).

    Returns
    -------
    float
        The mean over the windows of ``|cov(z, z')| / (s s') * 2 s s' / (s ** 2 + s' ** 2) *
        2 |m| |m'| / (|m| ** 2 + |m'| ** 2)`` in [0, 1], where ``z`` and ``z'`` are the pixels
        as hypercomplex numbers (one band a component), ``m`` their window means, ``s`` their
        standard deviations (``s ** 2 = mean(|z - m| ** 2)``) and
        ``cov(z, z') = mean((z - m) conj(z' - m'))``.

    Notes
    -----
    The bands are padded with zero bands to the next power of two ``2 ** k`` (6 to 8, as the
    MATLAB toolboxes do) and multiplied as Cayley-Dickson hypercomplex numbers,
    ``(a, b)(c, d) = (ac - conj(d) b, da + b conj(c))``: complex numbers, Hamilton's quaternions
    (components 1, i, j, k), octonions. The windows start at the top-left corner every ``shift``
    pixels and only those wholly inside the image count (the toolboxes mirror-pad the image to
    a whole number of windows). Unlike the toolboxes' ``q2n.m`` the windows are not first
    normalised by the reference's block mean and standard deviation, nor rounded to uint16: this is
    the index as the paper defines it, so for one band it is the mean of ``|UIQI|`` over the same
    windows (:func:`q_index`), and a window where both images are constant scores as there.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr.metrics import q2n
    >>> a = np.random.default_rng(0).random((4, 16, 16))
    >>> q2n(a, a, block=8, shift=8)
    1.0
    """
    x, y, _ = _band_pair(reference, estimate, None)
    block = _positive(block, "block", True, min(x.shape[1:]))
    shift = _positive(shift, "shift", whole=True)
    components = 1 << (x.shape[0] - 1).bit_length()
    padding = ((0, components - x.shape[0]), (0, 0), (0, 0))
    tiles = [
        sliding_window_view(np.pad(a, padding), (block, block), axis=(1, 2))[:, ::shift, ::shift]
        for a in (x, y)
    ]
    # A few million numbers per step: rows of windows, cut into runs when a row is long.
    run = max(1, (1 << 21) // (components * block * block))
    scores = [
        _q2n_windows(tiles[0][:, row, start : start + run], tiles[1][:, row, start : start + run])
        for row in range(tiles[0].shape[1])
        for start in range(0, tiles[0].shape[2], run)
    ]
    return float(np.mean(np.concatenate(scores)))


def d_lambda(fused: ArrayLike, coarse: ArrayLike, p: float = 1, block: int = 32) -> float:
    """Spectral distortion D_lambda of QNR (Alparone et al. 2008), without a reference.

    Parameters
    ----------
    fused, coarse : numpy.ndarray
        The sharpened ``(band, y, x)`` image and the same bands as measured (at least ``block``
        pixels on each side); their grids need not match.
    p : float
        Exponent that stresses large differences.
    block : int
        Side of the UIQI windows (:func:`q_index`), the same on both grids.

    Returns
    -------
    float
        ``(mean over band pairs l != r of |Q(fused_l, fused_r) - Q(coarse_l, coarse_r)| ** p)
        ** (1 / p)``, with ``Q`` the UIQI: 0 when fusion kept the bands' mutual similarities.
    """
    f, c = _as_bands(fused, "fused"), _as_bands(coarse, "coarse")
    if f.shape[0] != c.shape[0] or f.shape[0] < 2:
        raise InvalidArgumentError(
            f"fused has {f.shape[0]} bands and coarse {c.shape[0]}: D_lambda needs the same bands, "
            "at least two"
        )
    p = _positive(p, "p")
    bands = f.shape[0]
    total = sum(
        abs(_uiqi(f[i], f[j], block) - _uiqi(c[i], c[j], block)) ** p
        for i in range(bands)
        for j in range(i + 1, bands)
    )
    return float((2 * total / (bands * (bands - 1))) ** (1 / p))


def d_s(
    fused: ArrayLike,
    coarse: ArrayLike,
    guide: ArrayLike,
    ratio: int,
    q: float = 1,
    block: int = 32,
    degraded_guide: ArrayLike | None = None,
) -> float:
    """Spatial distortion D_s of QNR (Alparone et al. 2008), without a reference.

    Parameters
    ----------
    fused, coarse : numpy.ndarray
        The sharpened ``(band, y, x)`` image and the same bands as measured, on a grid ``ratio``
        times coarser (``fused`` may be larger: it is cropped at the bottom and right).
    guide : numpy.ndarray
        The fine bands that guided the fusion, ``(g, y, x)`` or ``(y, x)`` on ``fused``'s grid;
        the mean of several is the panchromatic-like image.
    ratio : int
        Coarse pixel size over fine pixel size (2 for 20 m bands sharpened to 10 m).
    q : float
        Exponent that stresses large differences.
    block : int
        Side of the UIQI windows (:func:`q_index`), the same on both grids.
    degraded_guide : numpy.ndarray, optional
        The guide as the coarse sensor sees it, on ``coarse``'s grid (bands averaged as in
        ``guide``). By default, ``guide`` averaged over ``ratio x ratio`` blocks: pass one
        degraded with the coarse sensor's MTF where you have it, as the protocol asks.

    Returns
    -------
    float
        ``(mean over bands b of |Q(fused_b, guide) - Q(coarse_b, degraded_guide)| ** q)
        ** (1 / q)``, with ``Q`` the UIQI: 0 when fusion kept each band's similarity to the guide.
    """
    f, c, pan, pan_low = _qnr_inputs(fused, coarse, guide, ratio, degraded_guide)
    q = _positive(q, "q")
    gaps = [abs(_uiqi(f[b], pan, block) - _uiqi(c[b], pan_low, block)) ** q for b in range(len(f))]
    return float(np.mean(gaps) ** (1 / q))


def qnr(
    fused: ArrayLike,
    coarse: ArrayLike,
    guide: ArrayLike,
    ratio: int,
    alpha: float = 1,
    beta: float = 1,
    block: int = 32,
    degraded_guide: ArrayLike | None = None,
) -> dict[str, float]:
    """Quality with no reference (QNR, Alparone et al. 2008) and its two distortions.

    Parameters
    ----------
    fused, coarse, guide, ratio, block, degraded_guide
        As in :func:`d_s` (``fused`` cropped to ``ratio`` times ``coarse``'s shape for both
        distortions).
    alpha, beta : float
        Weights of the spectral and the spatial distortion.

    Returns
    -------
    dict
        ``{"qnr": (1 - d_lambda) ** alpha * (1 - d_s) ** beta, "d_lambda": ..., "d_s": ...}``,
        the distortions with exponents ``p = q = 1``; QNR is 1 at best.
    """
    f, c, pan, pan_low = _qnr_inputs(fused, coarse, guide, ratio, degraded_guide)
    dl, ds = d_lambda(f, c, block=block), d_s(f, c, pan, ratio, block=block, degraded_guide=pan_low)
    return {"qnr": float((1 - dl) ** alpha * (1 - ds) ** beta), "d_lambda": dl, "d_s": ds}


def _as_bands(image: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.dtype.kind not in "uif" or 0 in a.shape:
        raise InvalidArgumentError(
            f"{name} is {a.dtype} {a.shape}: pass a real (band, y, x) array (a[None] for one band)"
        )
    return a.astype(np.float64)


def _band_pair(
    reference: ArrayLike, estimate: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Both images in float64, checked to share one shape, and the mask checked."""
    x, y = _as_bands(reference, "reference"), _as_bands(estimate, "estimate")
    if x.shape != y.shape:
        raise InvalidArgumentError(
            f"reference is {x.shape} but estimate is {y.shape}: pass images of the same shape"
        )
    if mask is None:
        return x, y, None
    inside = np.asarray(mask)
    if inside.dtype != bool or inside.shape != x.shape[1:]:
        raise InvalidArgumentError(
            f"mask must be a boolean (y, x) array of shape {x.shape[1:]}, not {inside.dtype} "
            f"{inside.shape}"
        )
    if not inside.any():
        raise InvalidArgumentError("mask has no true pixel: there is nothing to score")
    return x, y, inside


def _pixels(image: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
    """The ``(band, pixel)`` values that count."""
    return image.reshape(len(image), -1) if inside is None else image[:, inside]


def _positive(value: Any, name: str, whole: bool = False, top: float = np.inf) -> Any:
    """``value`` checked to be a finite number (an integer if ``whole``) in (0, top]."""
    kind = numbers.Integral if whole else numbers.Real
    number = isinstance(value, kind) and not isinstance(value, bool)
    if number and 0 < value <= top and np.isfinite(value):
        return int(value) if whole else float(value)
    most = f" up to {top:g}, the images' smaller side" if top < np.inf else ""
    raise InvalidArgumentError(
        f"{name}={value!r} must be a positive {'integer' if whole else 'number'}{most}"
    )


def _windows(plane: np.ndarray, block: int, method: str = "uniform") -> np.ndarray:
    """A box statistic (mean, minimum or maximum) of every window wholly inside ``plane``."""
    from scipy import ndimage

    statistic = getattr(ndimage, f"{method}_filter")(plane, size=block, mode="nearest")
    low = block // 2  # scipy centres a window of side n on its pixel n // 2
    return statistic[low : low + plane.shape[0] - block + 1, low : low + plane.shape[1] - block + 1]


def _uiqi_map(x: np.ndarray, y: np.ndarray, block: int) -> np.ndarray:
    """The UIQI of every ``block x block`` window wholly inside two planes (step 1)."""
    # Moments of the images less their means: the window variances lose less to rounding.
    x0, y0 = x - x.mean(), y - y.mean()
    mx, my = _windows(x0, block), _windows(y0, block)
    vx, vy = _windows(x0 * x0, block) - mx * mx, _windows(y0 * y0, block) - my * my
    cov = _windows(x0 * y0, block) - mx * my
    mx, my = mx + x.mean(), my + y.mean()
    # Windows where both images are constant, found exactly; they score by their means alone.
    top_x, top_y = _windows(x, block, "maximum"), _windows(y, block, "maximum")
    flat = (top_x == _windows(x, block, "minimum")) & (top_y == _windows(y, block, "minimum"))
    mx, my = np.where(flat, top_x, mx), np.where(flat, top_y, my)
    variance = np.where(flat, 0.0, vx + vy)
    square = mx * mx + my * my
    with np.errstate(divide="ignore", invalid="ignore"):
        luminance = np.where(square != 0, 2 * mx * my / square, 1.0)
        return np.where(variance * square != 0, 4 * cov * mx * my / (variance * square), luminance)


def _uiqi(x: np.ndarray, y: np.ndarray, block: int, inside: np.ndarray | None = None) -> float:
    """Mean UIQI of two planes over the windows wholly inside the image (and ``inside``)."""
    block = _positive(block, "block", True, min(x.shape))
    if inside is None:
        return float(_uiqi_map(x, y, block).mean())
    # Pixels outside do not count: zeros there keep NaN fill out of the running window sums.
    x, y = np.where(inside, x, 0.0), np.where(inside, y, 0.0)
    scores = _uiqi_map(x, y, block)[_windows(inside.astype(np.uint8), block, "minimum") == 1]
    if scores.size == 0:
        raise InvalidArgumentError(f"no {block} x {block} window lies wholly inside mask")
    return float(scores.mean())


def _conjugate(z: np.ndarray) -> np.ndarray:
    """The hypercomplex conjugate of components on axis 0: every imaginary part negated."""
    return np.concatenate([z[:1], -z[1:]])


def _cayley_dickson_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product of hypercomplex numbers with their ``2 ** k`` components on axis 0.

    ``(p, q)(r, s) = (pr - conj(s) q, sp + q conj(r))``, halves multiplied recursively.
    """
    if len(a) == 1:
        return a * b
    h = len(a) // 2
    p, q, r, s = a[:h], a[h:], b[:h], b[h:]
    first = _cayley_dickson_product(p, r) - _cayley_dickson_product(_conjugate(s), q)
    second = _cayley_dickson_product(s, p) + _cayley_dickson_product(q, _conjugate(r))
    return np.concatenate([first, second])


def _q2n_windows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Q2^n of a run of windows: ``(component, window, block, block)`` to one score a window."""
    x, y = x.reshape(*x.shape[:2], -1), y.reshape(*y.shape[:2], -1)
    mx, my = x.mean(axis=-1), y.mean(axis=-1)
    dx, dy = x - mx[..., None], y - my[..., None]
    cov = np.linalg.norm(_cayley_dickson_product(dx, _conjugate(dy)).mean(axis=-1), axis=0)
    variance = (dx * dx).sum(axis=0).mean(axis=-1) + (dy * dy).sum(axis=0).mean(axis=-1)
    # Windows where both images are constant, found exactly; they score by their means alone.
    flat = np.all((x.max(axis=-1) == x.min(axis=-1)) & (y.max(axis=-1) == y.min(axis=-1)), axis=0)
    mx, my = np.where(flat, x[..., 0], mx), np.where(flat, y[..., 0], my)
    variance = np.where(flat, 0.0, variance)
    nx, ny = np.linalg.norm(mx, axis=0), np.linalg.norm(my, axis=0)
    square = nx * nx + ny * ny
    with np.errstate(divide="ignore", invalid="ignore"):
        luminance = np.where(square != 0, 2 * nx * ny / square, 1.0)
        return np.where(variance * square != 0, 4 * cov * nx * ny / (variance * square), luminance)


def _qnr_inputs(
    fused: ArrayLike, coarse: ArrayLike, guide: ArrayLike, ratio: int, low: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fused (cropped), coarse, and the pan-like guide on the fine and on the coarse grid."""
    f, c = _as_bands(fused, "fused"), _as_bands(coarse, "coarse")
    ratio = _positive(ratio, "ratio", whole=True)
    fine = (ratio * c.shape[1], ratio * c.shape[2])
    if f.shape[0] != c.shape[0] or f.shape[1] < fine[0] or f.shape[2] < fine[1]:
        raise InvalidArgumentError(
            f"fused is {f.shape} and coarse {c.shape}: fused needs coarse's bands on at least "
            f"ratio={ratio} times its grid, {fine[0]} x {fine[1]}"
        )
    pan = _pan(guide, "guide", f.shape[1:])
    f, pan = f[:, : fine[0], : fine[1]], pan[: fine[0], : fine[1]]
    if low is None:
        return f, c, pan, pan.reshape(c.shape[1], ratio, c.shape[2], ratio).mean(axis=(1, 3))
    return f, c, pan, _pan(low, "degraded_guide", c.shape[1:])


def _pan(guide: ArrayLike, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A ``(y, x)`` or ``(g, y, x)`` guide of the given grid as one plane: the mean of its bands."""
    g = _as_bands(np.asarray(guide)[None] if np.ndim(guide) == 2 else guide, name)
    if g.shape[1:] != shape:
        raise InvalidArgumentError(
            f"{name} is {g.shape[1:]} pixels but needs {shape[0]} x {shape[1]} to match its grid"
        )
    return g.mean(axis=0)
