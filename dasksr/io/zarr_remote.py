"""Zarr outputs at fsspec URLs (``s3://``, ``gs://``, ``memory://``, ...): resumable, committed last.

An object store has no rename, so a store cannot be built aside and moved into place. Instead
(docs/object-storage.md):

- the metadata, the coordinates and the job's record go to ``URL.partial/``; the record lists
  each finished block as an empty object under ``URL.partial/.dasksr-progress/``;
- raster chunks go straight under ``URL/`` (nothing there is a Zarr store yet: no readers open
  chunks without metadata), or, when ``--overwrite`` replaces a store at ``URL``, under
  ``URL.partial/`` (the old store stays whole until the new one is complete);
- when every block is done the commit copies the metadata to ``URL/`` (after removing an old
  store), the arrays' documents first and the root's ``.zgroup``/``zarr.json`` last: only then does
  ``URL`` open as a Zarr store. Then ``URL.partial/`` is removed, its job record first.

Running the same job again after an interruption (even one during the commit) resumes it.
"""

from __future__ import annotations

import json
from functools import partial as partial_function
from typing import Any

import numpy as np
import xarray as xr

from dasksr.errors import DasksrError, InvalidArgumentError, OutputError
from dasksr.io.objectstore import (
    ROOT_DOCUMENTS,
    remote_failure,
    remote_fs,
    storage_options,
    zarr_exists,
)

__all__ = ["remote_zarr_job"]

_PROGRESS = ".dasksr-progress"
#: The metadata documents of a Zarr array or group (formats 2 and 3).
_DOCUMENTS = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


def remote_zarr_job(
    url: str,
    rasters: dict[str, xr.DataArray],
    others: dict[str, xr.DataArray],
    attrs: dict[str, Any],
    job: str,
    compressor: Any,
    zarr_format: int,
    *,
    overwrite: bool,
) -> Any:
    """The `~dasksr.io.zarr_write.WriteJob` of `to_zarr` for an output URL."""
    from dasksr.io.objectstore import check_remote_output
    from dasksr.io.zarr_write import WriteJob, block_writes, write_metadata

    url = url.rstrip("/")
    if "/" not in url.split("://", 1)[-1].strip("/"):
        raise InvalidArgumentError(
            f"output {url!r} is a bucket: name a store in it, as {url}/NAME.zarr"
        )
    check_remote_output(url, overwrite=overwrite, zarr=True)
    try:
        fs, root = remote_fs(url)
        fs.invalidate_cache()
        partial = root + ".partial"
        exists = zarr_exists(fs, root)
        record = _record(fs, partial)
        resume = record.get("job") == job and (record.get("staged") or not exists)
        staged = bool(record.get("staged")) if resume else exists
        if not resume:
            _refuse_foreign(fs, root, url, record, exists=exists)
            _clear(fs, partial)
            if not staged:
                _clear(fs, root)  # chunks of an earlier job that was not finished
            write_metadata(
                f"{url}.partial",
                rasters,
                others,
                attrs,
                compressor,
                zarr_format,
                storage_options=storage_options(url),
            )
            _write_others(f"{url}.partial", others)
            fs.pipe(f"{partial}/{_PROGRESS}/job.json", json.dumps({"job": job, "staged": staged}))
        done = {p.rsplit("/", 1)[-1] for p in fs.find(f"{partial}/{_PROGRESS}")}
        documents = {
            var: {
                name: fs.cat_file(f"{partial}/{var}/{name}")
                for name in _DOCUMENTS
                if fs.exists(f"{partial}/{var}/{name}")
            }
            for var in rasters
        }
    except DasksrError:
        raise
    except Exception as exc:  # fsspec implementations raise their own types
        raise remote_failure(url, exc) from None
    chunks_root = partial if staged else root
    protocol = url.split("://", 1)[0]
    pending = block_writes(
        rasters,
        done,
        _write_block,
        lambda var: {
            "url": url,
            "chunks_at": f"{protocol}://{chunks_root}/{var}",
            "marker": f"{protocol}://{partial}/{_PROGRESS}/{var}",
            "documents": documents[var],
        },
    )
    finish = partial_function(_commit, url, staged)
    return WriteJob(job, pending, finish, rasters=tuple(r.data for r in rasters.values()))


