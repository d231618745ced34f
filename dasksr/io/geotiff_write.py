"""Write rasters to GeoTIFF/COG: tiled, compressed, checked tile by tile, installed atomically."""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial as partial_function
from pathlib import Path
from typing import Any, cast

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.cluster import check_workers_write
from dasksr.errors import DasksrError, InvalidArgumentError
from dasksr.io.objectstore import check_remote_output
from dasksr.io.objectstore import upload as _upload
from dasksr.io.paths import is_url
from dasksr.io.write import _after, _as_raster, _cause, _install, _prepare_local, _write_failed
from dasksr.stream import compute as compute_in_strips

__all__ = ["to_geotiff"]


_GTIFF_LARGE = 4 * 2**30 - 2**26  # bytes at which a GeoTIFF must be BigTIFF


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

    if is_url(path):
        return _to_remote_geotiff(
            data,
            os.fspath(path),
            overwrite=overwrite,
            compute=compute,
            progress=progress,
            cog=cog,
            compress=compress,
            blocksize=blocksize,
            predictor=predictor,
            overview_resampling=overview_resampling,
        )
    data = _as_raster(data)
    target = _prepare_local(path, overwrite=overwrite)
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

        # The store's blocks as Delayed: a dask array handed to dask.delayed is wrapped in an
        # expression whose graph imports distributed, which a small job never needs.
        blocks = list(store.to_delayed(optimize_graph=False).ravel())
        return dask.delayed(_after, pure=False)(blocks, finish, dask_key_name=f"to_geotiff-{token}")
    try:
        writer.create()  # now, so that a folder that cannot take the file fails before the job
        check_workers_write(target.parent, shown=shown)
        # Its blocks, strip by strip of rows (dasksr.stream; one computation when small).
        blocks = list(store.to_delayed(optimize_graph=False).ravel())
        compute_in_strips(blocks, [array], progress=progress)
        return finish()
    finally:
        _remove_partials(target, token)


def _to_remote_geotiff(
    data: xr.DataArray | xr.Dataset, url: str, *, overwrite: bool, compute: bool, **options: Any
) -> Any:
    """`to_geotiff` to a URL: the file is built in a local temporary folder, then uploaded whole.

    The object appears at ``url`` only once the upload is complete. The workers write the file
    being built, so they must share this machine's temporary folder (``TMPDIR``); on a cluster
    without a shared disk the check before the job says so and suggests a Zarr output.
    """
    import shutil
    import tempfile

    check_remote_output(url, overwrite=overwrite, zarr=False)
    folder = Path(tempfile.mkdtemp(prefix="dasksr-upload-"))
    local = folder / url.rstrip("/").rsplit("/", 1)[-1]

    def upload(built: Any) -> str:
        try:
            check_remote_output(url, overwrite=overwrite, zarr=False)  # again: it may exist now
            _upload(Path(built), url, shown=url)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return url

    try:
        built = to_geotiff(data, local, compute=compute, **options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not compute:
        import dask

        return dask.delayed(upload, pure=False)(built, dask_key_name=f"upload-{folder.name}")
    return upload(built)


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
    with suppress(OSError):  # stale ones of earlier jobs that were stopped; the output is done
        remove_partials(target)
    return target


def _remove_partials(target: Path, token: str) -> None:
    for leftover in target.parent.glob(f".{target.name}.{token}.partial*"):
        leftover.unlink(missing_ok=True)


def remove_partials(target: Path) -> None:
    """Remove the temporary files of every write of ``target``: those of an interrupted or failed
    job, or of this one."""
    _remove_partials(target, "*")


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
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with (
            _output_errors(self.shown),
            rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"),
            warnings.catch_warnings(),  # an output in pixel units: the reader said so, once
        ):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(self.path, "w", **self.profile) as dst:
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
