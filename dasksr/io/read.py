"""Open GeoTIFF/COG and Zarr rasters lazily as dask-backed DataArrays, chunks aligned to tiles."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from dasksr.blockwise import Source
from dasksr.errors import InputError, InvalidArgumentError
from dasksr.io.paths import (
    _file_stamp,
    _is_remote_zarr,
    _reason,
    _remote_fingerprint,
    _remote_stamp,
    _storage_options,
    gdal_path,
    is_remote,
    is_zarr_path,
)
from dasksr.io.readers import (
    _cache_lock,
    _gdal_options,
    _Listing,
    _listings,
    _quiet_georeference,
    _RasterWindows,
    _zarr_array,
    _ZarrWindows,
    clear_cache,
)
from dasksr.kernels.values import work_dtype
from dasksr.sources import attach_source, source_window
from dasksr.windows import WindowArray

__all__ = [
    "DEFAULT_CHUNK",
    "NoGeoreferenceWarning",
    "aligned_chunks",
    "clear_cache",
    "gdal_path",
    "is_remote",
    "is_zarr_path",
    "open_raster",
]


class NoGeoreferenceWarning(UserWarning):
    """An input has no georeference (a photo, a microscope image): it is read in pixel units, and
    what is made from it carries no georeference either."""


#: Target chunk edge in input pixels; rounded to a multiple of the file's own tiles.
DEFAULT_CHUNK = 1024


def aligned_chunks(
    block: int, size: int, target: int = DEFAULT_CHUNK, *, split_blocks: bool = False
) -> int:
    """A chunk edge close to ``target`` and a whole number of the file's ``block`` edges.

    With ``split_blocks`` a target smaller than one block is taken as it is (GDAL reads part of a
    tile cheaply, and a user who asks for small chunks wants them); otherwise it grows to a block.
    """
    if target >= size:
        return size
    if target < block:
        return max(1, target) if split_blocks else block
    return (target // block) * block


def open_raster(
    path: str | os.PathLike[str],
    *,
    chunks: bool | int | str | dict[str, Any] | None = None,
    variable: str | None = None,
    masked: bool = False,
) -> xr.DataArray:
    """Open a raster lazily as a dask-backed ``(band, y, x)`` DataArray.

    Parameters
    ----------
    path : str or path-like
        A GeoTIFF/COG (or any file GDAL reads) or a Zarr store (``*.zarr`` or a folder with Zarr
        metadata), local or remote: an ``http(s)://`` or ``s3://`` URL of a raster (read by GDAL
        through ``/vsicurl/`` and ``/vsis3/``; ``s3://`` is anonymous when ``AWS_NO_SIGN_REQUEST``
        is ``YES``, else it uses the usual AWS environment), any GDAL ``/vsi...`` path, or an
        fsspec URL of a Zarr store (a URL ending in ``.zarr``, or one whose scheme GDAL does not
        read, such as ``memory://``).
    chunks : {True, 'auto', None} or int or dict, optional
        As in ``rioxarray.open_rasterio``: ``True`` or ``'auto'`` let dask choose chunks of about
        ``array.chunk-size`` bytes, multiples of the file's own tiles; an int is a chunk edge in
        pixels; a dict gives chunks per dimension (an int, ``-1`` for the whole dimension, or
        ``'auto'``; dimensions left out are one chunk, except ``band`` which is always one
        chunk). ``None`` (the default) is about ``DEFAULT_CHUNK`` pixels aligned to the file's
        tiles. Unlike rioxarray, the result is always dask-backed.
    variable : str, optional
        The variable to open from a Zarr store holding several.
    masked : bool, default False
        As in ``rioxarray.open_rasterio``: pixels equal to the nodata value become NaN, in a
        floating-point dtype large enough for the file's (float32 for 8- and 16-bit integers,
        float64 for larger ones, the file's own for floats). The file's nodata value stays the
        *encoded* nodata (``.rio.encoded_nodata``, ``encoding['_FillValue']``) and its dtype
        ``encoding['dtype']``; ``.rio.nodata`` is NaN. Without a nodata value only the dtype
        changes.

    Returns
    -------
    xarray.DataArray
        With ``x``/``y`` pixel-centre coordinates, CRS on ``spatial_ref`` and ``nodata`` found by
        ``.rio.nodata``; values are not scaled (the raw dtype is kept unless ``masked``).

    Raises
    ------
    InputError
        When the path or URL does not exist or is not a readable raster.
    InvalidArgumentError
        When ``chunks`` is not one of the forms above.
    """
    _check_chunks(chunks)
    if is_remote(path):
        url = os.fspath(path)
        if _is_remote_zarr(url):
            data = _open_zarr(url, chunks, variable)
        else:
            data = _open_gdal(url, chunks)
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"input {str(p)!r} does not exist: check the path")
        data = _open_zarr(p, chunks, variable) if is_zarr_path(p) else _open_gdal(p, chunks)
    return _masked(data) if masked else data


def _check_chunks(chunks: Any) -> None:
    ok = chunks is None or chunks is True or chunks == "auto" or isinstance(chunks, dict)
    ok = ok or (isinstance(chunks, int) and not isinstance(chunks, bool) and chunks > 0)
    if not ok:
        raise InvalidArgumentError(
            f"chunks={chunks!r} is not a chunking: pass True, 'auto', None, a chunk edge in "
            "pixels (a positive int) or a dict of chunks per dimension"
        )


def _chunk_spec(
    chunks: Any,
    dims: tuple[str, ...],
    shape: tuple[int, ...],
    stored: tuple[int, ...],
    dtype: Any,
    *,
    lead: tuple[Any, ...],
    split_blocks: bool,
) -> tuple[tuple[int, ...], ...]:
    """Dask chunks for ``open_raster(chunks=...)``, ``stored`` (the file's tiles or the store's
    chunks) being the unit; the leading dims (band, time) are chunked as ``lead`` unless a dict
    says otherwise. ``split_blocks`` lets an int below one stored block split it."""
    if chunks is True or chunks == "auto" or isinstance(chunks, dict):
        if isinstance(chunks, dict):
            unknown = sorted(set(map(str, chunks)) - set(dims))
            if unknown:
                raise InvalidArgumentError(
                    f"chunks names dims {unknown} that the raster does not have: use {list(dims)}"
                )
            spec = (
                *(chunks.get(d, c) for d, c in zip(dims[:-2], lead, strict=True)),
                *(chunks.get(d, -1) for d in dims[-2:]),
            )
        else:
            spec = (*lead, "auto", "auto")
        return tuple(da.core.normalize_chunks(spec, shape, dtype=dtype, previous_chunks=stored))
    edge = chunks or DEFAULT_CHUNK
    asked = chunks is not None and split_blocks
    spatial = tuple(
        aligned_chunks(b, n, edge, split_blocks=asked)
        for b, n in zip(stored[-2:], shape[-2:], strict=True)
    )
    return tuple(da.core.normalize_chunks((*lead, *spatial), shape, dtype=dtype))


def _open_gdal(path: Path | str, chunks: Any) -> xr.DataArray:
    import rasterio
    import rioxarray
    from rasterio.errors import RasterioError

    remote = isinstance(path, str)
    # Tasks may run in worker processes started in another folder: they get the absolute path.
    source = gdal_path(path) if isinstance(path, str) else str(path.absolute())
    # The stamp is taken before anything is read: a change from here on fails the reads.
    stamp = _remote_stamp(path) if isinstance(path, str) else _file_stamp(source)
    options = _gdal_options(remote=remote)
    try:
        with rasterio.Env(**options), _quiet_georeference(), rasterio.open(source) as src:
            (bh, bw) = src.block_shapes[0]
            height, width, count = src.height, src.width, src.count
            dtype = np.dtype(src.dtypes[0])
            # rasterio reads a file without one as the identity transform, warning each time.
            georeferenced = not (
                src.crs is None and src.transform.is_identity and not src.gcps[0] and not src.rpcs
            )
            # Read the last block of every band now: a truncated file fails here, not mid-job.
            windows = list(src.block_windows(1))
            if windows:
                src.read(window=windows[-1][1])
    except (RasterioError, OSError) as exc:
        raise InputError(
            f"input {str(path)!r} is not a readable raster ({_reason(exc)}): "
            "pass a GeoTIFF/COG or a Zarr store"
        ) from None
    shape = (count, height, width)
    block_chunks = _chunk_spec(
        chunks, ("band", "y", "x"), shape, (count, bh, bw), dtype, lead=(-1,), split_blocks=True
    )
    # rioxarray gives the coordinates, CRS and attributes; the pixels come from our own tasks,
    # which open the file by path and turn a damaged block into an InputError that pickles.
    with _quiet_georeference(), rasterio.Env(**options):
        # Per-band scales/offsets are read from the `scales`/`offsets` attributes, as rioxarray's
        # warning advises: on the command line it would only be noise on stderr.
        warnings.filterwarnings("ignore", message=r"(Scales|Offsets) differ across bands")
        meta = rioxarray.open_rasterio(source, lock=False, cache=False, mask_and_scale=False)
    if not isinstance(meta, xr.DataArray):  # subdatasets
        raise InputError(f"input {str(path)!r} has subdatasets: open one of them by its GDAL name")
    if not georeferenced:
        # No invented grid (origin 0, pixel 1): no coordinates and no grid mapping at all.
        meta = meta.drop_vars(["x", "y", "spatial_ref"], errors="ignore")
        for key in ("grid_mapping", "coordinates"):
            meta.encoding.pop(key, None)
        warnings.warn(
            f"input {str(path)!r} has no georeference (no CRS, geotransform or GCPs): it is read "
            "in pixel units, and the output has no georeference either",
            NoGeoreferenceWarning,
            stacklevel=3,
        )
    name = "open_raster-" + tokenize(source, stamp, block_chunks)
    # A source: upscaling reads each block's haloed window straight from the file.
    reader = _RasterWindows(
        source,
        shape,
        dtype,
        (bh, bw),
        stamp=stamp,
        shown=str(path),
        remote=remote,
        url=str(path) if remote else None,
        georeferenced=georeferenced,
    )
    pixels = Source(reader, block_chunks, name=name, meta=np.empty((0, 0, 0), dtype=dtype))
    return _tidy_attrs(attach_source(meta, pixels))


def _open_zarr(path: Path | str, chunks: Any, variable: str | None) -> xr.DataArray:
    import rioxarray  # noqa: F401

    # Workers may run in another folder: they get the absolute path (a URL is kept as it is).
    # decode_coords="all" makes a CF grid_mapping variable (rioxarray's spatial_ref) a
    # coordinate, so that the CRS is found.
    source: Path | str = path if isinstance(path, str) else path.absolute()
    options: dict[str, Any] = {"mask_and_scale": False, "decode_coords": "all"}
    if isinstance(source, str):
        options["storage_options"] = _storage_options(source)
    try:
        ds = _open_zarr_store(source, chunks=None, **options)
    except Exception as exc:  # zarr and fsspec raise many types for a broken store
        raise InputError(
            f"input {str(path)!r} is not a readable Zarr store ({_reason(exc)}): check the "
            f"{'URL' if isinstance(path, str) else 'path'}"
        ) from None
    names = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2]
    if not names and isinstance(path, str):
        raise InputError(
            f"input {path!r} shows no raster variable: check the URL (a Zarr store read over "
            "plain HTTP needs consolidated metadata: zarr.consolidate_metadata)"
        )
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
    lazy = ds[variable]
    # As for GeoTIFF tiles: a whole number of the store's own chunks, so that no stored chunk is
    # read by two tasks (an int never splits them).
    stored = tuple(lazy.encoding.get("chunks") or lazy.shape)
    spec = _chunk_spec(
        chunks,
        tuple(map(str, lazy.dims)),
        lazy.shape,
        stored,
        lazy.dtype,
        lead=stored[:-2],
        split_blocks=False,
    )
    # Opened again with the chunks: xarray normalises them (and names the graph after the store
    # and its mtime, the same in every process, should the store not be readable as a source).
    chunked = _open_zarr_store(source, chunks=dict(zip(lazy.dims, spec, strict=True)), **options)
    data = chunked[variable]
    windows = _zarr_source(source, variable, data, shown=str(path))
    if windows is not None:
        # A source: upscaling reads each block's haloed window from the chunks. The name depends
        # on the listing of the array's files, so that a rerun of a Zarr job on the same store
        # finds its finished chunks, and one on a changed store does not.
        name = "open_raster-" + tokenize(
            str(source), variable, windows.fingerprint, data.data.chunks
        )
        data = attach_source(
            data, Source(windows, data.data.chunks, name=name, meta=data.data._meta)
        )
    return _tidy_attrs(data)


def _zarr_source(
    source: Path | str, variable: str, data: xr.DataArray, *, shown: str
) -> _ZarrWindows | None:
    """``data``'s Zarr array as a source of windows, or None when it is not a plain array."""
    remote = isinstance(source, str)
    try:
        array = _zarr_array(str(source), variable)
    except Exception:  # not a plain array at that path: xarray's own reads stay
        return None
    if tuple(array.shape) != data.shape or np.dtype(array.dtype) != data.dtype:
        return None
    if remote:
        fingerprint = _remote_fingerprint(str(source), variable)
    else:
        # The listing is taken before the chunks are read, and kept for this process's reads.
        folder = Path(source) / variable
        listing = _Listing(folder)
        with _cache_lock:
            _listings[str(folder)] = listing
        fingerprint = listing.fingerprint
    return _ZarrWindows(
        str(source),
        variable,
        data.shape,
        data.dtype,
        tuple(array.chunks),
        fingerprint=fingerprint,
        shown=shown,
        remote=remote,
    )


def _open_zarr_store(source: Path | str, **options: Any) -> xr.Dataset:
    with warnings.catch_warnings():
        # Consolidated metadata is not part of Zarr v3: a store without it is normal, and xarray's
        # multi-line warning about the fallback would reach the command line's stderr.
        warnings.filterwarnings(
            "ignore", message="Failed to open Zarr store with consolidated", category=RuntimeWarning
        )
        # Chunks that split stored chunks are read through the decoded-chunk cache of the source
        # (see _ZarrWindows), not by decoding a stored chunk once per task.
        warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")
        return xr.open_zarr(source, **options)


def _masked(data: xr.DataArray) -> xr.DataArray:
    """``data`` with its nodata pixels as NaN, as ``rioxarray.open_rasterio(masked=True)`` reads.

    The file's nodata value becomes the encoded one (``encoding['_FillValue']``) and the file's
    dtype ``encoding['dtype']``, so that writers store the file's own value again.
    """
    import rioxarray  # noqa: F401

    nodata = data.rio.nodata
    dtype = np.dtype(data.dtype)
    work = work_dtype(dtype)
    raw = data.data
    window = source_window(data)
    if window is not None:
        # Still a source: upscaling reads the haloed windows, masked, straight from the file.
        masking = _MaskedWindows(window, work, nodata)
        name = "masked-" + tokenize(raw.name, nodata, work.str)
        meta = np.empty((0,) * raw.ndim, work)
        out = attach_source(data, Source(masking, raw.chunks, name=name, meta=meta))
    else:
        out = data.copy(data=da.map_blocks(_mask, raw, work, nodata, dtype=work))
    out.attrs = {k: v for k, v in data.attrs.items() if k not in ("_FillValue", "nodata")}
    out.encoding = {**data.encoding, "dtype": dtype.name}
    if nodata is not None:
        out = out.rio.write_nodata(nodata, encoded=True)
    return out


def _mask(block: np.ndarray, work: np.dtype, nodata: float | None) -> np.ndarray:
    out = block.astype(work)
    if nodata is not None and not np.isnan(nodata):
        out[block == nodata] = np.nan
    return out


class _MaskedWindows(WindowArray):
    """The windows of ``source`` with its ``nodata`` pixels as NaN in the float dtype ``work``."""

    def __init__(self, source: WindowArray, work: np.dtype, nodata: float | None) -> None:
        self.source = source
        self.shape = source.shape
        self.dtype = work
        self.nodata = nodata

    def _read(self, box: list[tuple[int, int]]) -> np.ndarray:
        return _mask(np.asarray(self.source._read(box)), self.dtype, self.nodata)


def _tidy_attrs(data: xr.DataArray) -> xr.DataArray:
    # Per-band scales/offsets stay with the data under rasterio's names; identity values go.
    attrs = dict(data.attrs)
    attrs.pop("_CRS", None)  # GDAL's copy of the CRS in a Zarr store: the CRS is on spatial_ref
    for cf, rio_name, identity in (("scale_factor", "scales", 1.0), ("add_offset", "offsets", 0.0)):
        if cf in attrs:
            values = np.atleast_1d(np.asarray(attrs.pop(cf), dtype=np.float64))
            if not np.all(values == identity):
                attrs[rio_name] = [float(v) for v in values]
    data.attrs = attrs
    return data
