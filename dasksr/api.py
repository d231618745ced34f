"""The public API on NumPy, Dask and xarray objects: validate eagerly, then build a lazy graph."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from dasksr.errors import InvalidArgumentError
from dasksr.grid import fine_coordinate, fine_transform, pixel_centres
from dasksr.kernels.method import Method
from dasksr.kernels.values import cast, nodata_fits, work_dtype
from dasksr.methods import get_method
from dasksr.operation import Input, Operand, Operation, Plan, plan
from dasksr.sources import source_window

if TYPE_CHECKING:
    from affine import Affine

__all__ = [
    "fine_dataarray",
    "plan_upscale",
    "raster_transform",
    "scale_for_resolution",
    "spatial_dims",
    "upscale",
    "upscale_numpy",
    "upscale_operation",
]

_SUPPORTED_KINDS = "uif"


def upscale(
    data: Any,
    *,
    scale: int | None = None,
    method: str | Method = "bicubic",
    resolution: float | tuple[float, float] | None = None,
    nodata: float | None = None,
    chunks: Any = None,
    dtype: Any = None,
) -> Any:
    """Super-resolve the last two (spatial) axes of ``data`` by an integer ``scale`` or to a ``resolution``.

    Parameters
    ----------
    data : numpy.ndarray, dask.array.Array, xarray.DataArray or xarray.Dataset
        The raster. Arrays have the spatial axes ``(..., y, x)`` last; leading axes (band, time)
        are processed plane by plane. DataArrays may put ``y``/``x`` anywhere: they are moved last.
        A Dataset is upscaled variable by variable (variables without both spatial dims are kept).
    scale : int
        Integer upscaling factor, 2..8 for the interpolation methods. Give ``scale`` or
        ``resolution``, not both.
    method : {'bicubic', 'nearest', 'bilinear', 'lanczos', 'cnn', 'cnn-sensor'} or any registered method
        See ``dasksr methods`` or :func:`dasksr.list_methods`.
    resolution : float or (float, float), optional
        The output pixel size in the units of the CRS (``(x, y)`` for non-square pixels), instead
        of ``scale``: an xarray object's pixel size divided by an integer, which becomes the scale
        (10 m pixels to ``resolution=5`` is ``scale=2``; ``resolution=3`` is an error).
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
    >>> dasksr.upscale(np.array([[0, 4], [8, 12]], dtype=np.uint8), scale=2, method="bilinear")
    array([[ 0,  1,  3,  4],
           [ 2,  3,  5,  6],
           [ 6,  7,  9, 10],
           [ 8,  9, 11, 12]], dtype=uint8)
    """
    m = get_method(method)
    if resolution is not None:
        if scale is not None:
            raise InvalidArgumentError(
                f"scale={scale!r} and resolution={resolution!r} were both given: pass one of them"
            )
        scale = scale_for_resolution(data, resolution)
    elif scale is None:
        raise InvalidArgumentError(
            "no scale given: pass scale= (an integer factor) or resolution= (a pixel size)"
        )
    scale = m.check_scale(scale)
    if isinstance(data, xr.Dataset):
        return _upscale_dataset(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype)
    if isinstance(data, xr.DataArray):
        return _upscale_dataarray(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype)
    if isinstance(data, da.Array):
        return _plan_array(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype).array
    if hasattr(data, "__array__") or hasattr(data, "__cuda_array_interface__"):
        array = data if hasattr(data, "__cuda_array_interface__") else np.asarray(data)
        if chunks is not None:
            lazy = da.from_array(array, chunks=chunks)
            return _plan_array(lazy, scale, m, nodata=nodata, dtype=dtype).array
        work, target = _checked(array, dtype, nodata)
        return upscale_operation(m, scale, nodata=nodata, work=work, target=target).whole(array)
    raise InvalidArgumentError(
        f"data of type {type(data).__name__} is not supported: "
        "pass a NumPy, Dask or xarray array, or an xarray Dataset"
    )


def scale_for_resolution(data: Any, resolution: float | tuple[float, float]) -> int:
    """The integer scale that turns ``data``'s pixels into pixels of size ``resolution``.

    ``resolution`` is in the units of the CRS, one number or ``(x, y)``. `InvalidArgumentError`
    when ``data`` has no transform or a pixel size is not an integer multiple of ``resolution``.
    """
    import rioxarray  # noqa: F401  (the rio accessor)

    if isinstance(data, xr.Dataset):
        spatial = [v for v in data.data_vars.values() if v.ndim >= 2]
        data = spatial[0] if spatial else None
    transform = raster_transform(data) if isinstance(data, xr.DataArray) else None
    if transform is None:
        raise InvalidArgumentError(
            f"resolution={resolution!r} needs georeferenced data (an xarray object with a "
            "transform or x/y coordinates): pass scale= instead"
        )
    wanted = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    if len(wanted) != 2:
        raise InvalidArgumentError(
            f"resolution={resolution!r} has {len(wanted)} value(s): give one number or (x, y)"
        )
    pixel = (float(np.hypot(transform.a, transform.d)), float(np.hypot(transform.b, transform.e)))
    scales = []
    for axis, have, want in zip("xy", pixel, wanted, strict=True):
        if not (isinstance(want, (int, float, np.number)) and float(want) > 0):
            raise InvalidArgumentError(
                f"resolution={resolution!r} is not a positive pixel size: give it in CRS units"
            )
        ratio = have / float(want)
        whole = round(ratio)
        if whole < 1 or abs(ratio - whole) > 1e-6 * whole:
            raise InvalidArgumentError(
                f"resolution={resolution!r} is not the input's {axis} pixel size {have:g} divided "
                f"by an integer (the ratio is {ratio:.4g}): use {have / 2:g}, {have / 3:g}, "
                f"{have / 4:g}... or pass scale="
            )
        scales.append(whole)
    if scales[0] != scales[1]:
        raise InvalidArgumentError(
            f"resolution={resolution!r} gives x and y scales {scales[0]} and {scales[1]}: "
            "dasksr upscales both axes by one factor; give a resolution with the same ratio"
        )
    return scales[0]


def _checked(
    array: Any, dtype: Any, nodata: float | None
) -> tuple[np.dtype[Any], np.dtype[Any] | None]:
    """Validate ``array``; return the dtype to upscale in and the integer dtype to cast to after.

    A float output dtype is reached by casting the input first (exact); an integer one by
    upscaling in floating point and then rounding and clipping, so that values never wrap.
    ``nodata`` must fit both the input and the output dtype.
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
    check_nodata_fits(nodata, array.dtype, target)
    if target is None or target == array.dtype:
        return np.dtype(array.dtype), None
    if target.kind == "f":
        return target, None
    return work_dtype(array.dtype), target


