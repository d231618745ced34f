"""Raster sources on xarray objects: the explicit, typed record of where a lazy raster's pixels are.

``open_raster`` gives a DataArray whose pixels come from a `dasksr.blockwise.Source` (a GeoTIFF or
a Zarr array) and records that source on the DataArray with `attach_source`. The record is a
`SourceRecord` in the encoding of the spatial ``x`` coordinate, where xarray keeps it through the
selections users make before upscaling: band selection, spatial windows (``isel``/``sel``) and
``astype``. `source_window` turns a DataArray back into the `dasksr.blockwise.Window` of the
source it holds, from the record and the DataArray's own coordinates, or returns None.

A record never stands in for the pixels on trust: `source_window` checks that the DataArray's dask
array is the source's array changed by selections and casts only (dask's ``getitem`` and ``astype``
steps) and still reads the source (not blocks kept by ``persist``), so that arithmetic, ``where``,
a rechunk, a persisted array or anything else falls back to the blocks the array holds (the
``'overlap'`` wiring), which give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dasksr.blockwise import Source, Window

__all__ = ["SourceRecord", "attach_source", "source_window"]

#: The encoding key of the record, on the ``x`` coordinate.
ENCODING_KEY = "dasksr_source"
#: dask's names of the steps that take a window of an array or cast it, and nothing else.
_SELECTIONS = ("getitem", "astype")


@dataclass(frozen=True, eq=False)
class SourceRecord:
    """A source, the coordinate labels of each of its axes (None where it has none), and the graph
    layer of its reads, which tells a lazy array that still reads the source from one whose blocks
    were computed and kept (``persist``), under the same name."""

    source: Source
    dims: tuple[str, ...]
    labels: tuple[np.ndarray | None, ...]
    layer: Any


def attach_source(data: xr.DataArray, source: Source) -> xr.DataArray:
    """``data`` (coordinates and attributes of the raster) with the pixels of ``source``.

    ``data`` has the source's shape; its dims are the source's axes. The result's pixels are
    ``source.array()`` and its ``x`` coordinate carries the `SourceRecord`.
    """
    if tuple(data.shape) != source.shape:
        raise ValueError(f"data of shape {data.shape} cannot hold a source of {source.shape}")
    dims = tuple(str(d) for d in data.dims)
    labels = tuple(
        np.asarray(data[d].values) if d in data.coords and data[d].ndim == 1 else None for d in dims
    )
    array = source.array()
    out = data.copy(data=array)
    xdim = _x_dim(out)
    if xdim is None:
        return out
    record = SourceRecord(source, dims, labels, array.dask.layers[array.name])
    coord = out[xdim].variable.copy(deep=False)
    coord.encoding = {**coord.encoding, ENCODING_KEY: record}
    return out.assign_coords({xdim: coord})


def source_window(data: xr.DataArray) -> Window | None:
    """The window of a source that ``data`` holds, or None when it holds no such window.

    ``data`` holds one when it was opened by ``open_raster`` and changed since by selections
    (``isel``, ``sel``, ``[...]``) and ``astype`` only, with its dims in the source's order.
    """
    array = data.data
    if not isinstance(array, da.Array):
        return None
    xdim = _x_dim(data)
    record = None if xdim is None else data[xdim].encoding.get(ENCODING_KEY)
    if not isinstance(record, SourceRecord):
        return None
    selections = _selections(array, record)
    if selections is None:
        return None
    picks: list[Any] = []
    kept: list[str] = []
    for dim, labels, n in zip(record.dims, record.labels, record.source.shape, strict=True):
        if selections == 0:
            picks.append(tuple(range(n)))
            kept.append(dim)
            continue
        # A selection on an axis without labels cannot be told from the data.
        if labels is None or dim not in data.coords:
            return None
        found = _positions(labels, np.asarray(data[dim].values))
        if found is None:
            return None
        if dim in data.dims:
            picks.append(found)
            kept.append(dim)
        elif len(found) == 1:
            picks.append(found[0])
        else:
            return None
    if tuple(kept) != tuple(str(d) for d in data.dims):
        return None
    window = Window(record.source, tuple(picks), data.dtype)
    return window if window.shape == tuple(data.shape) else None


def _x_dim(data: xr.DataArray) -> str | None:
    import rioxarray  # noqa: F401  (registers the rio accessor)

    try:
        return str(data.rio.x_dim)
    except Exception:  # rioxarray raises its own errors when it cannot tell
        return "x" if "x" in data.dims else None


def _selections(array: da.Array, record: SourceRecord) -> int | None:
    """How many selections lead from the source's reads to ``array`` when selections and casts
    only do; None when anything else happened on the way."""
    graph = array.dask
    current = array.name
    selections = 0
    name = record.source.name
    if graph.layers.get(name) is not record.layer:
        return None
    while current != name:
        step = current.split("-", 1)[0]
        if step not in _SELECTIONS:
            return None
        deps = graph.dependencies.get(current, set())
        if len(deps) != 1:
            return None
        (current,) = deps
        selections += step == "getitem"
    return selections


def _positions(labels: np.ndarray, values: np.ndarray) -> tuple[int, ...] | None:
    """The positions of ``values`` (one label or an array of them) among unique ``labels``."""
    index = pd.Index(labels)
    if not index.is_unique:
        return None
    found = index.get_indexer(np.atleast_1d(values))
    if (found < 0).any():
        return None
    return tuple(int(i) for i in found)
