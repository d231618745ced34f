"""What both writers share: the output checked, made and installed atomically, and the input
made ready to write.

Workers read and write the data; only a few bytes per block come back to the caller. Outputs are
built under a temporary name beside the target and moved there when complete, so a failed or
interrupted job never leaves something that looks finished; a write that fails (disk full, I/O
error, permission lost) fails the job with an `OutputError` naming the output. The writers are
`dasksr.io.zarr_write` and `dasksr.io.geotiff_write`; `dasksr.io` exports their public names.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from dasksr.errors import DasksrError, InvalidArgumentError, OutputError, OutputExistsError
from dasksr.io.objectstore import check_remote_output
from dasksr.io.paths import _reason, is_url

__all__ = ["check_not_an_input", "prepare_output"]


def prepare_output(path: str | os.PathLike[str], *, overwrite: bool) -> Path | str:
    """Check that ``path`` may be written: absent (or ``overwrite``), in a writable folder.

    ``overwrite`` replaces only a raster file (a TIFF) or a Zarr store, never a folder of other
    files. A URL (``s3://...``) is checked on its object store: the bucket, the credentials and
    whether the output exists (`dasksr.io.objectstore.check_remote_output`); it is returned as
    it is, a local path as an absolute path.
    """
    if is_url(path):
        url = os.fspath(path)
        zarr = url.rstrip("/").lower().endswith(".zarr")
        check_remote_output(url, overwrite=overwrite, zarr=zarr)
        return url
    return _prepare_local(path, overwrite=overwrite)


def _prepare_local(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
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
    if is_url(output) or any(is_url(source) for source in inputs):
        _check_urls_apart(inputs, output)
        return
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


def _check_urls_apart(
    inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> None:
    """`check_not_an_input` for URLs: an output URL that equals an input URL (scheme case and
    trailing slashes aside), or lies inside or around one, is refused; a URL never overlaps a
    local path."""

    def key(place: str | os.PathLike[str]) -> str | None:
        text = os.fspath(place)
        if not is_url(text):
            return None
        scheme, rest = text.split("://", 1)
        return f"{scheme.lower()}://{rest.rstrip('/')}"

    out = key(output)
    for source in inputs:
        src = key(source)
        if out is None or src is None:
            continue
        if src == out or out.startswith(src + "/") or src.startswith(out + "/"):
            raise InvalidArgumentError(
                f"output {os.fspath(output)!r} is the input {os.fspath(source)!r} or overlaps "
                "it: write the result to another URL"
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


def _after(_done: Any, then: Any) -> Any:
    """``then()``, once ``_done`` (the write tasks' results) exists: a delayed write's last task."""
    return then()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
