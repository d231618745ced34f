"""Halo wiring: run a method's kernel on every block of a dask array, padded as the whole image is.

The kernel always sees its block padded by ``halo`` pixels, taken from the neighbouring blocks or,
at the image edge, made by the method's boundary rule, exactly as the whole-image result pads the
whole image. The output chunks are the input chunks times the scale; nothing is blended. Which
input pixels a block needs, and how the part past the image edge is made, is decided in one place
(`_haloed_read` for the source wiring, dask's ``map_overlap`` plus `pad_sides` otherwise), and the
kernel itself trims: it returns only the block's own fine pixels.

Two wirings give the same pixels:

- For any dask array, ``map_overlap`` copies the halo out of the neighbouring blocks. Every input
  block is then held until its eight neighbours are done, and the graph's overlap tasks keep the
  read of a block apart from its upscaling and writing.
- For an array made by `from_source` (``open_raster`` does it for GeoTIFFs and Zarr arrays), every
  output block's task reads its own haloed window straight from the source. Tasks have no
  neighbours, so read, upscale and write fuse into one task per block, and memory stays flat
  however large the scene. The source travels on the array's own graph layer (`SourceLayer`): an
  array that was changed in any way (sliced, persisted, rechunked) no longer has that layer, and
  takes the ``map_overlap`` wiring on its own blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from dasksr.kernels.registry import Method
from dasksr.windows import WindowArray

__all__ = [
    "SourceLayer",
    "downscale_blocks",
    "from_source",
    "map_with_halo",
    "merge_small_chunks",
    "pad_block",
    "source_of",
    "upscale_block_array",
    "upscale_numpy",
]

_NUMPY_PAD_MODE = {"reflect": "symmetric", "nearest": "edge", "periodic": "wrap"}


class SourceLayer(MaterializedLayer):
    """The graph layer of an array made by `from_source`: its read tasks, and the source itself."""

    def __init__(self, mapping: Mapping[Any, Any], source: Any, chunks: Any) -> None:
        super().__init__(mapping)
        self.source = source
        self.chunks = chunks


def from_source(source: Any, chunks: Any, *, name: str, meta: Any | None = None) -> da.Array:
    """A dask array of ``source`` whose upscaling reads haloed windows straight from ``source``.

    ``source`` has ``shape``, ``dtype``, ``ndim`` and ``__getitem__`` taking a tuple of
    unit-step slices (dask's ``from_array`` contract), and may be read from any thread or process.
    ``name`` must identify the content (dask's own rule for names). The source is kept on the
    array's graph layer (see `source_of`).
    """
    plain = da.from_array(
        source,
        chunks=chunks,
        name=name,
        lock=False,
        asarray=True,
        fancy=False,
        meta=meta,
        inline_array=True,
    )
    layer = SourceLayer(dict(plain.dask.layers[plain.name]), source, plain.chunks)
    graph = HighLevelGraph({plain.name: layer}, {plain.name: set()})
    return da.Array(graph, plain.name, plain.chunks, meta=plain._meta)


def source_of(array: da.Array) -> Any | None:
    """The source of an array made by `from_source` and not changed since, else None."""
    layer = array.dask.layers.get(array.name)
    if isinstance(layer, SourceLayer) and layer.chunks == array.chunks:
        return layer.source
    return None


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


def upscale_numpy(
    image: Any,
    method: Method,
    scale: int,
    *,
    nodata: float | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """The whole-image result: pad the whole array, then run the kernel once (the reference).

    ``params`` are extra keyword arguments of the method's block function (computed once for the
    whole image by the caller), passed to every call.
    """
    kernel = _kernel(method, scale, nodata, params)
    return kernel(pad_block(image, method.halo(scale), method.boundary))


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
    array: da.Array,
    method: Method,
    scale: int,
    *,
    nodata: float | None = None,
    params: Mapping[str, Any] | None = None,
    dtype: Any = None,
) -> da.Array:
    """Upscale the last two axes of a dask ``array`` blockwise with ``method``.

    An array made by `from_source` keeps its chunks, and every task reads its haloed window from
    the source. Otherwise chunks smaller than the halo are merged with a neighbour first and an
    axis shorter than the halo is taken whole and padded inside the task. Either way the result
    equals `upscale_numpy` on any chunking. ``params`` are passed to every call of the method's
    block function (see `upscale_numpy`). With ``dtype``, every block is cast to it as it is read
    and the result has that dtype (the same as casting the whole input first).
    """
    halo = method.halo(scale)
    ndim = array.ndim
    spatial = (ndim - 2, ndim - 1)
    dtype = np.dtype(array.dtype if dtype is None else dtype)
    kernel = _kernel(method, scale, nodata, params, dtype)
    meta = array._meta.astype(dtype)
    # A deterministic name: the same input, method identity, scale, nodata and parameters give
    # the same graph keys in every process, which is what lets an interrupted Zarr job be
    # recognised and resumed.
    name = f"upscale-{method.name}-x{scale}-" + tokenize(
        array.name, method.token, scale, nodata, dict(params or {}), dtype.str
    )
    source = source_of(array) if halo else None
    if source is None:
        chunks = list(array.chunks)
        for ax in spatial:
            chunks[ax] = merge_small_chunks(array.chunks[ax], halo)
        if tuple(chunks) != array.chunks:
            array = array.rechunk(tuple(chunks))
    out_chunks = tuple(
        tuple(c * scale for c in array.chunks[ax]) if ax in spatial else array.chunks[ax]
        for ax in range(ndim)
    )
    if source is not None:
        windows = _UpscaledWindows(source, kernel, scale, halo, method.boundary, dtype)
        return da.from_array(
            windows,
            chunks=out_chunks,
            name=name,
            lock=False,
            asarray=False,
            fancy=False,
            meta=meta,
            # Each task holds the (small) source itself: no shared key to fetch first, so every
            # worker process starts at once.
            inline_array=True,
        )
    return map_with_halo(
        kernel,
        array,
        halo=halo,
        boundary=method.boundary,
        chunks=out_chunks,
        dtype=dtype,
        meta=meta,
        name=name,
    )


def _kernel(
    method: Method,
    scale: int,
    nodata: float | None,
    params: Mapping[str, Any] | None,
    dtype: Any = None,
) -> Callable[[Any], Any]:
    """``padded block -> fine block``: the method's block function with everything else bound.

    The block function is always called as ``function(padded, scale, nodata=nodata)``; extra
    per-call parameters are bound to it first. With ``dtype`` the padded block is cast to it first.
    """
    function = partial(method.block, **params) if params else method.block
    return partial(
        _upscale_padded,
        function=function,
        scale=scale,
        nodata=nodata,
        halo=method.halo(scale),
        dtype=None if dtype is None else np.dtype(dtype),
    )


def _upscale_padded(
    padded: Any,
    *,
    function: Any,
    scale: int,
    nodata: float | None,
    halo: int,
    dtype: np.dtype[Any] | None,
) -> Any:
    if dtype is not None:
        padded = padded.astype(dtype, copy=False)
    if padded.size == 0:
        shape = (*padded.shape[:-2], *(max(n - 2 * halo, 0) * scale for n in padded.shape[-2:]))
        return np.empty(shape, dtype=padded.dtype)
    return function(padded, scale, nodata=nodata)


class _UpscaledWindows(WindowArray):
    """The upscaled ``source`` as a lazily computed array: a box of the output is computed from
    the input box under it plus the halo, read from ``source`` (see `_haloed_read`)."""

    def __init__(
        self,
        source: Any,
        kernel: Callable[[Any], Any],
        scale: int,
        halo: int,
        boundary: str,
        dtype: Any,
    ) -> None:
        self.source = source
        self.kernel = kernel
        self.scale = scale
        self.halo = halo
        self.boundary = boundary
        self.dtype = np.dtype(dtype)
        self.shape = (*source.shape[:-2], *(n * scale for n in source.shape[-2:]))

    def _read(self, box: list[tuple[int, int]]) -> Any:
        padded, crops = _haloed_read(self.source, box, self.scale, self.halo, self.boundary)
        return self.kernel(padded)[(..., *crops)]


def _haloed_read(
    source: Any, box: list[tuple[int, int]], scale: int, halo: int, boundary: str
) -> tuple[Any, list[slice]]:
    """The input under the output ``box`` plus ``halo`` on each spatial side, read from ``source``
    where it lies inside the image and padded by ``boundary`` past the edge; and the crop of the
    kernel's output that is ``box``."""
    reads = [slice(lo, hi) for lo, hi in box[:-2]]
    widths: dict[int, tuple[int, int]] = {}
    crops = []
    for ax, (start, stop), n in zip((-2, -1), box[-2:], source.shape[-2:], strict=True):
        first, last = start // scale, -(-stop // scale)  # input pixels under the box
        low, high = max(first - halo, 0), min(last + halo, n)
        reads.append(slice(low, high))
        widths[ax] = (halo - (first - low), halo - (high - last))
        crops.append(slice(start - first * scale, stop - first * scale))
    block = np.asarray(source[tuple(reads)])
    return pad_sides(block, widths, boundary), crops


def map_with_halo(
    kernel: Any,
    *arrays: da.Array,
    halo: int,
    boundary: str,
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
    meta: Any,
    name: str | None = None,
    drop_axis: int | None = None,
) -> da.Array:
    """Call ``kernel(*padded_blocks)`` on every block, each padded by ``halo`` on the spatial axes.

    The padding comes from the neighbouring blocks, or from ``boundary`` at the image edge, exactly
    as the whole image is padded. The arrays' spatial chunks must be at least ``halo`` (see
    `merge_small_chunks`); an axis shorter than the halo must be one chunk: dask cannot pad it from
    neighbours, so the task pads it itself with the same rule. With ``drop_axis`` the kernel reduces
    that (leading, single-chunk) axis away, as multi-frame fusion does with ``time``; ``chunks``
    then describes the output without it.
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
    if drop_axis is not None:
        options["drop_axis"] = drop_axis
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
