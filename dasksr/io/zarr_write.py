"""Write rasters to Zarr: chunk-aligned, in parallel, resumable.

Each finished chunk is recorded once its data is on disk; rerunning the same job finishes the
rest. The store is built beside the target and moved there when complete (`dasksr.io.write`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial as partial_function
from pathlib import Path
from typing import Any, cast

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.cluster import check_workers_write
from dasksr.errors import DasksrError, InvalidArgumentError, OutputError
from dasksr.io.paths import is_url
from dasksr.io.write import (
    _after,
    _as_raster,
    _cause,
    _install,
    _prepare_local,
    _remove,
    _spatial_variables,
    _write_failed,
)
from dasksr.stream import compute as compute_in_strips

__all__ = ["DEFAULT_ZARR_FORMAT", "ZARR_CODECS", "WriteJob", "to_zarr", "zarr_job"]


_PROGRESS = ".dasksr-progress"


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
    finish: Callable[[], Path | str]
    #: The local folder that the tasks write in (None for a URL): checked to be the workers' too.
    folder: Path | None = None
    shown: str = ""
    #: Whether ``folder`` is a partial store this job started, with no block written yet: a
    #: refused start then removes it (there is nothing to resume).
    fresh: bool = False
    #: The rasters' dask arrays, whose rows of blocks `run` computes strip by strip.
    rasters: tuple[da.Array, ...] = ()

    def check_workers(self) -> None:
        """`check_workers_write` on ``folder``; a `fresh` partial store is removed if refused."""
        if self.folder is None:
            return
        try:
            check_workers_write(self.folder, shown=self.shown)
        except OutputError:
            if self.fresh:
                _remove(self.folder)
            raise

    def run(self, *, progress: bool = False) -> Path | str:
        """Compute the tasks on the active scheduler, strip by strip of the rasters' rows
        (`dasksr.stream.compute`), then install the output; its path."""
        if self.tasks:
            self.check_workers()
            compute_in_strips(self.tasks, self.rasters, progress=progress)
        return self.finish()


def zarr_job(
    data: xr.DataArray | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    name: str | None = None,
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
    job = _job_signature(rasters, f"{zarr_format}:{codec}:{compression_level}")
    if is_url(path):
        from dasksr.io.zarr_remote import remote_zarr_job

        return cast(
            WriteJob,
            remote_zarr_job(
                os.fspath(path),
                rasters,
                others,
                attrs,
                job,
                compressor,
                zarr_format,
                overwrite=overwrite,
            ),
        )
    target = _prepare_local(path, overwrite=overwrite)
    partial = target.with_name(target.name + ".partial")
    state = partial / _PROGRESS
    try:
        _start_zarr(partial, job, rasters, others, attrs, compressor, zarr_format)
        done = {p.name for p in state.iterdir() if p.name != "job.json"}
    except OSError as exc:
        if isinstance(exc, DasksrError):
            raise
        raise _store_failed(str(target), partial, _cause(exc)) from None
    pending = block_writes(
        rasters,
        done,
        _write_zarr_block,
        lambda var: {"store": str(partial / var), "marker": str(state / var), "shown": str(path)},
    )
    finish = partial_function(_finish_zarr, partial, target, list(rasters), str(path))
    arrays = tuple(r.data for r in rasters.values())
    return WriteJob(
        job, pending, finish, folder=partial, shown=str(path), fresh=not done, rasters=arrays
    )


def block_writes(
    rasters: dict[str, xr.DataArray],
    done: set[str],
    write: Callable[..., np.ndarray],
    options: Callable[[str], dict[str, Any]],
) -> list[Any]:
    """One delayed ``write(block, **options(var))`` per block of every raster not in ``done``
    (the names of the blocks' markers); each returns one byte."""
    pending = []
    for var, raster in rasters.items():
        array = raster.data
        writes = da.map_blocks(
            write,
            array,
            **options(var),
            chunks=tuple((1,) * len(c) for c in array.chunks),
            dtype=np.uint8,
            meta=np.empty((0,) * array.ndim, dtype=np.uint8),
        )
        pending += [
            d
            for idx, d in np.ndenumerate(writes.to_delayed(optimize_graph=False))
            if _marker_name(var, idx) not in done
        ]
    return pending


def _finish_zarr(partial: Path, target: Path, variables: list[str], shown: str) -> Path:
    """Tidy the finished partial store (job state, torn files) and move it to ``target``."""
    try:
        # A worker lost in the middle of a chunk write leaves zarr's temporary file beside it.
        for var in variables:
            for torn in (partial / var).rglob("*.partial"):
                torn.unlink()
        _remove(partial / _PROGRESS)
    except OSError as exc:
        raise _store_failed(shown, partial, _cause(exc)) from None
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
        write_metadata(str(partial), rasters, others, attrs, compressor, zarr_format)
        for var, other in others.items():  # small non-raster variables: written now
            zarr.open_array(str(partial / var), mode="r+")[...] = np.asarray(other.values)
        state.mkdir()
        (state / "job.json").write_text(json.dumps({"job": job}))


def write_metadata(
    store: str,
    rasters: dict[str, xr.DataArray],
    others: dict[str, xr.DataArray],
    attrs: dict[str, Any],
    compressor: Any,
    zarr_format: int,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write the store's metadata and coordinates at ``store`` (a path or URL); no raster chunk.

    A raster's nodata is its arrays' Zarr ``fill_value``: GDAL (rasterio, rioxarray.open_rasterio,
    QGIS) reports it as the band's nodata. No CF ``_FillValue`` attribute is written.
    """
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
            **_fill_encoding(raster, zarr_format),
        }
        for var, raster in rasters.items()
    }
    with warnings.catch_warnings():
        # Consolidated metadata lets plain xarray.open_zarr open the store without a warning;
        # zarr notes that it is an extension of the v3 specification.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(
            store,
            mode="w",
            compute=False,
            consolidated=True,
            zarr_format=zarr_format,
            encoding=encoding,
            storage_options=storage_options,
        )


def _fill_encoding(raster: xr.DataArray, zarr_format: int) -> dict[str, Any]:
    """xarray's encoding that makes the raster's nodata its Zarr ``fill_value``.

    In format 2 xarray writes ``_FillValue`` as the array's ``fill_value`` (and reads it back as a
    mask, see docs/conventions.md); in format 3 ``fill_value`` is its own key and no ``_FillValue``
    attribute is written. Without nodata none is set: xarray would give float data a NaN fill.
    """
    import rioxarray  # noqa: F401

    nodata = raster.rio.nodata
    if nodata is None:
        return {"_FillValue": None}
    value = np.asarray(nodata, dtype=raster.dtype).item()
    if zarr_format == 2:
        return {"_FillValue": value}
    return {"_FillValue": None, "fill_value": value}


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
    raise _store_failed(shown, Path(store).parent, reason)


def _store_failed(shown: str, partial: Path, reason: str) -> OutputError:
    """`_write_failed`, naming the partial store that is kept (it may fill the disk) if any."""
    if not partial.is_dir():
        return _write_failed(shown, reason)
    kept = f"{shown}.partial"
    return OutputError(
        f"output {shown!r} cannot be written ({reason}): the chunks written so far are kept in "
        f"{kept!r}; free disk space or fix the folder's permissions, then run the job again to "
        f"resume, or remove {kept!r}"
    )


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


def _regular_chunks(array: da.Array) -> da.Array:
    """Rechunk so that every chunk but the last of each axis has the same size (Zarr's grid)."""
    target = tuple(c[0] for c in array.chunks)
    regular = all(
        all(s == t for s in c[:-1]) and c[-1] <= t
        for c, t in zip(array.chunks, target, strict=True)
    )
    return array if regular else array.rechunk(target)


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
