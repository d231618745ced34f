"""Open GeoTIFF/COG and Zarr rasters lazily as dask-backed DataArrays, chunks aligned to tiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dasksr.errors import InputError, InvalidArgumentError

__all__ = ["DEFAULT_CHUNK", "open_raster", "is_zarr_path", "aligned_chunks"]

#: Target chunk edge in input pixels; rounded to a multiple of the file's own tiles.
DEFAULT_CHUNK = 1024


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a Zarr store (by extension or by its metadata files)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))


def aligned_chunks(block: int, size: int, target: int = DEFAULT_CHUNK) -> int:
    """A chunk edge that is a multiple of the file's ``block`` edge, close to ``target``."""
    if block >= size:
        return min(size, max(target, 1)) if target < size else size
    return max(block, (target // block) * block)


def open_raster(
    path: str | os.PathLike[str],
    *,
    chunks: int | dict[str, int] | None = None,
    variable: str | None = None,
) -> xr.DataArray:
    """Open a raster lazily as a dask-backed ``(band, y, x)`` DataArray.

    Parameters
    ----------
    path : str or path-like
        A GeoTIFF/COG (or any file GDAL reads) or a Zarr store (``*.zarr`` or a folder with Zarr
        metadata).
    chunks : int or dict, optional
        Chunk edge in pixels (int) or per-dimension chunks. The default is about
        ``DEFAULT_CHUNK`` pixels, aligned to the file's own tiles, with all bands in one chunk.
    variable : str, optional
        The variable to open from a Zarr store holding several.

    Returns
    -------
    xarray.DataArray
        With ``x``/``y`` pixel-centre coordinates, CRS on ``spatial_ref`` and ``nodata`` found by
        ``.rio.nodata``; values are not masked or scaled (the raw dtype is kept).

    Raises
    ------
    InputError
        When the path does not exist or is not a readable raster.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {str(p)!r} does not exist: check the path")
    if is_zarr_path(p):
        return _open_zarr(p, chunks, variable)
    return _open_gdal(p, chunks)


def _open_gdal(path: Path, chunks: Any) -> xr.DataArray:
    import rasterio
    import rioxarray
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            (bh, bw) = src.block_shapes[0]
            height, width, count = src.height, src.width, src.count
            # Read the last block of every band now: a truncated file fails here, not mid-job.
            windows = list(src.block_windows(1))
            if windows:
                src.read(window=windows[-1][1])
    except (RasterioError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"input {str(path)!r} is not a readable raster ({reason}): "
            "pass a GeoTIFF/COG or a Zarr store"
        ) from None
    if isinstance(chunks, dict):
        spec: Any = {"band": count, **chunks}
    else:
        edge = chunks or DEFAULT_CHUNK
        spec = {
            "band": count,
            "y": aligned_chunks(bh, height, edge),
            "x": aligned_chunks(bw, width, edge),
        }
    data = rioxarray.open_rasterio(path, chunks=spec, lock=False, mask_and_scale=False)
    if isinstance(data, list):  # subdatasets
        raise InputError(f"input {str(path)!r} has subdatasets: open one of them by its GDAL name")
    return _tidy_attrs(data)


def _open_zarr(path: Path, chunks: Any, variable: str | None) -> xr.DataArray:
    import rioxarray  # noqa: F401

    try:
        ds = xr.open_zarr(path, mask_and_scale=False, chunks={})
    except Exception as exc:  # zarr raises many types for a broken store
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"input {str(path)!r} is not a readable Zarr store ({reason}): check the path"
        ) from None
    names = [n for n, v in ds.data_vars.items() if v.ndim >= 2]
    if variable is None:
        if len(names) != 1:
            raise InvalidArgumentError(
                f"Zarr store {str(path)!r} holds variables {names}: choose one with variable=NAME"
            )
        variable = names[0]
    elif variable not in ds.data_vars:
        raise InvalidArgumentError(
            f"variable {variable!r} is not in {str(path)!r}: choose one of {names}"
        )
    data = ds[variable]
    if "spatial_ref" in ds.coords:
        data = data.assign_coords(spatial_ref=ds.coords["spatial_ref"])
    if chunks is not None:
        if isinstance(chunks, int):
            ydim, xdim = data.dims[-2], data.dims[-1]
            chunks = {ydim: chunks, xdim: chunks}
        data = data.chunk(chunks)
    return _tidy_attrs(data)


def _tidy_attrs(data: xr.DataArray) -> xr.DataArray:
    # Per-band scales/offsets stay with the data under rasterio's names; identity values go.
    attrs = dict(data.attrs)
    for cf, rio_name, identity in (("scale_factor", "scales", 1.0), ("add_offset", "offsets", 0.0)):
        if cf in attrs:
            values = np.atleast_1d(np.asarray(attrs.pop(cf), dtype=np.float64))
            if not np.all(values == identity):
                attrs[rio_name] = [float(v) for v in values]
    data.attrs = attrs
    return data
