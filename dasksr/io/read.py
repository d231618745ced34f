"""Open GeoTIFF/COG and Zarr rasters lazily as dask-backed DataArrays, chunks aligned to tiles."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from dasksr.blockwise import from_source, source_of
from dasksr.errors import InputError, InvalidArgumentError
from dasksr.kernels.values import work_dtype
from dasksr.windows import WindowArray

__all__ = [
    "DEFAULT_CHUNK",
    "aligned_chunks",
    "clear_cache",
    "gdal_path",
    "is_remote",
    "is_zarr_path",
    "open_raster",
]

#: Target chunk edge in input pixels; rounded to a multiple of the file's own tiles.
DEFAULT_CHUNK = 1024


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a Zarr store (by extension or by its metadata files)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))


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


#: ``scheme://`` at the start of a URL (a Windows drive letter has one character before ``:``).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
#: URL schemes that GDAL reads through its virtual file systems, and the prefix of each.
_GDAL_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL (``https://``, ``s3://``, ``memory://``, ...) or a GDAL ``/vsi...`` path."""
    text = os.fspath(path)
    return isinstance(text, str) and (bool(_URL.match(text)) or text.startswith("/vsi"))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if _URL.match(url) else ""


def _is_remote_zarr(url: str) -> bool:
    """A URL names a Zarr store by its ``.zarr`` suffix, or by a scheme GDAL cannot read."""
    if url.startswith("/vsi"):
        return False
    return url.rstrip("/").lower().endswith(".zarr") or _scheme(url) not in _GDAL_SCHEMES


def gdal_path(url: str) -> str:
    """The GDAL name of a raster URL: ``https://h/f.tif`` -> ``/vsicurl/https://h/f.tif``,
    ``s3://bucket/key`` -> ``/vsis3/bucket/key``; a ``/vsi...`` path is returned as it is."""
    scheme = _scheme(url)
    if scheme in ("http", "https"):
        return "/vsicurl/" + url
    if scheme in _GDAL_SCHEMES:
        return _GDAL_SCHEMES[scheme] + url.split("://", 1)[1]
    return url


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
        with rasterio.Env(**options), rasterio.open(source) as src:
            (bh, bw) = src.block_shapes[0]
            height, width, count = src.height, src.width, src.count
            dtype = np.dtype(src.dtypes[0])
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
    with warnings.catch_warnings(), rasterio.Env(**options):
        # Per-band scales/offsets are read from the `scales`/`offsets` attributes, as rioxarray's
        # warning advises: on the command line it would only be noise on stderr.
        warnings.filterwarnings("ignore", message=r"(Scales|Offsets) differ across bands")
        meta = rioxarray.open_rasterio(source, lock=False, cache=False, mask_and_scale=False)
    if not isinstance(meta, xr.DataArray):  # subdatasets
        raise InputError(f"input {str(path)!r} has subdatasets: open one of them by its GDAL name")
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
    )
    pixels = from_source(reader, block_chunks, name=name, meta=np.empty((0, 0, 0), dtype=dtype))
    return _tidy_attrs(meta.copy(data=pixels))


def _remote_stamp(url: str) -> tuple[Any, ...] | None:
    """What tells a remote file's content apart without reading it: size, ETag, Last-Modified.

    ``http(s)://`` (also behind ``/vsicurl/``) is asked with a HEAD request; other URLs with
    fsspec's ``info`` where fsspec has the file system (``s3fs`` for ``s3://``). None when
    nothing can tell (another ``/vsi...`` path, or no fsspec file system for the scheme).
    Raises `InputError` when the server says the file is not there.
    """
    target = url[len("/vsicurl/") :] if url.startswith("/vsicurl/") else url
    if target.startswith("/vsis3/"):
        target = "s3://" + target[len("/vsis3/") :]
    scheme = _scheme(target)
    if scheme in ("http", "https"):
        return _http_stamp(target, shown=url)
    if not scheme:
        return None
    try:
        import fsspec

        fs, where = fsspec.core.url_to_fs(target, **_storage_options(target))
    except (ImportError, ValueError):  # no fsspec file system for this scheme: GDAL alone
        return None
    try:
        info = fs.info(where)
    except FileNotFoundError:
        raise InputError(f"input {url!r} does not exist: check the URL") from None
    except Exception as exc:  # credentials, network: GDAL may still read it
        warnings.warn(f"cannot stamp {url!r} ({_reason(exc)})", RuntimeWarning, stacklevel=3)
        return None
    return _info_stamp(info)