def check_nodata_fits(nodata: float | None, data_dtype: Any, output_dtype: Any = None) -> None:
    """`InvalidArgumentError` when ``nodata`` does not fit the data (or output) dtype."""
    if nodata is None:
        return
    for kind_of, dt in (("data", data_dtype), ("output", output_dtype)):
        if dt is not None and not nodata_fits(nodata, dt):
            raise InvalidArgumentError(
                f"nodata={nodata!r} does not fit the {kind_of} dtype {np.dtype(dt)}"
                f"{_range_of(dt)}: pass a nodata value that {np.dtype(dt)} can hold"
                + (", or a wider dtype=" if kind_of == "output" else "")
            )


def _range_of(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f" (integers {info.min}..{info.max})"
    return f" (finite values up to +-{float(np.finfo(dtype).max):.4g})"


def upscale_operation(
    method: Method,
    scale: int,
    *,
    nodata: float | None = None,
    params: Mapping[str, Any] | None = None,
    work: Any = None,
    target: Any = None,
) -> Operation:
    """The upscaling of one image by ``method`` at ``scale``, as an `Operation`.

    The block function is ``method.block(padded, scale, nodata=nodata)`` with ``params`` (extra
    keyword arguments, computed once for the whole image by the caller) bound. With ``work`` the
    padded block is cast to that dtype first; with ``target`` the result is cast to that integer
    dtype after (rounded and clipped, invalid pixels to ``nodata``: see
    :func:`dasksr.kernels.values.cast`).
    """
    function = partial(method.block, **params) if params else method.block
    halo = method.halo(scale)
    work = None if work is None else np.dtype(work)
    target = None if target is None else np.dtype(target)
    block = partial(
        _upscale_block,
        function=function,
        scale=scale,
        nodata=nodata,
        halo=halo,
        work=work,
        target=target,
    )
    token = tokenize(
        method.token,
        scale,
        nodata,
        dict(params or {}),
        None if work is None else work.str,
        None if target is None else target.str,
    )
    return Operation(
        name=f"upscale-{method.name}-x{scale}",
        token=token,
        operands=(Operand("image"),),
        scale=scale,
        halo=halo,
        block=block,
        dtype=target if target is not None else work,
        boundary=method.boundary,
        nodata=nodata,
        nodata_rule="a fine pixel is nodata when the input pixel containing its centre is",
    )


def _upscale_block(
    padded: Any,
    *,
    function: Any,
    scale: int,
    nodata: float | None,
    halo: int,
    work: np.dtype[Any] | None,
    target: np.dtype[Any] | None,
) -> Any:
    if work is not None:
        padded = padded.astype(work, copy=False)
    if padded.size == 0:
        shape = (*padded.shape[:-2], *(max(n - 2 * halo, 0) * scale for n in padded.shape[-2:]))
        return np.empty(shape, dtype=padded.dtype if target is None else target)
    fine = function(padded, scale, nodata=nodata)
    return fine if target is None else cast(fine, target, nodata)


def upscale_numpy(
    image: Any,
    method: Method,
    scale: int,
    *,
    nodata: float | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """The whole-image result of ``method``: the image padded once, the kernel run once.

    The reference of the seamless contract; ``params`` as in `upscale_operation`.
    """
    return upscale_operation(method, scale, nodata=nodata, params=params).whole(image)


def plan_upscale(
    data: Any,
    *,
    scale: int,
    method: str | Method = "bicubic",
    nodata: float | None = None,
    chunks: Any = None,
    dtype: Any = None,
) -> Plan:
    """The lazy pixels of :func:`upscale` on a dask array or dask-backed DataArray, and the wiring
    that makes them (``plan.wiring``: ``'source'`` when the data is a window of a raster opened
    by :func:`dasksr.open_raster`, ``'overlap'`` otherwise; both give the same pixels).

    The DataArray's spatial dims are moved last; no coordinates are attached (see `upscale`).
    """
    m = get_method(method)
    scale = m.check_scale(scale)
    window = None
    if isinstance(data, xr.DataArray):
        data, nodata, _ = _prepared(data, nodata, dtype)
        window = source_window(data)
        data = data.data
    if not isinstance(data, da.Array):
        raise InvalidArgumentError(
            f"data of type {type(data).__name__} is not lazy: pass a dask array or a "
            "dask-backed DataArray (or call upscale)"
        )
    return _plan_array(data, scale, m, nodata=nodata, chunks=chunks, dtype=dtype, window=window)


def _plan_array(
    array: da.Array,
    scale: int,
    method: Method,
    *,
    nodata: float | None,
    chunks: Any = None,
    dtype: Any = None,
    window: Any = None,
) -> Plan:
    work, target = _checked(array, dtype, nodata)
    if chunks is not None:
        rechunked = array.rechunk(chunks)
        if rechunked.name != array.name:
            array, window = rechunked, None
    operation = upscale_operation(method, scale, nodata=nodata, work=work, target=target)
    # Without a halo the blocks need no neighbours: the plain blocks are as good as a window.
    return plan(operation, Input(array, window if operation.halo else None))


def spatial_dims(data: xr.DataArray) -> tuple[str, str]:
    """Return the ``(y, x)`` dimension names of ``data``.

    They are rioxarray's (``y``/``x``, ``lat``/``lon`` and the like, or those set with
    ``.rio.set_spatial_dims``). A 2-D array with other names has no choice to make: its two dims
    are ``(y, x)``. Otherwise they are never guessed: a ``(row, col, band)`` array would get its
    band axis upscaled.
    """
    try:
        y, x = data.rio.y_dim, data.rio.x_dim
    except Exception:  # rioxarray raises its own errors when it cannot tell
        if data.ndim != 2:
            raise InvalidArgumentError(
                f"cannot tell which dims of DataArray {data.name!r} {tuple(data.dims)} are the "
                "spatial (y, x) ones: rename them to 'y' and 'x', or call "
                "data.rio.set_spatial_dims(x_dim=..., y_dim=...) first"
            ) from None
        y, x = data.dims
    return str(y), str(x)


#: Attributes that describe the input's pixel values and are wrong for the upscaled ones.
_STALE_ATTRS = ("STATISTICS_",)
#: Encoding entries that say how the values are stored, kept so that writers store them the same.
_KEPT_ENCODING = ("dtype", "_FillValue", "scale_factor", "add_offset", "grid_mapping")


def raster_transform(data: xr.DataArray) -> Affine | None:
    """The affine transform of ``data``: the one stored on its grid mapping, when the coordinates
    agree with it, else the one the coordinates give; None when it has no georeferencing.

    The stored transform is exact; one recomputed from pixel centres carries rounding errors. It
    is stale when the data was sliced or subsampled after the transform was written: then the
    coordinates are right. A rotated transform has no 1-D coordinates and is taken as stored.
    """
    from affine import Affine

    ydim, xdim = spatial_dims(data)
    data = data.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)
    stored = None
    mapping = data.coords.get(data.rio.grid_mapping)
    text = None if mapping is None else mapping.attrs.get("GeoTransform")
    if text:
        stored = Affine.from_gdal(*(float(v) for v in str(text).split()))
    if xdim not in data.coords or ydim not in data.coords:
        return stored
    try:
        actual = data.rio.transform(recalc=True)
    except Exception:  # rioxarray cannot tell the resolution of a one-pixel axis
        return stored if stored is not None else data.rio.transform()
    if stored is None:
        return actual
    tolerance = 1e-6 * max(abs(actual.a), abs(actual.e))
    same = all(abs(a - b) <= tolerance for a, b in zip(stored[:6], actual[:6], strict=True))
    return stored if same else actual


def _prepared(
    data: xr.DataArray, nodata: float | None, dtype: Any
) -> tuple[xr.DataArray, float | None, float | None]:
    """``data`` with its spatial dims last, the nodata to use and the file's encoded nodata."""
    import rioxarray  # noqa: F401  (registers the rio accessor)

    ydim, xdim = spatial_dims(data)
    lead = [d for d in data.dims if d not in (ydim, xdim)]
    data = data.transpose(*lead, ydim, xdim)
    data = data.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)
    # A masked rioxarray input (masked=True) holds NaN; the file's own nodata is the encoded one.
    encoded = data.rio.encoded_nodata
    if nodata is None:
        nodata = data.rio.nodata
        target = None if dtype is None else np.dtype(dtype)
        if encoded is not None and np.isnan(nodata) and target is not None and target.kind != "f":
            nodata = float(encoded)  # NaN cannot mark holes in an integer output
    return data, nodata, encoded


