"""Consistency: how far an output, taken back to its input's grid, is from the input.

A super-resolved output ``y`` of an input ``x`` is consistent when ``degrade(y) == x``, with
``degrade`` the degradation the method assumes (its own model of how ``x`` was made from the
scene). The residual ``x - degrade(y)``, per input pixel, shows where a method invented detail
that the data do not support; its RMS is one number per job.

The model of each method (`method_degradation`):

- interpolation (``nearest``, ``bilinear``, ``bicubic``, ``lanczos`` and any method without a
  record): pixel-is-area, an input pixel is the mean of the ``scale x scale`` output pixels it
  covers (`dasksr.kernels.degrade.area_psf`);
- a learned method: the degradation in its JSON record, ``dasksr.degrade_sensor``'s Gaussian PSF
  (the middle of the sigma range it was trained on, `dasksr.kernels.degrade.sensor_psf`) or
  MATLAB's antialiased bicubic ``imresize`` (`dasksr.kernels.degrade.bicubic_psf`);
- ``fuse``: the Gaussian PSF of ``fuse_psf_sigma`` (or, when it fell back to one image, that
  method's model), against the reference frame;
- ``sharpen``: each band's MTF Gaussian on the coarse grid (built by :mod:`dasksr.guided`).

The output is degraded blockwise with a halo of the model's reach (the half-sample symmetric
extension past the image edges, as every method pads), so the residual does not depend on the
chunking; it is lazy and shares the output's blocks, so a job computes it beside its write. An
input pixel is not measured (NaN) where it or an output pixel under the model's reach is invalid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.api import raster_transform, spatial_dims
from dasksr.blockwise import downscale_blocks, pad_block
from dasksr.kernels.degrade import SensorPSF, area_psf, bicubic_psf, blur_decimate, sensor_psf
from dasksr.methods import Method, get_method
from dasksr.sources import source_window
from dasksr.windows import WindowArray

__all__ = [
    "Check",
    "Degradation",
    "degrade_output",
    "fuse_check",
    "method_degradation",
    "residual",
    "residual_raster",
    "rms",
    "upscale_check",
]

_GAUSSIAN = re.compile(r"Gaussian PSF sigma (?:U\(\s*([\d.]+)\s*,\s*([\d.]+)\s*\)|([\d.]+))")


@dataclass(frozen=True)
class Degradation:
    """A method's model of how its input was made from the scene.

    ``kind`` is ``'area'`` (the mean of the covered pixels), ``'gaussian'`` (a Gaussian PSF of
    ``sigma`` input pixels, as `dasksr.degrade_sensor`) or ``'bicubic'`` (MATLAB's antialiased
    ``imresize``); then decimation by the scale.

    Examples
    --------
    >>> str(Degradation("gaussian", 0.5))
    'Gaussian PSF sigma 0.5 input px'
    """

    kind: str
    sigma: float = 0.0

    def psf(self, scale: int, shift: float = 0.0) -> SensorPSF:
        """The 1-D taps of one axis for ``scale`` (``shift`` in input pixels, Gaussian only)."""
        if self.kind == "gaussian":
            return sensor_psf(scale, self.sigma, shift)
        if shift:
            raise ValueError(f"a shifted grid needs a Gaussian model, not {self.kind}")
        return area_psf(scale) if self.kind == "area" else bicubic_psf(scale)

    def __str__(self) -> str:
        if self.kind == "gaussian":
            return f"Gaussian PSF sigma {self.sigma:g} input px"
        return "area mean" if self.kind == "area" else "bicubic imresize"


def method_degradation(method: str | Method, scale: int) -> Degradation:
    """The degradation that ``method`` assumes at ``scale`` (see the module's notes).

    Examples
    --------
    >>> str(method_degradation("bicubic", 2)), str(method_degradation("cnn", 2))
    ('area mean', 'bicubic imresize')
    """
    m = get_method(method)
    network = getattr(m.block, "networks", {}).get(scale)
    record = getattr(getattr(network, "record", None), "record", None) or {}
    text = str(record.get("degradation", ""))
    found = _GAUSSIAN.search(text)
    if found:
        low, high, single = found.groups()
        sigma = float(single) if single else (float(low) + float(high)) / 2
        return Degradation("gaussian", sigma)
    if "imresize" in text:
        return Degradation("bicubic")
    return Degradation("area")


def _as_float(values: np.ndarray, nodata: float | None) -> np.ndarray:
    out = np.array(values, dtype=np.float64, copy=True)
    if nodata is not None and not math.isnan(nodata):
        out[values == nodata] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def _degrade_padded(
    block: np.ndarray, *, psf_y: SensorPSF, psf_x: SensorPSF, halo: int, nodata: float | None
) -> np.ndarray:
    trim_y, trim_x = halo - psf_y.halo, halo - psf_x.halo
    ny, nx = block.shape[-2:]
    values = block[..., trim_y : ny - trim_y, trim_x : nx - trim_x]
    if not _all_valid(values, nodata):
        values = _as_float(values, nodata)
    return blur_decimate(values, psf_y, psf_x)


def _all_valid(values: np.ndarray, nodata: float | None) -> bool:
    """Whether an integer block holds no ``nodata`` (then it needs no float copy with NaNs)."""
    if values.dtype.kind not in "ui":
        return False
    if nodata is None or math.isnan(nodata):
        return True
    info = np.iinfo(values.dtype)
    return not (info.min <= nodata <= info.max and bool((values == nodata).any()))


def degrade_output(
    fine: Any,
    scale: int,
    psfs: tuple[SensorPSF, SensorPSF],
    *,
    nodata: float | None = None,
) -> Any:
    """``fine`` blurred and decimated by ``psfs`` (``(y, x)`` taps), float64, NaN where the taps
    read an invalid pixel; blockwise for Dask (equal to the whole-image result), whole for NumPy.

    The spatial size of ``fine`` must be a multiple of ``scale``.
    """
    psf_y, psf_x = psfs
    halo = max(psf_y.halo, psf_x.halo)
    kernel = partial(_degrade_padded, psf_y=psf_y, psf_x=psf_x, halo=halo, nodata=nodata)
    if isinstance(fine, da.Array):
        return downscale_blocks(kernel, fine, halo=halo, scale=scale, boundary="reflect")
    return kernel(pad_block(np.asarray(fine), halo, "reflect"))


def residual(
    fine: Any,
    coarse: Any,
    scale: int,
    psfs: Sequence[tuple[SensorPSF, SensorPSF]],
    *,
    nodata: float | None = None,
    coarse_nodata: float | None = None,
    dtype: Any = np.float64,
) -> Any:
    """``coarse - degrade(fine)`` on the coarse grid, NaN where not measured: computed in
    float64, then given in ``dtype`` (float64, or float32 as a raster stores it).

    ``psfs`` holds one ``(y, x)`` pair for every plane of the leading axis (a band's own MTF), or
    one pair for all. ``fine``'s spatial size is ``scale`` times ``coarse``'s. With a lazy
    ``fine``, ``coarse`` may be a `dasksr.windows.WindowArray` (a window of the input's source,
    `dasksr.sources.source_window`): each block's task then reads its coarse block itself.
    """
    lazy = isinstance(fine, da.Array)
    if len(psfs) == 1 or fine.ndim == 2:
        degraded = degrade_output(fine, scale, psfs[0], nodata=nodata)
    else:
        planes = [degrade_output(fine[b], scale, p, nodata=nodata) for b, p in enumerate(psfs)]
        degraded = da.stack(planes) if lazy else np.stack(planes)
    if lazy and isinstance(coarse, WindowArray):
        # Each task reads its own coarse block: no read task that the scheduler could place on
        # another worker than the block's output (and then send), and the tiles are the ones
        # the output's task just decoded.
        read = partial(_difference_read, window=coarse, nodata=coarse_nodata, dtype=dtype)
        return da.map_blocks(read, degraded, dtype=dtype)
    if lazy:
        if not isinstance(coarse, da.Array):
            coarse = da.from_array(np.asarray(coarse), chunks=degraded.chunks)
        elif coarse.chunks != degraded.chunks:
            coarse = coarse.rechunk(degraded.chunks)
        return da.map_blocks(_difference, coarse, degraded, coarse_nodata, dtype, dtype=dtype)
    return _difference(np.asarray(coarse), degraded, coarse_nodata, dtype)


def _difference_read(
    degraded: np.ndarray,
    *,
    window: WindowArray,
    nodata: float | None,
    dtype: Any,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """`_difference` of the block of ``window`` under ``degraded`` (read here)."""
    assert block_info is not None
    where = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
    return _difference(np.asarray(window[where]), degraded, nodata, dtype)


def _difference(
    coarse: np.ndarray, degraded: np.ndarray, nodata: float | None, dtype: Any = np.float64
) -> np.ndarray:
    """``coarse - degraded`` computed in float64 and stored in ``dtype``, NaN where ``coarse`` is
    ``nodata`` or not finite; an integer block without ``nodata`` is taken as it is (no masking
    passes)."""
    out = np.empty(np.broadcast_shapes(coarse.shape, degraded.shape), dtype=dtype)
    if not _all_valid(coarse, nodata):
        coarse = _as_float(coarse, nodata)
    return np.subtract(coarse, degraded, out=out, dtype=np.float64, casting="unsafe")


def rms(values: Any) -> Any:
    """The root mean square of the finite ``values`` (lazy for Dask); NaN when there are none."""
    if isinstance(values, da.Array):
        # Each block gives its (sum of squares, count), on a new leading axis of two.
        ones = tuple((1,) * len(c) for c in values.chunks)
        parts = da.map_blocks(
            _block_sums, values, new_axis=0, chunks=((2,), *ones), dtype=np.float64
        )
        sums = parts.sum(axis=tuple(range(1, parts.ndim)))
        return da.map_blocks(_rms_of, sums, drop_axis=0, dtype=np.float64)
    return _rms_of(_block_sums(np.asarray(values)).reshape(2))


def _block_sums(values: np.ndarray) -> np.ndarray:
    """``[sum of squares, count]`` of the finite ``values`` (in float64), shaped ``(2, 1, .., 1)``."""
    values = np.asarray(values)
    total, count = float(np.square(values, dtype=np.float64).sum()), values.size
    if not math.isfinite(total):  # NaN and infinities carry into the sum: leave them out
        finite = values[np.isfinite(values)]
        total, count = float(np.square(finite, dtype=np.float64).sum()), finite.size
    out = np.empty((2,) + (1,) * values.ndim, dtype=np.float64)
    out.flat[:] = (total, float(count))
    return out


def _rms_of(sums: np.ndarray) -> np.ndarray:
    total, count = np.asarray(sums, dtype=np.float64)
    return np.asarray(math.sqrt(total / count) if count else math.nan)


@dataclass(frozen=True)
class Check:
    """The consistency of a job's output: the lazy residual on the input grid, georeferenced
    like the input (float32, NaN where not measured), and the model in words."""

    residual: xr.DataArray
    model: str

    def rms(self) -> Any:
        """The lazy RMS of the residual (`rms`), of its float32 values."""
        return rms(self.residual.data)


def residual_raster(values: Any, like: xr.DataArray, transform: Any = None) -> xr.DataArray:
    """``values`` (float) as a float32 DataArray on the grid of ``like`` (its dims, coordinates,
    CRS; ``transform`` for a window of it), nodata NaN."""
    ydim, xdim = spatial_dims(like)
    out = xr.DataArray(values.astype(np.float32), dims=like.dims, name="consistency")
    lead = [d for d in like.dims if d not in (ydim, xdim)]
    for d in lead:
        if d in like.coords:
            out = out.assign_coords({d: like[d].values})
    transform = raster_transform(like) if transform is None else transform
    if transform is not None:
        ny, nx = out.shape[-2:]
        out = out.assign_coords(
            {
                xdim: transform.c + (np.arange(nx) + 0.5) * transform.a,
                ydim: transform.f + (np.arange(ny) + 0.5) * transform.e,
            }
        )
        out = out.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim).rio.write_transform(transform)
    if like.rio.crs is not None:
        out = out.rio.write_crs(like.rio.crs)
    if "long_name" in like.attrs:
        out.attrs["long_name"] = like.attrs["long_name"]
    return out.rio.write_nodata(np.nan, encoded=False)


def upscale_check(
    fine: xr.DataArray, data: xr.DataArray, method: str | Method, scale: int
) -> Check:
    """The `Check` of ``fine = upscale(data, scale=scale, method=method)`` (DataArrays)."""
    model = method_degradation(method, scale)
    psf = model.psf(scale)
    window = source_window(data)
    values = residual(
        fine.data,
        data.data if window is None else window,
        scale,
        [(psf, psf)],
        nodata=fine.rio.nodata,
        coarse_nodata=data.rio.nodata,
        dtype=np.float32,
    )
    return Check(residual_raster(values, data), str(model))


def fuse_check(
    fused: xr.DataArray, frame: xr.DataArray, invalid: xr.DataArray | None, scale: int
) -> Check:
    """The `Check` of a `dasksr.fuse` result against its reference ``frame`` (``invalid``: where
    that frame is masked, or None): the result taken back by the PSF it was reconstructed with."""
    attrs = fused.attrs
    if "fuse_psf_sigma" in attrs:
        model = Degradation("gaussian", float(attrs["fuse_psf_sigma"]))
    else:
        model = method_degradation(str(attrs.get("fuse_fallback", "bicubic")), scale)
    psf = model.psf(scale)
    coarse = da.map_blocks(_as_float, da.asarray(frame.data), frame.rio.nodata, dtype=np.float64)
    if invalid is not None:
        mask = da.asarray(invalid.data if invalid.ndim == frame.ndim else invalid.data[None])
        coarse = da.where(mask.astype(bool), np.nan, coarse)
    values = residual(
        da.asarray(fused.data),
        coarse,
        scale,
        [(psf, psf)],
        nodata=fused.rio.nodata,
        dtype=np.float32,
    )
    return Check(residual_raster(values, frame), str(model))