def _info_stamp(info: dict[str, Any]) -> tuple[Any, ...]:
    """Size, ETag and modification time from an fsspec ``info`` entry, as far as it gives them."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    when = (
        info.get("LastModified") or info.get("last_modified") or info.get("mtime")
        or info.get("updated") or info.get("created")
    )  # fmt: skip
    return (
        info.get("size"),
        None if etag is None else str(etag),
        None if when is None else str(when),
    )


def _http_stamp(url: str, *, shown: str) -> tuple[Any, ...] | None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise InputError(
                f"input {shown!r} cannot be fetched (HTTP {exc.code} {exc.reason}): check the URL"
            ) from None
        # Servers may refuse HEAD (403/405 on presigned URLs) and still serve GET: GDAL may
        # still read it, unstamped.
        warnings.warn(
            f"cannot stamp {shown!r} (HTTP {exc.code} {exc.reason})", RuntimeWarning, stacklevel=4
        )
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputError(
            f"input {shown!r} cannot be fetched ({_reason(reason) if isinstance(reason, BaseException) else reason}): "
            "check the URL and the network"
        ) from None
    size = headers.get("Content-Length")
    return (
        None if size is None else int(size),
        headers.get("ETag"),
        headers.get("Last-Modified"),
    )


#: Seconds a HEAD request to stamp a remote file may take.
_HTTP_TIMEOUT = 30


def _storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: anonymous S3 when ``AWS_NO_SIGN_REQUEST`` is ``YES``, as GDAL."""
    if _scheme(url) == "s3" and os.environ.get("AWS_NO_SIGN_REQUEST", "").upper() in (
        "YES",
        "TRUE",
        "1",
    ):
        return {"anon": True}
    return {}


class _Windows(WindowArray):
    """A raster read lazily by windows; ``shown`` is the path that error messages name."""

    shown: str

    def _damaged(self, box: list[tuple[int, int]], reason: str, what: str) -> InputError:
        (r0, r1), (c0, c1) = box[-2:]
        return InputError(
            f"input {self.shown!r} cannot be read at rows {r0}:{r1}, columns {c0}:{c1} "
            f"({reason}): the {what} is damaged or truncated, replace it"
        )


class _BlockWindows(_Windows):
    """A source stored in blocks (GeoTIFF tiles, Zarr chunks): windows are assembled from blocks.

    Decoded blocks are kept in one cache per process, shared by its threads (`CACHE_MB`), so that
    the haloed windows of neighbouring tasks, which overlap the same stored blocks, mostly decode
    each block once. The cache knows a block by ``identity``, which holds the source's content
    stamp taken when it was opened, so a source opened again after a change never gets the old
    blocks. Every window is checked against the stamp after it is assembled (`_verify`): a source
    changed while a job reads it fails the job, naming the file, instead of mixing old and new
    pixels. Subclasses give ``blocks`` (the block shape), ``identity``, `_load` and `_verify`.
    """

    blocks: tuple[int, ...]
    identity: tuple[Any, ...]
    what = "file"

    def _read(self, box: list[tuple[int, int]]) -> np.ndarray:
        out = np.empty([hi - lo for lo, hi in box], dtype=self.dtype)
        spans = [
            range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(box, self.blocks, strict=True)
        ]
        indices = list(itertools.product(*spans))
        for index in indices:
            try:
                block = self._block(index)
            except Exception:  # GDAL, zarr and codecs raise many types for damaged data
                break
            starts = [i * c for i, c in zip(index, self.blocks, strict=True)]
            source, target = [], []
            for (lo, hi), start, size in zip(box, starts, block.shape, strict=True):
                a, b = max(lo, start), min(hi, start + size)
                source.append(slice(a - start, b - start))
                target.append(slice(a - lo, b - lo))
            out[tuple(target)] = block[tuple(source)]
        else:
            self._verify(indices)
            return out
        # A changed source often looks damaged: say that it changed.
        self._verify(indices)
        # A damaged block: read just the window, which may not reach the damage (a cache block can
        # be larger than the file's), and otherwise fails with the reason.
        try:
            return np.asarray(self._load(box))
        except Exception as exc:
            reason = _reason(exc)
        # Raised outside the handler so that no library error rides along as __context__:
        # distributed pickles the chain, and rasterio's CPLE errors do not unpickle (the client
        # would get a bare Exception and the command line a traceback).
        raise self._damaged(box, reason, self.what)

    def _changed(self) -> InputError:
        return InputError(
            f"input {self.shown!r} changed after it was opened (its files' sizes or times "
            f"differ): open it again, and leave the {self.what} unchanged while a job reads it"
        )

    def _block(self, index: tuple[int, ...]) -> np.ndarray:
        global _cache_bytes
        key = (self.identity, index)
        with _cache_lock:
            found = _cache.pop(key, None)
            if found is not None:
                _cache[key] = found  # now the most recently used
                return found
        region = [
            (i * c, min((i + 1) * c, n))
            for i, c, n in zip(index, self.blocks, self.shape, strict=True)
        ]
        block = np.asarray(self._load(region))
        block.setflags(write=False)
        with _cache_lock:
            if key not in _cache:
                _cache[key] = block
                _cache_bytes += block.nbytes
            while _cache_bytes > CACHE_MB * 2**20 and len(_cache) > 1:
                _cache_bytes -= _cache.pop(next(iter(_cache))).nbytes
        return block

    def _load(self, region: list[tuple[int, int]]) -> np.ndarray:
        raise NotImplementedError

    def _verify(self, indices: list[tuple[int, ...]]) -> None:
        """Raise `_changed` unless the stored blocks at ``indices`` are as they were at open."""
        raise NotImplementedError


