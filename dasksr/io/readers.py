"""The window readers of the opened rasters, with what each process keeps of them.

A source (`dasksr.windows.WindowArray`) reads any window of a GeoTIFF/COG or a Zarr array, from a
per-process cache of decoded blocks and per-thread open files; `clear_cache` drops both.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dasksr.errors import InputError
from dasksr.io.objectstore import gdal_options
from dasksr.io.paths import (
    _file_stamp,
    _reason,
    _remote_fingerprint,
    _remote_stamp,
    _storage_options,
    is_remote,
)
from dasksr.windows import WindowArray

__all__ = ["CACHE_MB", "GDAL_CACHE_MB", "clear_cache"]


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
        georeferenced: bool = True,
    ):
        self.path = path
        self.remote = remote
        #: False for a photo or the like, which rasterio warns about at every open.
        self.georeferenced = georeferenced
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
        from rasterio.session import DummySession
        from rasterio.windows import Window

        (b0, b1), rows, cols = region
        try:
            # GDAL reads the credentials from the environment itself (and the endpoint from
            # `_gdal_options`): with AWS keys in the environment, rasterio's default session
            # would build a boto3 session for every read (about 7 ms each:
            # benchmarks/s3_requests.py), only to hand GDAL the same keys.
            with rasterio.Env(session=DummySession(), **_gdal_options(remote=self.remote)):
                src = _open_dataset(self.path, self.stamp, quiet=not self.georeferenced)
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
        # The S3 endpoint and credentials file under GDAL's names, from the AWS settings.
        options.update(gdal_options())
    if "GDAL_CACHEMAX" not in os.environ:
        options["GDAL_CACHEMAX"] = GDAL_CACHE_MB * 2**20
    return options


_local = threading.local()
#: Files each thread keeps open (the least recently read is closed first).
_HANDLES_PER_THREAD = 4


def _open_dataset(path: str, stamp: Any, *, quiet: bool = False) -> Any:
    """This thread's open rasterio dataset for ``path`` as it was at ``stamp``; ``quiet`` opens
    it without rasterio's warning for a file with no georeference."""
    import rasterio

    def open_() -> Any:
        if not quiet:
            return rasterio.open(path)
        with _quiet_georeference():
            return rasterio.open(path)

    return _thread_handle(path, stamp, open_)


#: The warning filters are the process's: threads that change them at once would undo each
#: other's change (and let the warning through).
_quiet_lock = threading.Lock()


@contextmanager
def _quiet_georeference() -> Iterator[None]:
    """Without rasterio's NotGeoreferencedWarning: dasksr says it once, in its own words."""
    from rasterio.errors import NotGeoreferencedWarning

    with _quiet_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


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


def _zarr_array(store: str, variable: str) -> Any:
    import zarr

    options = _storage_options(store) if is_remote(store) else None
    return zarr.open_array(store=store, path=variable, mode="r", storage_options=options)
