"""Halo arithmetic and ``map_overlap`` wiring: run a method's kernel on every block of a dask array.

The kernel always sees its block padded by ``halo`` pixels, taken from the neighbouring blocks or,
at the image edge, made by the method's boundary rule, exactly as the whole-image result pads the
whole image. The output chunks are the input chunks times the scale; nothing is blended.

Two wirings give the same pixels:

- For any dask array, ``map_overlap`` copies the halo out of the neighbouring blocks. Every input
  block is then held until its eight neighbours are done, and the graph's overlap tasks keep the
  read of a block apart from its upscaling and writing.
- For an array made by `from_source` (``open_raster`` does it for GeoTIFFs), every output block's
  task reads its own haloed window straight from the source. Tasks have no neighbours, so read,
  upscale and write fuse into one task per block, and memory stays flat however large the scene.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from dasksr.kernels.registry import Method

__all__ = [
    "WindowArray",
    "downscale_blocks",
    "from_source",
    "map_with_halo",
    "merge_small_chunks",
    "pad_block",
    "upscale_block_array",
    "upscale_numpy",
]

_NUMPY_PAD_MODE = {"reflect": "symmetric", "nearest": "edge", "periodic": "wrap"}


def from_source(source: Any, chunks: Any, *, name: str, meta: Any | None = None) -> da.Array:
    """A dask array of ``source`` whose upscaling reads haloed windows straight from ``source``.

    ``source`` has ``shape``, ``dtype``, ``ndim`` and ``__getitem__`` taking a tuple of
    unit-step slices (dask's ``from_array`` contract), and may be read from any thread or process.
    ``name`` must identify the content (dask's own rule for names): `upscale_block_array`
    recognises the array by it, and any change to the array (slicing, arithmetic, rechunking)
    gives a new name and so the ``map_overlap`` wiring.
    """
    array = da.from_array(
        source, chunks=chunks, name=name, lock=False, asarray=True, fancy=False, meta=meta
    )
    with _SOURCES_LOCK:
        _SOURCES[array.name] = (source, array.chunks)
    return array


#: The sources of the arrays made by `from_source`, by dask name, with the chunks they were made
#: with. A source object is small (a path, a shape); they are kept for the life of the process.
_SOURCES: dict[str, tuple[Any, tuple[tuple[int, ...], ...]]] = {}
_SOURCES_LOCK = threading.Lock()


def _source_of(array: da.Array) -> Any | None:
    with _SOURCES_LOCK:
        found = _SOURCES.get(array.name)
    if found is None or found[1] != array.chunks:
        return None
    return found[0]


def pad_block(block: Any, halo: int, boundary: str, axes: tuple[int, ...] = (-2, -1)) -> Any:
    """Pad ``block`` by ``halo`` on ``axes`` with the boundary rule, as the whole image is padded."""
    return pad_sides(block, dict.fromkeys(axes, (halo, halo)), boundary)


def pad_sides(block: Any, widths: dict[int, tuple[int, int]], boundary: str) -> Any:
    """Pad each axis in ``widths`` by its ``(before, after)`` pixels with the boundary rule."""
    if not any(before or after for before, after in widths.values()):
        return block
    from dasksr.backend import array_namespace

    xp = array_namespace(block)
    full = [(0, 0)] * block.ndim
    for ax, pair in widths.items():
        full[ax] = pair
    return xp.pad(block, full, mode=_NUMPY_PAD_MODE[boundary])


def upscale_numpy(image: Any, method: Method, scale: int, *, nodata: float | None = None) -> Any:
    """The whole-image result: pad the whole array, then run the kernel once (the reference)."""
    halo = method.halo(scale)
    return method.block(pad_block(image, halo, method.boundary), scale, nodata=nodata)


def merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge chunks smaller than ``minimum`` into a neighbour (dask#11580: depth > chunk fails).

    The total is kept; an axis shorter than ``minimum`` becomes one chunk.
    """
    if minimum <= 1 or all(c >= minimum for c in chunks):
        return tuple(chunks)
    merged: list[int] = []
    for size in chunks:
        if merged and (merged[-1] < minimum or size < minimum):
            merged[-1] += size
        else:
            merged.append(size)
    return tuple(merged)


def upscale_block_array(
    array: da.Array, method: Method, scale: int, *, nodata: float | None = None
) -> da.Array:
    """Upscale the last two axes of a dask ``array`` blockwise with ``method``.

    An array made by `from_source` keeps its chunks, and every task reads its haloed window from
    the source. Otherwise chunks smaller than the halo are merged with a neighbour first and an
    axis shorter than the halo is taken whole and padded inside the task. Either way the result
    equals `upscale_numpy` on any chunking.
    """
    halo = method.halo(scale)
    ndim = array.ndim
    spatial = (ndim - 2, ndim - 1)
    # A deterministic name: the same input, method, scale and nodata give the same graph keys in
    # every process, which is what lets an interrupted Zarr job be recognised and resumed.
    name = f"upscale-{method.name}-x{scale}-" + tokenize(array.name, method.name, scale, nodata)
    source = _source_of(array) if halo else None
    if source is not None:
        windows = _UpscaledWindows(source, method, scale, nodata)
        out_chunks = tuple(
            tuple(c * scale for c in array.chunks[ax]) if ax in spatial else array.chunks[ax]
            for ax in range(ndim)
        )
        return da.from_array(
            windows,
            chunks=out_chunks,
            name=name,
            lock=False,
            asarray=False,
            fancy=False,
            meta=array._meta,
        )
    chunks = list(array.chunks)
    for ax in spatial:
        chunks[ax] = merge_small_chunks(array.chunks[ax], halo)
    if tuple(chunks) != array.chunks:
        array = array.rechunk(tuple(chunks))
    out_chunks = tuple(
        tuple(c * scale for c in array.chunks[ax]) if ax in spatial else array.chunks[ax]
        for ax in range(ndim)
    )
    kernel = partial(_upscale_padded, method=method, scale=scale, nodata=nodata, halo=halo)
    return map_with_halo(
        kernel,
        array,
        halo=halo,
        boundary=method.boundary,
        chunks=out_chunks,
        dtype=array.dtype,
        meta=array._meta,
        name=name,
    )


class WindowArray:
    """A lazily computed array: ``[key]`` gets the smallest box covering ``key`` from `_read`.

    dask fuses later slicing into the reads of a ``from_array`` array, so a key may hold ints and
    strided (even reversed) slices too; they are applied to the box after `_read`. Subclasses set
    ``shape`` and ``dtype`` and implement ``_read(box)``, ``box`` being one ``(start, stop)`` per
    axis.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        picks = [np.arange(n)[k] for k, n in zip(key, self.shape, strict=True)]
        if any(np.size(p) == 0 for p in picks):
            shape = np.broadcast_to(np.zeros((), self.dtype), self.shape)[key].shape
            return np.empty(shape, dtype=self.dtype)
        box = [(int(np.min(p)), int(np.max(p)) + 1) for p in picks]
        block = self._read(box)
        for axis in reversed(range(self.ndim)):  # from the last: an int drops its axis
            k = key[axis]
            if not (isinstance(k, slice) and k.indices(self.shape[axis])[2] == 1):
                block = np.take(block, picks[axis] - box[axis][0], axis=axis)
        return block

    def _read(self, box: list[tuple[int, int]]) -> Any:
        raise NotImplementedError


class _UpscaledWindows(WindowArray):
    """The upscaled ``source`` as a lazily computed array: a box of the output is computed from
    the input box under it plus the halo, read from ``source``, with what lies past the image edge
    padded by the boundary rule."""

    def __init__(self, source: Any, method: Method, scale: int, nodata: float | None) -> None:
        self.source = source
        self.method = method
        self.scale = scale
        self.nodata = nodata
        self.halo = method.halo(scale)
        self.dtype = np.dtype(source.dtype)
        self.shape = (*source.shape[:-2], *(n * scale for n in source.shape[-2:]))

    def _read(self, box: list[tuple[int, int]]) -> Any:
        scale, halo = self.scale, self.halo
        reads = [slice(lo, hi) for lo, hi in box[:-2]]
        widths: dict[int, tuple[int, int]] = {}
        crops = []
        for ax, (start, stop), n in zip((-2, -1), box[-2:], self.source.shape[-2:], strict=True):
            first, last = start // scale, -(-stop // scale)  # input pixels under the box
            low, high = max(first - halo, 0), min(last + halo, n)
            reads.append(slice(low, high))
            widths[ax] = (halo - (first - low), halo - (high - last))
            crops.append(slice(start - first * scale, stop - first * scale))
        block = np.asarray(self.source[tuple(reads)])
        padded = pad_sides(block, widths, self.method.boundary)
        fine = _upscale_padded(
            padded, method=self.method, scale=scale, nodata=self.nodata, halo=halo
        )
        return fine[(..., *crops)]


def map_with_halo(
    kernel: Any,
    *arrays: da.Array,
    halo: int,
    boundary: str,
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
    meta: Any,
    name: str | None = None,
) -> da.Array:
    """Call ``kernel(*padded_blocks)`` on every block, each padded by ``halo`` on the spatial axes.

    The padding comes from the neighbouring blocks, or from ``boundary`` at the image edge, exactly
    as the whole image is padded. The arrays' spatial chunks must be at least ``halo`` (see
    `merge_small_chunks`); an axis shorter than the halo must be one chunk: dask cannot pad it from
    neighbours, so the task pads it itself with the same rule.
    """
    first = arrays[0]
    ndim = first.ndim
    spatial = (ndim - 2, ndim - 1)
    short = tuple(ax for ax in spatial if first.shape[ax] < halo)
    depth = {ax: (halo if ax in spatial and ax not in short else 0) for ax in range(ndim)}
    bound = {ax: (boundary if depth[ax] else "none") for ax in range(ndim)}
    task = partial(
        _padded_call,
        kernel=kernel,
        halo=halo,
        boundary=boundary,
        short=tuple(ax - ndim for ax in short),
    )
    options: dict[str, Any] = {"chunks": chunks, "dtype": dtype, "meta": meta}
    if name is not None:
        options["name"] = name
    if halo == 0 or len(short) == 2:
        return da.map_blocks(task, *arrays, **options)
    return da.map_overlap(
        task,
        *arrays,
        depth=depth,
        boundary=bound,
        trim=False,
        align_arrays=False,
        allow_rechunk=False,
        **options,
    )


def _padded_call(
    *blocks: Any, kernel: Any, halo: int, boundary: str, short: tuple[int, ...]
) -> Any:
    return kernel(*(pad_block(b, halo, boundary, short) for b in blocks))


def _upscale_padded(
    block: Any, *, method: Method, scale: int, nodata: float | None, halo: int
) -> Any:
    if block.size == 0:
        shape = (*block.shape[:-2], *(max(n - 2 * halo, 0) * scale for n in block.shape[-2:]))
        return np.empty(shape, dtype=block.dtype)
    return method.block(block, scale, nodata=nodata)


def downscale_blocks(
    kernel: Any, *arrays: da.Array, halo: int, scale: int, boundary: str = "reflect"
) -> da.Array:
    """Run a downscaling ``kernel`` blockwise on the last two axes of one or more dask arrays.

    ``kernel(*padded_blocks)`` gets the matching block of every array, each padded by ``halo``
    input pixels on each spatial side (from the neighbours, or by ``boundary`` at the image edge),
    and returns the float64 output of the blocks' own pixels, ``scale`` times smaller (``scale=1``
    is a filter). The arrays share one shape. Spatial chunks are first moved to multiples of
    ``scale`` (so every output pixel's ``scale x scale`` footprint lies in one block) and chunks
    smaller than the halo are merged with a neighbour (dask#11580). An axis shorter than the halo
    is one chunk padded inside the task, as the whole image is. The spatial shape must be a
    multiple of ``scale``; the caller checks it.
    """
    first = arrays[0]
    ndim = first.ndim
    spatial = (ndim - 2, ndim - 1)
    chunks = list(first.chunks)
    for ax in spatial:
        # Round every chunk boundary down to a multiple of the scale; drop emptied chunks.
        edges = sorted({(int(e) // scale) * scale for e in np.cumsum(first.chunks[ax])})
        aligned = tuple(int(b - a) for a, b in zip([0, *edges[:-1]], edges, strict=True) if b > a)
        chunks[ax] = merge_small_chunks(aligned, halo)
    blocks = [a if a.chunks == tuple(chunks) else a.rechunk(tuple(chunks)) for a in arrays]
    out_chunks = tuple(
        tuple(c // scale for c in chunks[ax]) if ax in spatial else chunks[ax] for ax in range(ndim)
    )
    meta = np.empty((0,) * ndim, dtype=np.float64)
    return map_with_halo(
        kernel,
        *blocks,
        halo=halo,
        boundary=boundary,
        chunks=out_chunks,
        dtype=np.float64,
        meta=meta,
    )