#: Decoded blocks kept per process, in MB, for all sources together: enough for the blocks that
#: one row of tasks shares with the next on a 16384-pixel-wide, 3-band uint16 scene. It does not
#: grow with the scene; on wider scenes some halo blocks are decoded twice.
CACHE_MB = 128
_cache: dict[tuple[Any, ...], np.ndarray] = {}
_cache_bytes = 0
_cache_lock = threading.Lock()
#: Bumped by `clear_cache`: every thread then closes the files it keeps open before its next read.
_generation = 0


def clear_cache() -> None:
    """Forget everything this process keeps of the rasters it has read.

    Drops the decoded blocks and the Zarr chunk listings, and makes every thread close the files
    it keeps open before its next read. Nothing stale is ever served without it (a source changed
    after it was opened fails the job that reads it, and a source opened again gets new cache
    keys); it only frees the memory and the file handles, e.g. between jobs in a notebook.
    """
    global _cache_bytes, _generation
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0
        _listings.clear()
        _checked_remote.clear()
        _generation += 1


def _file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """What tells a file's content apart without reading it: modification time, size, inode."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class _RasterWindows(_BlockWindows):
    """A GDAL raster read by ``[band, rows, cols]`` windows, every band of a tile at once."""

    def __init__(
        self,
        path: str,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        tile: tuple[int, int],
        *,
        stamp: Any,
        shown: str,
        remote: bool = False,
        url: str | None = None,
    ):
        self.path = path
        self.remote = remote
        # The URL as given (``gs://b/k``), stamped again as it was at open: its GDAL name
        # (``/vsigs/b/k``) cannot always be mapped back.
        self.url = url
        self.shape = shape
        self.dtype = dtype
        # Cache blocks of whole tiles, at least 256 pixels a side (strips are grouped), and at
        # most 1024 wide for a file in full-width strips.
        self.blocks = (
            shape[0],
            *(
                min(n, 1024 if t >= 2048 else t * -(-256 // t))
                for t, n in zip(tile, shape[1:], strict=True)
            ),
        )
        self.stamp = stamp
        self.identity = ("gdal", path, stamp)
        self.shown = shown

    def _load(self, region: list[tuple[int, int]]) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        (b0, b1), rows, cols = region
        try:
            with rasterio.Env(**_gdal_options(remote=self.remote)):
                src = _open_dataset(self.path, self.stamp)
                return np.asarray(
                    src.read(
                        indexes=list(range(b0 + 1, b1 + 1)), window=Window.from_slices(rows, cols)
                    )
                )
        except Exception:
            _forget_dataset(self.path)
            raise

    def _verify(self, indices: list[tuple[int, ...]]) -> None:
        if self.remote:
            # A request per read would double the requests: a remote file is stamped again once
            # in each process, at its first read (docs/conventions.md, "Remote inputs").
            key = (self.path, self.stamp)
            if key not in _checked_remote:
                if _remote_stamp(self.url or self.path) != self.stamp:
                    raise self._changed()
                _checked_remote.add(key)
            return
        # Checked after the read: a change before or during it shows in the stamp.
        if _file_stamp(self.path) != self.stamp:
            raise self._changed()


#: The remote sources (and their stamps) this process has checked again since it opened them.
_checked_remote: set[tuple[Any, ...]] = set()


class _ZarrWindows(_BlockWindows):
    """A Zarr array read by windows, assembled from its stored chunks.

    ``fingerprint`` is a digest of the listing of the array's files (names, sizes, modification
    times) taken at open. Each process lists the store once more when it first reads it, and
    fails if the digest differs; after that, the files of the chunks a window needs are checked
    against that listing after every read.
    """

    what = "store"

    def __init__(
        self,
        store: str,
        variable: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        *,
        fingerprint: str,
        shown: str,
        remote: bool = False,
    ):
        self.store = store
        self.remote = remote
        self.variable = variable
        self.shape = shape
        self.dtype = dtype
        self.blocks = chunks
        self.fingerprint = fingerprint
        self.stamp = fingerprint
        self.identity = ("zarr", store, variable, fingerprint)
        self.shown = shown

    def _load(self, region: list[tuple[int, int]]) -> np.ndarray:
        array = _open_zarr_array(self.store, self.variable, self.fingerprint)
        return np.asarray(array[tuple(slice(a, b) for a, b in region)])

    def _verify(self, indices: list[tuple[int, ...]]) -> None:
        if self.remote:
            # Listed again once in each process, at its first read (as a remote GeoTIFF).
            key = (self.store, self.variable, self.fingerprint)
            if key not in _checked_remote:
                if _remote_fingerprint(self.store, self.variable) != self.fingerprint:
                    raise self._changed()
                _checked_remote.add(key)
            return
        folder = Path(self.store) / self.variable
        listing = _listing(folder)
        if listing.fingerprint != self.fingerprint:
            raise self._changed()
        for index in indices:
            found = listing.keys.get(index)
            if found is None:
                array = _open_zarr_array(self.store, self.variable, self.fingerprint)
                # A stored file holds a whole shard when the array is sharded.
                shards = getattr(array, "shards", None) or self.blocks
                where = tuple(
                    i * c // s for i, c, s in zip(index, self.blocks, shards, strict=True)
                )
                key = array.metadata.encode_chunk_key(where)
                found = listing.keys.setdefault(index, (str(folder / key), key))
            if _file_stamp(found[0]) != listing.files.get(found[1]):
                raise self._changed()


class _Listing:
    """The files of a Zarr array's folder with their stamps, and a digest of them all."""

    def __init__(self, folder: Path) -> None:
        files: dict[str, tuple[int, int, int]] = {}
        for root, _dirs, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                stamp = _file_stamp(path)
                if stamp is not None:
                    files[os.path.relpath(path, folder).replace(os.sep, "/")] = stamp
        self.files = files
        #: The file of each block index: its path, and its key as the chunk key encoding names it.
        self.keys: dict[tuple[int, ...], tuple[str, str]] = {}
        self.fingerprint = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:32]


