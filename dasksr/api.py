"""The public API on NumPy, Dask and xarray objects: validate eagerly, then build a lazy graph."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.blockwise import upscale_block_array, upscale_numpy
from dasksr.errors import InvalidArgumentError
from dasksr.grid import fine_coordinate, fine_transform
from dasksr.kernels.registry import Method, get_method
from dasksr.kernels.values import cast, work_dtype

__all__ = ["upscale", "spatial_dims"]

_SUPPORTED_KINDS = "uif"


def upscale(
    data: Any,
    scale: int = 2,
    method: str | Method = "bicubic",
    *,
    nodata: float | None = None,
    chunks: Any = None,
    dtype: Any = None,
) -> Any:
    """Super-resolve the last two (spatial) axes of ``data`` by an integer ``scale``.

    Parameters
    ----------
    data : numpy.ndarray, dask.array.Array, xarray.DataArray or xarray.Dataset
        The raster. Arrays have the spatial axes ``(..., y, x)`` last; leading axes (band, time)
        are processed plane by plane. DataArrays may put ``y``/``x`` anywhere: they are moved last.
        A Dataset is upscaled variable by variable (variables without both spatial dims are kept).
    scale : int
        Integer upscaling factor, 2..8 for the interpolation methods.
    method : {'nearest', 'bilinear', 'bicubic', 'lanczos'} or any registered method
        See ``dasksr methods`` or :func:`dasksr.list_methods`.
    nodata : float, optional
        Value marking invalid input pixels. For DataArrays the default is ``data.rio.nodata``.
        NaN is always invalid in floating-point data.
    chunks : optional
        Rechunk the input to these dask chunks first (NumPy-backed input becomes dask-backed).
    dtype : dtype, optional
        Output dtype; the default keeps the input dtype. Integer outputs are rounded and clipped to
        their range, never wrapped; invalid pixels become ``nodata`` (0 when there is none).

    Returns
    -------
    Same type as ``data``
        NumPy in, NumPy out (computed now); Dask or dask-backed xarray in, lazy out. For xarray the
        ``x``/``y`` coordinates are the fine pixel centres, the transform is
        ``transform @ Affine.scale(1 / scale)``, and CRS, nodata and attributes are kept.

    Notes
    -----
    Every block is padded by the method's halo with the half-sample symmetric rule
    (``numpy.pad(mode='symmetric')``), the same rule the whole-image result uses, so the result does
    not depend on the chunking. A fine pixel is nodata exactly when the coarse pixel containing its
    centre is nodata; valid pixels next to nodata use renormalised weights over valid pixels only.

    Examples
    --------
    >>> import numpy as np
    >>> import dasksr
    >>> dasksr.upscale(np.array([[0, 4], [8, 12]], dtype=np.uint8), 2, "bilinear")
    array([[ 0,  1,  3,  4],
           [ 2,  3,  5,  6],
           [ 6,  7,  9, 10],
           [ 8,  9, 11, 12]], dtype=uint8)
    """
    m = get_method(method)
    scale = m.check_scale(scale)
    if isinstance(data, xr.Dataset):
        return _upscale_dataset(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype)
    if isinstance(data, xr.DataArray):
        return _upscale_dataarray(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype)
    if isinstance(data, da.Array):
        return _upscale_array(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype)
    if hasattr(data, "__array__") or hasattr(data, "__cuda_array_interface__"):
        array = data if hasattr(data, "__cuda_array_interface__") else np.asarray(data)
        if chunks is not None:
            return _upscale_array(
                da.from_array(array, chunks=chunks), scale, m, nodata=nodata, dtype=dtype
            )
        array, target = _checked(array, dtype)
        fine = upscale_numpy(array, m, scale, nodata=nodata)
        return fine if target is None else cast(fine, target, nodata)
    raise InvalidArgumentError(
        f"data of type {type(data).__name__} is not supported: "
        "pass a NumPy, Dask or xarray array, or an xarray Dataset"
    )


def _checked(array: Any, dtype: Any) -> tuple[Any, np.dtype[Any] | None]:
    """Validate ``array``; return the array to upscale and the integer dtype to cast to after.

    A float output dtype is reached by casting the input first (exact); an integer one by
    upscaling in floating point and then rounding and clipping, so that values never wrap.
    """
    if array.ndim < 2:
        raise InvalidArgumentError(
            f"data has {array.ndim} dimension(s): pass an array with at least (y, x) axes"
        )
    for kind_of, dt in (("data", array.dtype), ("dtype", None if dtype is None else dtype)):
        if dt is not None and np.dtype(dt).kind not in _SUPPORTED_KINDS:
            raise InvalidArgumentError(
                f"{kind_of} has dtype {np.dtype(dt)}: use integer or floating-point pixels"
            )
    target = None if dtype is None else np.dtype(dtype)
    if target is None or target == array.dtype:
        return array, None
    if target.kind == "f":
        return array.astype(target), None
    return array.astype(work_dtype(array.dtype)), target


def _upscale_array(
    array: da.Array,
    scale: int,
    method: Method,
    *,
    nodata: float | None,
    chunks: Any = None,
    dtype: Any = None,
) -> da.Array:
    array, target = _checked(array, dtype)
    if chunks is not None:
        array = array.rechunk(chunks)
    fine = upscale_block_array(array, method, scale, nodata=nodata)
    if target is None:
        return fine
    return da.map_blocks(cast, fine, target, nodata, dtype=target, meta=fine._meta.astype(target))


def spatial_dims(data: xr.DataArray) -> tuple[str, str]:
    """Return the ``(y, x)`` dimension names of ``data`` (rioxarray's, else the last two)."""
    try:
        y, x = data.rio.y_dim, data.rio.x_dim
    except Exception:  # rioxarray raises its own errors when it cannot tell
        if data.ndim < 2:
            raise InvalidArgumentError(
                f"DataArray {data.name!r} has dims {data.dims}: it needs two spatial dims (y, x)"
            ) from None
        y, x = data.dims[-2], data.dims[-1]
    return str(y), str(x)


def _upscale_dataarray(
    data: xr.DataArray,
    scale: int,
    method: Method,
    *,
    nodata: float | None,
    chunks: Any = None,
    dtype: Any = None,
) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the rio accessor)

    ydim, xdim = spatial_dims(data)
    lead = [d for d in data.dims if d not in (ydim, xdim)]
    data = data.transpose(*lead, ydim, xdim)
    if nodata is None:
        nodata = data.rio.nodata
    raw = data.data
    if chunks is not None and not isinstance(raw, da.Array):
        raw = da.from_array(raw, chunks=chunks)
        chunks = None
    fine = upscale(raw, scale, method, nodata=nodata, chunks=chunks, dtype=dtype)

    coords = {
        name: coord
        for name, coord in data.coords.items()
        if ydim not in coord.dims and xdim not in coord.dims
    }
    has_transform = xdim in data.coords and ydim in data.coords
    transform = data.rio.transform() if has_transform else None
    for dim, step in (
        (ydim, None if transform is None else transform.e),
        (xdim, None if transform is None else transform.a),
    ):
        if dim in data.coords:
            coords[dim] = (dim, fine_coordinate(data[dim].values, scale, step), data[dim].attrs)
        else:
            coords[dim] = (dim, fine_coordinate(np.arange(data.sizes[dim]), scale))
    out = xr.DataArray(fine, dims=data.dims, coords=coords, attrs=dict(data.attrs))
    out.name = data.name  # xarray would otherwise take the dask graph's name
    out.encoding = {k: v for k, v in data.encoding.items() if k in ("dtype", "_FillValue")}
    if transform is not None:
        crs = data.rio.crs
        out = out.rio.write_transform(fine_transform(transform, scale))
        if crs is not None:
            out = out.rio.write_crs(crs)
    if nodata is not None:
        out = out.rio.write_nodata(nodata, encoded=data.rio.encoded_nodata is not None)
    return out


def _upscale_dataset(
    data: xr.Dataset,
    scale: int,
    method: Method,
    *,
    nodata: float | None,
    chunks: Any = None,
    dtype: Any = None,
) -> xr.Dataset:
    import rioxarray  # noqa: F401

    try:
        ydim, xdim = data.rio.y_dim, data.rio.x_dim
    except Exception:
        raise InvalidArgumentError(
            "the Dataset has no recognisable spatial dims: name them 'y' and 'x' "
            "or set them with ds.rio.set_spatial_dims()"
        ) from None
    variables = {}
    for name, var in data.data_vars.items():
        if ydim in var.dims and xdim in var.dims:
            var = var.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)
            variables[name] = _upscale_dataarray(
                var, scale, method, nodata=nodata, chunks=chunks, dtype=dtype
            )
    if not variables:
        raise InvalidArgumentError(
            f"no variable of the Dataset has both spatial dims ({ydim}, {xdim}): nothing to upscale"
        )
    out = xr.Dataset(variables, attrs=dict(data.attrs))
    for name, var in data.data_vars.items():
        if name not in variables and ydim not in var.dims and xdim not in var.dims:
            out[name] = var
    return out