def _upscale_dataarray(
    data: xr.DataArray, scale: int, method: Method, *, nodata: float | None, **options: Any
) -> xr.DataArray:
    """`upscale` of one DataArray; ``options`` are its ``chunks`` and ``dtype``."""
    dtype = options.get("dtype")
    data, nodata, encoded = _prepared(data, nodata, dtype)
    raw = data.data
    if isinstance(raw, da.Array):
        window = source_window(data)
        fine = _plan_array(raw, scale, method, nodata=nodata, window=window, **options).array
    else:
        chunks = options.get("chunks")
        if chunks is not None:
            raw = da.from_array(raw, chunks=chunks)
        fine = upscale(raw, scale=scale, method=method, nodata=nodata, dtype=dtype)
    return fine_dataarray(data, fine, scale, nodata=nodata, dtype=dtype, encoded=encoded)


def fine_dataarray(
    data: xr.DataArray,
    fine: Any,
    scale: int,
    *,
    nodata: float | None,
    dtype: Any = None,
    encoded: float | None = None,
) -> xr.DataArray:
    """Wrap ``fine``, the pixels of ``data`` on the grid ``scale`` times finer, as a DataArray.

    ``data``'s spatial dims are last; the fine ``x``/``y`` coordinates are the fine pixel centres,
    the transform is scaled, and CRS, nodata, name, attributes and other coordinates are kept.
    ``dtype`` is the output dtype asked for, ``encoded`` the file's nodata of a masked input.
    """
    ydim, xdim = spatial_dims(data)
    transform = raster_transform(data)
    grid_mapping = data.rio.grid_mapping
    coords = {
        name: coord
        for name, coord in data.coords.items()
        if ydim not in coord.dims and xdim not in coord.dims
    }
    fine_grid = None if transform is None else fine_transform(transform, scale)
    for dim in (ydim, xdim):
        if fine_grid is None:
            coords[dim] = (dim, fine_coordinate(np.arange(data.sizes[dim]), scale))
        elif fine_grid.b == 0 and fine_grid.d == 0:
            origin, step = (fine_grid.f, fine_grid.e) if dim == ydim else (fine_grid.c, fine_grid.a)
            attrs = data[dim].attrs if dim in data.coords else {}
            coords[dim] = (
                dim,
                pixel_centres(origin, step, fine.shape[data.dims.index(dim)]),
                attrs,
            )
        # A rotated grid has no 1-D coordinates, as rioxarray reads it.
    attrs = {k: v for k, v in data.attrs.items() if not str(k).startswith(_STALE_ATTRS)}
    out = xr.DataArray(fine, dims=data.dims, coords=coords, attrs=attrs)
    out.name = data.name  # xarray would otherwise take the dask graph's name
    out.encoding = {k: v for k, v in data.encoding.items() if k in _KEPT_ENCODING}
    if dtype is not None:
        # Writers would otherwise cast back to the input's dtype.
        out.encoding["dtype"] = np.dtype(dtype).name
    if fine_grid is not None:
        out = out.rio.write_transform(fine_grid, grid_mapping_name=grid_mapping)
        crs = data.rio.crs
        if crs is not None:
            out = out.rio.write_crs(crs, grid_mapping_name=grid_mapping)
    if encoded is not None and fine.dtype.kind == "f":
        # Still masked: NaN marks the holes, and writers store the file's own nodata value.
        out = out.rio.write_nodata(encoded, encoded=True)
    elif nodata is not None:
        out.encoding.pop("_FillValue", None)
        out = out.rio.write_nodata(nodata, encoded=False)
    return out


def _upscale_dataset(data: xr.Dataset, scale: int, method: Method, **options: Any) -> xr.Dataset:
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
            variables[name] = _upscale_dataarray(var, scale, method, **options)
    if not variables:
        raise InvalidArgumentError(
            f"no variable of the Dataset has both spatial dims ({ydim}, {xdim}): nothing to upscale"
        )
    out = xr.Dataset(variables, attrs=dict(data.attrs))
    for name, var in data.data_vars.items():
        if name not in variables and ydim not in var.dims and xdim not in var.dims:
            out[name] = var
    return out