#: The listing of each Zarr array this process has read, by folder (see `_ZarrWindows`).
_listings: dict[str, _Listing] = {}


def _listing(folder: Path) -> _Listing:
    key = str(folder)
    with _cache_lock:
        found = _listings.get(key)
    if found is None:
        found = _Listing(folder)
        with _cache_lock:
            found = _listings.setdefault(key, found)
    return found


def _open_zarr_array(store: str, variable: str, stamp: Any) -> Any:
    """This thread's open Zarr array ``variable`` of ``store``, reopened when its stamp changes."""
    return _thread_handle((store, variable), stamp, lambda: _zarr_array(store, variable))


#: GDAL's own block cache, in MB, while dasksr reads. Decoded tiles are kept by `_BlockWindows`;
#: GDAL's default of 5% of the machine's memory would only add a second copy that grows with the
#: scene. It is set only around dasksr's own reads (``rasterio.Env``); GDAL_CACHEMAX in the
#: environment wins.
GDAL_CACHE_MB = 16


def _gdal_options(*, remote: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if remote:
        # A remote file's folder is not listed to look for sidecar files (.aux.xml, .ovr, .msk):
        # on object storage that is a request, or many, per open.
        options["GDAL_DISABLE_READDIR_ON_OPEN"] = "EMPTY_DIR"
    if "GDAL_CACHEMAX" not in os.environ:
        options["GDAL_CACHEMAX"] = GDAL_CACHE_MB * 2**20
    return options


_local = threading.local()
#: Files each thread keeps open (the least recently read is closed first).
_HANDLES_PER_THREAD = 4


def _open_dataset(path: str, stamp: Any) -> Any:
    """This thread's open rasterio dataset for ``path`` as it was at ``stamp``."""
    import rasterio

    return _thread_handle(path, stamp, lambda: rasterio.open(path))


def _forget_dataset(path: str) -> None:
    found = _local.__dict__.get("handles", {}).pop(path, None)
    if found is not None:
        _close(found[1])


def _thread_handle(key: Any, stamp: Any, open_: Any) -> Any:
    """This thread's handle for ``key``, opened by ``open_()`` unless one with ``stamp`` is open.

    Each thread keeps its `_HANDLES_PER_THREAD` most recently used handles open, until
    `clear_cache` is called.
    """
    handles = _local.__dict__.setdefault("handles", {})
    if _local.__dict__.get("generation") != _generation:
        for _, handle in handles.values():
            _close(handle)
        handles.clear()
        _local.generation = _generation
    found = handles.pop(key, None)
    if found is not None and found[0] == stamp:
        handles[key] = found  # now the most recently used
        return found[1]
    if found is not None:
        _close(found[1])
    while len(handles) >= _HANDLES_PER_THREAD:
        _close(handles.pop(next(iter(handles)))[1])
    handle = open_()
    handles[key] = (stamp, handle)
    return handle


def _close(handle: Any) -> None:
    close = getattr(handle, "close", None)
    if close is not None:
        close()


def _reason(exc: BaseException) -> str:
    """The most telling line of a (chained) GDAL error: rasterio's own often says 'see previous'."""
    messages: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(messages) < 8:
        text = " ".join(str(seen).split())
        if text:
            messages.append(text)
        seen = seen.__cause__ or seen.__context__
    useful = [m for m in messages if "see previous exception" not in m.lower()]
    return (useful or messages or [type(exc).__name__])[0]


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
        data = data.copy(
            data=from_source(windows, data.data.chunks, name=name, meta=data.data._meta)
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


def _zarr_array(store: str, variable: str) -> Any:
    import zarr

    options = _storage_options(store) if is_remote(store) else None
    return zarr.open_array(store=store, path=variable, mode="r", storage_options=options)


def _remote_fingerprint(url: str, variable: str) -> str:
    """A digest of a remote Zarr array's files as fsspec lists them (names, sizes, ETags, times).

    A file system that cannot list (plain HTTP) gives the array's metadata document and what
    HTTP says of it (size, ETag, Last-Modified) instead: there a change of chunk data alone,
    metadata untouched, is not seen.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **_storage_options(url))
    folder = f"{root.rstrip('/')}/{variable}"
    items: list[Any] = []
    try:
        found = fs.find(folder, detail=True)
        items = sorted((str(k)[len(folder) :], _info_stamp(v)) for k, v in found.items())
    except Exception:  # no listing: the metadata document below
        items = []
    if not items:
        for name in ("zarr.json", ".zarray"):
            try:
                document = fs.cat_file(f"{folder}/{name}")
                info = fs.info(f"{folder}/{name}")
            except (FileNotFoundError, OSError):
                continue
            items.append((name, hashlib.sha256(document).hexdigest(), _info_stamp(info)))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


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
    source = source_of(raw)
    if source is not None:
        # Still a source: upscaling reads the haloed windows, masked, straight from the file.
        masking = _MaskedWindows(source, work, nodata)
        name = "masked-" + tokenize(raw.name, nodata, work.str)
        pixels = from_source(masking, raw.chunks, name=name, meta=np.empty((0,) * raw.ndim, work))
    else:
        pixels = da.map_blocks(_mask, raw, work, nodata, dtype=work)
    out = data.copy(data=pixels)
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
