"""Write upscaled rasters: Zarr (chunk-aligned, parallel, resumable) and GeoTIFF/COG (atomic).

Workers read and write the data; only a few bytes per block come back to the caller. Outputs are
built under a temporary name beside the target and moved there when complete, so a failed or
interrupted job never leaves something that looks finished; a write that fails (disk full, I/O
error, permission lost) fails the job with an `OutputError` naming the output. A Zarr job records
each finished chunk once its data is on disk; rerunning the same job finishes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial as partial_function
from pathlib import Path
from typing import Any, cast

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.cluster import compute as cluster_compute
from dasksr.errors import DasksrError, InvalidArgumentError, OutputError, OutputExistsError
from dasksr.io.read import _reason

__all__ = ["to_zarr", "to_geotiff", "prepare_output", "check_not_an_input", "zarr_job", "WriteJob"]

_PROGRESS = ".dasksr-progress"
_GTIFF_LARGE = 4 * 2**30 - 2**26  # bytes at which a GeoTIFF must be BigTIFF


def prepare_output(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Check that ``path`` may be written: absent (or ``overwrite``), in a writable folder.

    ``overwrite`` replaces only a raster file (a TIFF) or a Zarr store, never a folder of other
    files.
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise OutputExistsError(
                f"output {str(p)!r} exists: pass --overwrite (overwrite=True) to replace it"
            )
        _check_replaceable(p)
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(
            f"output folder {str(parent)!r} is a file, not a folder: choose an output path in a folder"
        )
    if not parent.is_dir():
        raise OutputError(f"output folder {str(parent)!r} does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"output folder {str(parent)!r} is not writable: choose another output path"
        )
    # Tasks may run in worker processes started in another folder: they get the absolute path.
    return p.absolute()


def check_not_an_input(
    inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> None:
    """Refuse an ``output`` that is one of ``inputs`` (by any spelling or link), inside one, or
    holding one: the job would replace or write into the data it reads."""
    out = Path(os.path.realpath(output))
    for source in inputs:
        src = Path(os.path.realpath(source))
        same = src == out
        if not same and os.path.exists(source) and os.path.exists(output):
            same = os.path.samefile(source, output)
        if same or src in out.parents or out in src.parents:
            raise InvalidArgumentError(
                f"output {str(output)!r} is the input {str(source)!r} or overlaps it: "
                "write the result to another path"
            )


_ZARR_METADATA = ("zarr.json", ".zgroup", ".zarray")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _check_replaceable(path: Path) -> None:
    """Raise `OutputError` unless ``path`` is a Zarr store or a TIFF file (or a link to one)."""
    if path.is_dir():
        if any((path / name).is_file() for name in _ZARR_METADATA):
            return
        what = "a folder that is not a Zarr store"
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as exc:
            raise _write_failed(str(path), _cause(exc)) from None
        if head in _TIFF_MAGIC:
            return
        what = "a file that is not a TIFF"
    raise OutputError(
        f"output {str(path)!r} is {what}: --overwrite replaces only a raster file or a Zarr "
        "store; choose another output path"
    )


def _write_failed(shown: str, reason: str) -> OutputError:
    return OutputError(
        f"output {shown!r} cannot be written ({reason}): free disk space or fix the "
        "folder's permissions, then run the job again"
    )


def _cause(exc: BaseException) -> str:
    """What went wrong, in a few words: the OS's own text for an OSError with an errno."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return exc.strerror
    return _reason(exc)


def _install(built: Path, target: Path) -> None:
    """Move the finished output ``built`` to ``target``, replacing a raster or store there.

    A file replaces a file in one atomic rename. Otherwise the old output is renamed aside, the
    new one moved in, and only then the old one deleted: an interruption at any step leaves the
    old or the new output (the old one, at worst, under its aside name ``.NAME.*.old``).
    """
    try:
        present = target.exists() or target.is_symlink()
        if present:
            _check_replaceable(target)  # again: it may have changed during the job
        folder = target.is_dir() and not target.is_symlink()
        if not present or not (folder or built.is_dir()):
            os.replace(built, target)
            return
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(target, aside)
        try:
            os.replace(built, target)
        except BaseException:
            os.replace(aside, target)
            raise
        _remove(aside)
    except OSError as exc:
        if isinstance(exc, DasksrError):
            raise
        raise _write_failed(str(target), _cause(exc)) from None