def _record(fs: Any, partial: str) -> dict[str, Any]:
    try:
        found = json.loads(fs.cat_file(f"{partial}/{_PROGRESS}/job.json"))
    except (FileNotFoundError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _refuse_foreign(fs: Any, root: str, url: str, record: dict[str, Any], *, exists: bool) -> None:
    """Refuse objects at ``root`` that are neither a Zarr store nor an unfinished job's chunks."""
    if exists or record:
        return
    if fs.find(root)[:1]:
        raise OutputError(
            f"output {url!r} holds objects that are not a Zarr store: remove them, or choose "
            "another output URL"
        )


def _clear(fs: Any, root: str) -> None:
    """Remove every object under ``root`` (the root's documents first: it stops being a store)."""
    for doc in ROOT_DOCUMENTS:
        if fs.exists(f"{root}/{doc}"):
            fs.rm_file(f"{root}/{doc}")
    found = fs.find(root)
    if found:
        fs.rm(found)


def _write_others(store: str, others: dict[str, xr.DataArray]) -> None:
    import zarr

    for var, other in others.items():  # small non-raster variables: written now
        array = zarr.open_array(
            store=store, path=var, mode="r+", storage_options=storage_options(store)
        )
        array[...] = np.asarray(other.values)


def _write_block(
    block: np.ndarray,
    *,
    url: str,
    chunks_at: str,
    marker: str,
    documents: dict[str, bytes],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Encode one block's chunks with zarr in memory, upload them, then record the block as done.

    An object appears whole once its upload returns, so the record never says "done" for a
    chunk that is not there. Running the task twice uploads the same bytes again.
    """
    import zarr
    from zarr.core.buffer import Buffer, cpu

    from dasksr.io.zarr_write import _marker_name

    assert block_info is not None
    info = block_info[0]
    memory: dict[str, Buffer] = {
        name: cpu.Buffer.from_bytes(text) for name, text in documents.items()
    }
    array = zarr.open_array(zarr.storage.MemoryStore(memory), mode="r+")
    array = array.with_config({"write_empty_chunks": True})
    array[tuple(slice(a, b) for a, b in info["array-location"])] = np.asarray(block)
    uploads = {
        f"{chunks_at}/{key}": buffer.to_bytes()
        for key, buffer in memory.items()
        if key.rsplit("/", 1)[-1] not in _DOCUMENTS
    }
    try:
        fs, _ = remote_fs(url)
        fs.pipe(uploads)
        head, _, var = marker.rpartition("/")
        fs.pipe(f"{head}/{_marker_name(var, info['chunk-location'])}", b"")
    except Exception as exc:
        failure = remote_failure(url, exc)
    else:
        return np.ones((1,) * block.ndim, dtype=np.uint8)
    # Raised outside the handler: distributed pickles the chained exceptions with the error.
    raise failure


def _commit(url: str, staged: bool) -> str:
    """Make the finished job the store at ``url``: see the module's description."""
    try:
        fs, root = remote_fs(url)
        fs.invalidate_cache()  # the workers wrote meanwhile
        partial = root + ".partial"
        if staged:
            _clear(fs, root)  # the old store: the new one is complete under URL.partial
        found = [p for p in fs.find(partial) if f"/{_PROGRESS}/" not in p]
        names = {p: p[len(partial) :] for p in found}
        data = [p for p, name in names.items() if name.rsplit("/", 1)[-1] not in _DOCUMENTS]
        documents = [p for p in found if p not in data]
        # The root's own documents last, the group's document (which makes it a store) at the end.
        documents.sort(key=lambda p: _COMMIT_ORDER.get(names[p], -1))
        if data:
            fs.copy(data, [root + names[p] for p in data])
        for p in documents:
            fs.copy(p, root + names[p])
        fs.rm_file(f"{partial}/{_PROGRESS}/job.json")
        _clear(fs, partial)
    except DasksrError:
        raise
    except Exception as exc:
        raise remote_failure(url, exc) from None
    return url


#: The order in which the root's documents are copied: a Zarr reader finds the store by the last.
_COMMIT_ORDER = {"/.zattrs": 0, "/.zmetadata": 1, "/.zgroup": 2, "/zarr.json": 2}