def _as_raster(data: xr.DataArray | xr.Dataset, *, single_band_dim: bool = True) -> xr.DataArray:
    """``data`` as a dask-backed DataArray with its spatial dims last.

    A Dataset is accepted when it holds exactly one variable with both spatial dims.
    ``single_band_dim`` refuses more than one leading dim (a GeoTIFF holds ``(band, y, x)``).
    """
    from dasksr.api import spatial_dims

    if isinstance(data, xr.Dataset):
        rasters = _spatial_variables(data)
        if len(rasters) != 1:
            raise InvalidArgumentError(
                f"the Dataset holds {len(rasters)} raster variables {sorted(rasters)}: "
                "a GeoTIFF holds one, write ds[NAME] (or use to_zarr, which writes them all)"
            )
        data = next(iter(rasters.values()))
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(
            "data must be an xarray.DataArray or Dataset: open it with dasksr.open_raster"
        )
    ydim, xdim = spatial_dims(data)
    lead = [d for d in data.dims if d not in (ydim, xdim)]
    if single_band_dim and len(lead) > 1:
        raise InvalidArgumentError(
            f"data has dims {data.dims}: a raster file holds (band, y, x); "
            "stack or select the extra dims first"
        )
    data = data.transpose(*lead, ydim, xdim)
    if not isinstance(data.data, da.Array):
        data = data.chunk()
    return _unmasked(data)


def _unmasked(data: xr.DataArray) -> xr.DataArray:
    """A masked raster back in the file's dtype with the file's nodata value in its holes.

    Masked means as ``open_raster(masked=True)`` and ``rioxarray.open_rasterio(masked=True)`` read
    it: NaN holes, the file's nodata in ``encoding['_FillValue']`` (``.rio.encoded_nodata``) and its
    dtype in ``encoding['dtype']``. Integers are rounded and clipped, as `dasksr.upscale` does.
    This is what ``rio.to_raster`` writes, so both writers store the file's own nodata value.
    """
    import rioxarray  # noqa: F401

    encoded = data.rio.encoded_nodata
    if encoded is None or data.dtype.kind != "f":
        return data
    target = np.dtype(data.encoding.get("dtype", data.dtype))
    pixels = da.map_blocks(_fill_holes, data.data, target, float(encoded), dtype=target)
    out = data.copy(data=pixels)
    out.encoding = {k: v for k, v in data.encoding.items() if k not in ("_FillValue", "dtype")}
    return out.rio.write_nodata(encoded, encoded=False)


def _fill_holes(block: np.ndarray, target: np.dtype, nodata: float) -> np.ndarray:
    from dasksr.kernels.values import cast

    if target.kind == "f":
        return np.where(np.isnan(block), nodata, block).astype(target)
    return np.asarray(cast(block, target, nodata))


def _spatial_variables(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The variables of ``ds`` that have both spatial dims, by name."""
    import rioxarray  # noqa: F401

    try:
        ydim, xdim = ds.rio.y_dim, ds.rio.x_dim
    except Exception:  # rioxarray raises its own errors when it cannot tell
        raise InvalidArgumentError(
            "the Dataset has no recognisable spatial dims: name them 'y' and 'x' "
            "or set them with ds.rio.set_spatial_dims()"
        ) from None
    return {
        str(name): var.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)
        for name, var in ds.data_vars.items()
        if ydim in var.dims and xdim in var.dims
    }


def _regular_chunks(array: da.Array) -> da.Array:
    """Rechunk so that every chunk but the last of each axis has the same size (Zarr's grid)."""
    target = tuple(c[0] for c in array.chunks)
    regular = all(
        all(s == t for s in c[:-1]) and c[-1] <= t
        for c, t in zip(array.chunks, target, strict=True)
    )
    return array if regular else array.rechunk(target)


# ----------------------------------------------------------------------------------------------
# Zarr
# ----------------------------------------------------------------------------------------------


#: The Zarr format written by default: 2, the one every GDAL since 3.4 reads (rasterio's wheels
#: bundle GDAL 3.10, which cannot read zarr-python's format 3; docs/conventions.md).
DEFAULT_ZARR_FORMAT = 2
#: Codecs ``to_zarr`` offers, with the compression levels each accepts.
ZARR_CODECS = {"zstd": range(0, 10), "lz4": range(0, 10), "gzip": range(1, 10), "none": range(0, 1)}


def to_zarr(
    data: xr.DataArray | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    zarr_format: int = DEFAULT_ZARR_FORMAT,
    codec: str = "zstd",
    compression_level: int = 1,
    compute: bool = True,
) -> Any:
    """Write ``data`` to a Zarr store, one Zarr chunk per dask chunk, in parallel.

    A DataArray is stored as the variable ``name`` (default: its own name, else ``'data'``); a
    Dataset with every variable (those without both spatial dims are written as they are).
    The store opens with plain ``xarray.open_zarr`` in the data's own dtype (nodata is kept in a
    ``nodata`` attribute, not as a CF ``_FillValue``, and scales/offsets under rasterio's names
    ``scales``/``offsets``), rioxarray finds its CRS and transform on ``spatial_ref``, and GDAL
    (``rasterio.open(path)``, ``gdalinfo 'ZARR:"path":/data'``) finds them too in format 2.

    The store is built at ``PATH.partial`` and moved to ``PATH`` when every chunk is written. If
    a job is interrupted, running the same job again writes only the chunks that are missing. The
    "same job" is the same dask graph name for every variable (for `dasksr.upscale`: the input
    path with its size and modification time, the method's `~dasksr.kernels.Method.token`, the
    scale and nodata), shape, chunks, dtype, format and codec; a partial store of any other job
    is discarded and everything is computed again.

    Parameters
    ----------
    zarr_format : {2, 3}, default 2
        Format 2 opens in every GDAL since 3.4 (so in rasterio, rioxarray.open_rasterio and QGIS);
        format 3 needs GDAL 3.11 or later (docs/conventions.md).
    codec : {'zstd', 'lz4', 'gzip', 'none'}, default 'zstd'
        ``zstd`` and ``lz4`` are Blosc with bit-shuffle; ``gzip`` is plain zlib/gzip, which every
        Zarr reader has; ``none`` stores raw chunks.
    compression_level : int, default 1
        0-9 for Blosc (``zstd``, ``lz4``), 1-9 for ``gzip``, 0 for ``none``. Sizes per level on
        upscaled imagery are in docs/benchmarks.md.
    compute : bool, default True
        False returns a ``dask.delayed.Delayed`` that writes the chunks and then moves the store
        into place, returning its path, when computed (e.g. together with other writes in one
        ``dask.compute``). The partial store's metadata is written now; the rest when computed.

    Raises
    ------
    InvalidArgumentError
        When ``zarr_format``, ``codec`` or ``compression_level`` is not one of the above.
    OutputError
        When the output cannot be written (disk full, I/O error, permission); the partial store
        is kept, so that the same job resumes once the cause is fixed.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        The path of the finished store, or (``compute=False``) a Delayed that returns it.
    """
    job = zarr_job(
        data,
        path,
        name=name,
        overwrite=overwrite,
        zarr_format=zarr_format,
        codec=codec,
        compression_level=compression_level,
    )
    if not compute:
        import dask

        # The last task installs the store once every chunk task has run.
        return dask.delayed(_after, pure=False)(
            job.tasks, job.finish, dask_key_name=f"to_zarr-{job.name}"
        )
    return job.run(progress=progress)


@dataclass(frozen=True)
class WriteJob:
    """A write made ready: its tasks (dask collections) and what installs the output after them.

    The command line makes the job before its cluster is up (the output's metadata is written
    meanwhile) and runs it there.
    """

    name: str
    tasks: list[Any]
    finish: Callable[[], Path]

    def run(self, *, progress: bool = False) -> Path:
        """Compute the tasks on the active scheduler, then install the output; its path."""
        if self.tasks:
            cluster_compute(self.tasks, progress=progress)
        return self.finish()


def zarr_job(
    data: xr.DataArray | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    overwrite: bool = False,
    zarr_format: int = DEFAULT_ZARR_FORMAT,
    codec: str = "zstd",
    compression_level: int = 1,
) -> WriteJob:
    """The job of `to_zarr` with these arguments: the partial store is made now, chunks later."""
    compressor = _compressor(codec, compression_level, zarr_format)
    if isinstance(data, xr.Dataset):
        rasters = _spatial_variables(data)
        if not rasters:
            raise InvalidArgumentError(
                "the Dataset has no variable with both spatial dims: nothing to write"
            )
        others = {str(k): v for k, v in data.data_vars.items() if str(k) not in rasters}
        attrs = dict(data.attrs)
    else:
        rasters = {str(name or data.name or "data"): data}
        others, attrs = {}, {}
    rasters = {var: _zarr_ready(raster) for var, raster in rasters.items()}
    target = prepare_output(path, overwrite=overwrite)
    partial = target.with_name(target.name + ".partial")
    job = _job_signature(rasters, f"{zarr_format}:{codec}:{compression_level}")
    state = partial / _PROGRESS
    try:
        _start_zarr(partial, job, rasters, others, attrs, compressor, zarr_format)
        done = {p.name for p in state.iterdir() if p.name != "job.json"}
    except OSError as exc:
        if isinstance(exc, DasksrError):
            raise
        raise _write_failed(str(target), _cause(exc)) from None
    pending = []
    for var, raster in rasters.items():
        array = raster.data
        writes = da.map_blocks(
            _write_zarr_block,
            array,
            store=str(partial / var),
            marker=str(state / var),
            shown=str(path),
            chunks=tuple((1,) * len(c) for c in array.chunks),
            dtype=np.uint8,
            meta=np.empty((0,) * array.ndim, dtype=np.uint8),
        )
        pending += [
            d
            for idx, d in np.ndenumerate(writes.to_delayed())
            if _marker_name(var, idx) not in done
        ]
    finish = partial_function(_finish_zarr, partial, target, list(rasters), str(path))
    return WriteJob(job, pending, finish)


def _after(_done: Any, then: Any) -> Any:
    """``then()``, once ``_done`` (the write tasks' results) exists: a delayed write's last task."""
    return then()


def _finish_zarr(partial: Path, target: Path, variables: list[str], shown: str) -> Path:
    """Tidy the finished partial store (job state, torn files) and move it to ``target``."""
    try:
        # A worker lost in the middle of a chunk write leaves zarr's temporary file beside it.
        for var in variables:
            for torn in (partial / var).rglob("*.partial"):
                torn.unlink()
        _remove(partial / _PROGRESS)
    except OSError as exc:
        raise _write_failed(shown, _cause(exc)) from None
    _install(partial, target)
    return target


def _start_zarr(
    partial: Path,
    job: str,
    rasters: dict[str, xr.DataArray],
    others: dict[str, xr.DataArray],
    attrs: dict[str, Any],
    compressor: Any,
    zarr_format: int,
) -> None:
    """Create the partial store with its metadata and job record, unless it holds this job."""
    import zarr

    state = partial / _PROGRESS
    if not _resumable(partial, job):
        _remove(partial)
        ds = xr.merge(
            [_zarr_dataset(raster, var) for var, raster in rasters.items()],
            compat="override",
            join="exact",
            combine_attrs="override",
        )
        for var, other in others.items():
            ds[var] = other
        ds.attrs = attrs
        encoding = {
            var: {
                "chunks": _zarr_chunks(raster.data),
                "compressors": None if compressor is None else [compressor],
                # xarray would add a NaN _FillValue to float data: plain open_zarr would then mask,
                # and rioxarray would report NaN instead of the `nodata` attribute.
                "_FillValue": None,
            }
            for var, raster in rasters.items()
        }
        with warnings.catch_warnings():
            # Consolidated metadata lets plain xarray.open_zarr open the store without a warning;
            # zarr notes that it is an extension of the v3 specification.
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(
                partial,
                mode="w",
                compute=False,
                consolidated=True,
                zarr_format=zarr_format,
                encoding=encoding,
            )
        for var, other in others.items():  # small non-raster variables: written now
            zarr.open_array(str(partial / var), mode="r+")[...] = np.asarray(other.values)
        state.mkdir()
        (state / "job.json").write_text(json.dumps({"job": job}))


def _zarr_ready(raster: xr.DataArray) -> xr.DataArray:
    """A dask-backed raster with spatial dims last and chunks on a regular (Zarr) grid."""
    raster = _as_raster(raster, single_band_dim=False)
    return raster.copy(data=_regular_chunks(raster.data))


def _marker_name(var: str, index: tuple[int, ...]) -> str:
    return var + "." + ".".join(map(str, index))


def _compressor(codec: str, level: int, zarr_format: int) -> Any:
    """The compressor of ``codec`` at ``level`` for ``zarr_format``, or None for ``'none'``.

    Blosc with zstd on bit-shuffled pixels is the default: on upscaled imagery it compresses
    better than plain zstd (level 3) at about twice its speed, and GDAL reads Blosc in both
    formats, where zarr-python's plain ``zstd`` codec in format 3 needs GDAL 3.11.
    """
    if zarr_format not in (2, 3) or isinstance(zarr_format, bool):
        raise InvalidArgumentError(
            f"zarr_format={zarr_format!r} is not a Zarr format: use 2 (read by every GDAL since "
            "3.4) or 3 (GDAL 3.11 or later)"
        )
    levels = ZARR_CODECS.get(codec)
    if levels is None:
        raise InvalidArgumentError(
            f"codec={codec!r} is not a Zarr codec dasksr writes: use one of {sorted(ZARR_CODECS)}"
        )
    if isinstance(level, bool) or not isinstance(level, int) or level not in levels:
        raise InvalidArgumentError(
            f"compression_level={level!r} is out of range for codec {codec!r}: use "
            f"{levels.start} to {levels.stop - 1}"
        )
    if codec == "none":
        return None
    if zarr_format == 2:
        import numcodecs

        if codec == "gzip":
            return numcodecs.GZip(level=level)
        return numcodecs.Blosc(cname=codec, clevel=level, shuffle=numcodecs.Blosc.BITSHUFFLE)
    from zarr.codecs import BloscCodec, GzipCodec

    if codec == "gzip":
        return GzipCodec(level=level)
    return BloscCodec(cname=cast(Any, codec), clevel=level, shuffle="bitshuffle")


def _zarr_chunks(array: da.Array) -> tuple[int, ...]:
    """One Zarr chunk per band (or time step) and per spatial dask chunk.

    Every dask block then writes whole Zarr chunks that no other block touches, and a reader can
    fetch one band without decompressing the others.
    """
    return (*(1 for _ in array.chunks[:-2]), array.chunks[-2][0], array.chunks[-1][0])


def _zarr_dataset(data: xr.DataArray, var: str) -> xr.Dataset:
    import rioxarray  # noqa: F401

    nodata = data.rio.nodata
    attrs = {
        k: v
        for k, v in data.attrs.items()
        if k not in ("_FillValue", "missing_value", "fill_value", "scale_factor", "add_offset")
    }
    if nodata is not None:
        attrs["nodata"] = np.asarray(nodata).item()
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}
    clean = data.copy()
    clean.attrs = attrs
    clean.encoding = {}
    ds = clean.to_dataset(name=var)
    if "spatial_ref" in ds.coords:
        ds[var].attrs["grid_mapping"] = "spatial_ref"
    crs = data.rio.crs
    if crs is not None:
        # GDAL's own CRS attribute, beside CF's grid_mapping: GDAL reads it since 3.4, and the
        # CF variable only in later versions (docs/conventions.md).
        ds[var].attrs["_CRS"] = {"wkt": crs.to_wkt()}
    return ds


def _job_signature(rasters: dict[str, xr.DataArray], storage: str) -> str:
    text = (
        storage
        + "|"
        + "|".join(
            f"{var}:{r.data.name}:{r.shape}:{r.data.chunks}:{r.dtype}" for var, r in rasters.items()
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _resumable(partial: Path, job: str) -> bool:
    meta = partial / _PROGRESS / "job.json"
    try:
        return bool(json.loads(meta.read_text())["job"] == job)
    except (OSError, ValueError, KeyError):
        return False


def _write_zarr_block(
    block: np.ndarray,
    *,
    store: str,
    marker: str,
    shown: str,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Write one block into its region of the Zarr array, then record it as done.

    The record is made only once the block's chunk files are on disk (fsync), so that it never
    says "done" for data a crash could still lose. Running the task twice is harmless: zarr
    replaces each chunk file in one rename, with the same bytes.
    """
    assert block_info is not None
    info = block_info[0]
    try:
        _write_region(store, info["array-location"], np.asarray(block))
        done = Path(marker)
        (done.parent / _marker_name(done.name, info["chunk-location"])).touch()
    except OSError as exc:
        reason = _cause(exc)
    else:
        return np.ones((1,) * block.ndim, dtype=np.uint8)
    _settle_zarr_writes()
    # Raised outside the handler: distributed pickles the chained exceptions with the error.
    raise _write_failed(shown, reason)


def _write_region(store: str, location: list[tuple[int, int]], block: np.ndarray) -> None:
    """``array[location] = block`` in the Zarr array at ``store``, then fsync its chunk files."""
    import zarr

    # Every chunk is written, even one of fill values only: zarr would otherwise compare each
    # chunk with the fill value, on its single event-loop thread, which costs more than the write.
    array = zarr.open_array(store, mode="r+").with_config({"write_empty_chunks": True})
    array[tuple(slice(a, b) for a, b in location)] = block
    spans = [range(a // c, -(-b // c)) for (a, b), c in zip(location, array.chunks, strict=True)]
    folders = set()
    for index in itertools.product(*spans):
        chunk = Path(store, array.metadata.encode_chunk_key(index))
        _fsync(chunk)
        folders.add(chunk.parent)
    if os.name != "nt":  # the renames that put the chunk files there (no folder fsync on Windows)
        for folder in folders:
            _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ----------------------------------------------------------------------------------------------
# GeoTIFF
# ----------------------------------------------------------------------------------------------


def to_geotiff(
    data: xr.DataArray | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    cog: bool = False,
    compress: str = "deflate",
    blocksize: int = 512,
    predictor: int | None = None,
    overview_resampling: str = "average",
    progress: bool = False,
    compute: bool = True,
) -> Any:
    """Write ``data`` to a tiled, compressed GeoTIFF (BigTIFF when large), or a COG with overviews.

    Every dask block is computed on the workers and written into the file by the worker, one
    block at a time under a lock; GDAL compresses with all cores. The file is written under a
    temporary name beside ``path``, checked to hold every tile, and renamed when complete. A COG
    is made from that tiled file by GDAL's COG driver (a file-to-file copy that builds the
    overviews): no pixel goes through the client.

    On a cluster the workers write the file themselves, so ``path`` must be on a file system
    that the workers and the client share (the same path on every machine).

    Parameters
    ----------
    compute : bool, default True
        False returns a ``dask.delayed.Delayed`` that writes the file when computed and returns
        its path; nothing is created until then. If that computation fails, a hidden
        ``.NAME.*.partial.tif`` may stay beside ``path``, never a file at ``path``.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        The path of the finished file, or (``compute=False``) a Delayed that returns it.

    Raises
    ------
    OutputError
        When the file cannot be written (disk full, I/O error, permission); nothing is left at
        ``path`` nor beside it.
    """
    import rioxarray  # noqa: F401

    data = _as_raster(data)
    target = prepare_output(path, overwrite=overwrite)
    if blocksize % 16:
        raise InvalidArgumentError(f"blocksize={blocksize} must be a multiple of 16")
    array = data.data if data.ndim == 3 else data.data[None]
    bands, height, width = array.shape
    dtype = np.dtype(array.dtype)
    nodata = data.rio.nodata
    large = bands * height * width * dtype.itemsize >= _GTIFF_LARGE
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": dtype.name,
        "crs": data.rio.crs,
        "transform": _transform(data),
        "nodata": None if nodata is None else float(nodata),
        "tiled": True,
        "blockxsize": min(blocksize, _round16(width)),
        "blockysize": min(blocksize, _round16(height)),
        "compress": compress,
        "bigtiff": "YES" if large else "IF_SAFER",
        "num_threads": "ALL_CPUS",
        "interleave": "pixel" if bands <= 4 else "band",
    }
    if predictor is not None:
        profile["predictor"] = predictor
    token = uuid.uuid4().hex[:8]
    tmp = target.with_name(f".{target.name}.{token}.partial.tif")
    shown = str(path)
    writer = _GeoTIFFWriter(str(tmp), shown, profile, _band_metadata(data, bands))
    cog_options = None
    if cog:
        cog_options = {k: v for k, v in profile.items() if k in ("compress", "bigtiff")}
        cog_options.update(blocksize=blocksize, overview_resampling=overview_resampling)
        if predictor is not None:
            cog_options["predictor"] = predictor
    finish = partial_function(_finish_geotiff, tmp, target, token, shown, cog_options)
    store = da.store(
        array, cast(Any, writer), lock=cast(Any, _WriteLock(f"dasksr-{token}")), compute=False
    )
    if not compute:
        import dask

        return dask.delayed(_after, pure=False)(store, finish, dask_key_name=f"to_geotiff-{token}")
    try:
        writer.create()  # now, so that a folder that cannot take the file fails before the job
        cluster_compute([store], progress=progress)
        return finish()
    finally:
        _remove_partials(target, token)


def _finish_geotiff(
    tmp: Path, target: Path, token: str, shown: str, cog_options: dict[str, Any] | None
) -> Path:
    """Check the written file's tiles, convert it to a COG if asked, and move it to ``target``.

    Runs where the write ends: in the client, or in the last task of a delayed write, which
    removes the partial files when it fails.
    """
    import rasterio
    import rasterio.shutil

    try:
        _check_tiles(tmp, shown)
        if cog_options is not None:
            final_tmp = target.with_name(f".{target.name}.{token}.partial-cog.tif")
            with _output_errors(shown), rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
                rasterio.shutil.copy(
                    tmp, final_tmp, driver="COG", num_threads="ALL_CPUS", **cog_options
                )
            tmp.unlink()
            tmp = final_tmp
            _check_tiles(tmp, shown)
        _install(tmp, target)
    except BaseException:
        _remove_partials(target, token)
        raise
    return target


def _remove_partials(target: Path, token: str) -> None:
    for leftover in target.parent.glob(f".{target.name}.{token}.partial*"):
        leftover.unlink()


def _transform(data: xr.DataArray) -> Any:
    from dasksr.api import raster_transform

    found = raster_transform(data)
    return data.rio.transform() if found is None else found


def _round16(n: int) -> int:
    return max(16, ((n + 15) // 16) * 16)


#: Attributes written as band metadata or the profile, or that describe the storage, not tags.
_NOT_TAGS = frozenset(
    ("long_name", "units", "scales", "offsets", "scale_factor", "add_offset", "_FillValue",
     "missing_value", "fill_value", "nodata", "grid_mapping", "coordinates")
)  # fmt: skip


def _band_metadata(data: xr.DataArray, bands: int) -> dict[str, Any]:
    """What `_apply_band_metadata` writes, in plain values that travel to the workers."""
    meta: dict[str, Any] = {}
    descriptions = data.attrs.get("long_name")
    if isinstance(descriptions, (list, tuple)) and len(descriptions) == bands:
        meta["descriptions"] = [str(t) if t else "" for t in descriptions]
    elif isinstance(descriptions, str) and bands == 1:
        meta["descriptions"] = [descriptions]
    for attr in ("scales", "offsets"):
        values = data.attrs.get(attr)
        if values is not None:
            broadcast = np.broadcast_to(np.asarray(values, dtype=np.float64), (bands,))
            meta[attr] = tuple(float(v) for v in broadcast)
    # Dataset-level tags (SENSOR, AREA_OR_POINT, ...) as rioxarray reads them into attrs.
    meta["tags"] = {
        str(k): v
        for k, v in data.attrs.items()
        if k not in _NOT_TAGS and isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }
    units = data.attrs.get("units")
    if isinstance(units, str):
        meta["units"] = (units,) * bands
    elif isinstance(units, (list, tuple)) and len(units) == bands:  # per band, as rioxarray reads
        meta["units"] = tuple(str(u) if u else "" for u in units)
    return meta


def _apply_band_metadata(dst: Any, meta: dict[str, Any]) -> None:
    for i, text in enumerate(meta.get("descriptions", ()), start=1):
        if text:
            dst.set_band_description(i, text)
    for attr in ("scales", "offsets", "units"):
        if attr in meta:
            setattr(dst, attr, meta[attr])
    if meta.get("tags"):
        dst.update_tags(**meta["tags"])


class _WriteLock:
    """The lock of the tasks that write one file, chosen where a task runs.

    On a distributed worker it is a `distributed.Lock` (the workers may be processes on several
    machines); elsewhere a lock shared by the threads of the process. Choosing at run time keeps
    a write built with ``compute=False`` before a client existed safe on a cluster.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]

    def _held(self) -> list[Any]:
        import threading

        local = self.__dict__.get("_local")
        if local is None:
            local = self.__dict__.setdefault("_local", threading.local())
        return local.__dict__.setdefault("held", [])

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        lock = _lock(self.name)
        acquired = bool(lock.acquire(*args, **kwargs))
        if acquired:
            self._held().append(lock)
        return acquired

    def release(self) -> None:
        self._held().pop().release()

    def __enter__(self) -> _WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock(name: str) -> Any:
    """A `distributed.Lock` in a task on a distributed worker, else a process-wide lock."""
    if "distributed" in sys.modules:  # never imported just to learn that there is no worker
        from distributed import Lock, get_worker

        try:
            get_worker()
        except ValueError:  # not in a worker
            pass
        else:
            return Lock(name)
    from dask.utils import SerializableLock

    return SerializableLock(name)


class _GeoTIFFWriter:
    """``da.store`` target: opens the file by path in each task (no open dataset is shipped).

    The first block to be written creates the file (under the write lock) unless `create` made
    it before. ``shown`` is the output path that error messages name (not the temporary file's).
    """

    def __init__(
        self, path: str, shown: str, profile: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        self.path = path
        self.shown = shown
        self.profile = profile
        self.metadata = metadata

    def create(self) -> None:
        import rasterio

        with (
            _output_errors(self.shown),
            rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"),
            rasterio.open(self.path, "w", **self.profile) as dst,
        ):
            _apply_band_metadata(dst, self.metadata)

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        import rasterio
        from rasterio.windows import Window

        if not os.path.exists(self.path):
            self.create()
        bands, rows, cols = key
        window = Window.from_slices(rows, cols, height=value.shape[1], width=value.shape[2])
        indexes = list(range((bands.start or 0) + 1, (bands.start or 0) + value.shape[0] + 1))
        try:
            with (
                rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"),
                rasterio.open(self.path, "r+", num_threads="ALL_CPUS") as dst,
            ):
                dst.write(np.asarray(value), indexes=indexes, window=window)
        except Exception as exc:  # rasterio's errors and OSErrors
            reason = _cause(exc)
        else:
            return
        # Raised outside the handler: rasterio's CPLE errors would ride along as __context__, and
        # distributed cannot unpickle them.
        raise _write_failed(self.shown, reason)


@contextmanager
def _output_errors(shown: str) -> Iterator[None]:
    """Turn an OSError or rasterio error raised in the block into `_write_failed(shown)`."""
    from rasterio.errors import RasterioError

    try:
        yield
    except DasksrError:
        raise
    except (OSError, RasterioError) as exc:
        reason = _cause(exc)
    else:
        return
    raise _write_failed(shown, reason)


def _settle_zarr_writes(timeout: float = 5.0) -> None:
    """Wait for the chunk writes zarr still runs on its event loop after one of them failed.

    zarr gathers a chunk's writes on its own loop; when one fails, the others are left pending,
    and at interpreter exit asyncio reports each of them ("Task was destroyed but it is
    pending!") after dasksr's one-line error.
    """
    if "zarr" not in sys.modules:
        return
    import asyncio

    try:
        from zarr.core.sync import _get_loop
    except ImportError:  # another zarr layout: nothing to settle
        return

    async def settle() -> None:
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(settle(), _get_loop()).result(timeout + 1)


def _check_tiles(path: Path, shown: str) -> None:
    """Raise `OutputError` unless every tile of the GeoTIFF at ``path`` is stored in the file.

    With GDAL's multithreaded compression a tile that cannot be written (disk full, I/O error)
    is only logged, not raised: its byte count stays 0, or its bytes lie past the end of the file.
    Checking the tile index costs two metadata look-ups per tile.
    """
    import rasterio

    with _output_errors(shown):
        size = path.stat().st_size
        with rasterio.open(path) as src:
            height, width = src.block_shapes[0]
            per_band = src.count > 1 and src.interleaving is not None
            per_band = per_band and src.interleaving.name.lower() == "band"
            for band in range(1, src.count + 1) if per_band else (1,):
                for i in range(math.ceil(src.height / height)):
                    for j in range(math.ceil(src.width / width)):
                        offset = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=band)
                        count = src.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=band)
                        start, length = int(offset or 0), int(count or 0)
                        if start <= 0 or length <= 0 or start + length > size:
                            raise _write_failed(
                                shown, f"tile {i}, {j} of band {band} was not written"
                            )
