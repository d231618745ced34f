"""Halo wiring: run a block function on every block of dask arrays, padded as the whole image is.

The block function always sees its block padded by ``halo`` pixels, taken from the neighbouring
blocks or, at the image edge, made by the boundary rule, exactly as the whole-image result pads the
whole image. The output chunks are the input chunks times the scale; nothing is blended. Which
input pixels a block needs, and how the part past the image edge is made, is decided in one place
(`_haloed_read` for windows of sources, dask's ``map_overlap`` plus `pad_sides` otherwise), and the
block function itself trims: it returns only the block's own fine pixels.

Two wirings give the same pixels (the planner, :mod:`dasksr.operation`, picks one and says which):

- For any dask array, `map_with_halo` (``map_overlap``) copies the halo out of the neighbouring
  blocks. Every input block is then held until its eight neighbours are done, and the graph's
  overlap tasks keep the read of a block apart from its computation and writing.
- For a `Window` of a `Source` (``open_raster`` makes GeoTIFFs and Zarr arrays sources, and the
  window survives band selection, spatial slicing and ``astype``), `OperationWindows` lets every
  output block's task read its own haloed window straight from the source. Tasks have no
  neighbours, so read, compute and write fuse into one task per block, and memory stays flat
  however large the scene.

This layer knows dask and NumPy only: no xarray, no files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from dasksr.windows import WindowArray

__all__ = [
    "OperationWindows",
    "Source",
    "Window",
    "downscale_blocks",
    "map_extended",
    "map_with_halo",
    "merge_small_chunks",
    "pad_block",
    "pad_sides",
]

_NUMPY_PAD_MODE = {"reflect": "symmetric", "nearest": "edge", "periodic": "wrap"}


class Source:
    """A raster that tasks can read any window of, straight from where it is stored.

    ``reader`` has ``shape``, ``dtype``, ``ndim`` and ``__getitem__`` taking a tuple of unit-step
    slices (dask's ``from_array`` contract), and may be read from any thread or process. ``name``
    identifies the content (dask's own rule for names) and is the name of `array`. A lazy object
    that holds a window of a source says so explicitly (see `Window` and :mod:`dasksr.sources`);
    the planner of :mod:`dasksr.operation` then lets every output block read its own haloed
    window, instead of copying halos between neighbouring blocks.
    """

    def __init__(self, reader: Any, chunks: Any, *, name: str, meta: Any | None = None) -> None:
        self.reader = reader
        self.name = name
        self.chunks = da.core.normalize_chunks(chunks, reader.shape, dtype=reader.dtype)
        self.meta = meta

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reader.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.reader.dtype)

    def array(self) -> da.Array:
        """The source as a dask array, one read task per chunk (the same graph in every call)."""
        return da.from_array(
            self.reader,
            chunks=self.chunks,
            name=self.name,
            lock=False,
            asarray=True,
            fancy=False,
            meta=self.meta,
            # Each task holds the (small) reader itself: no shared key to fetch first, so every
            # worker process starts at once.
            inline_array=True,
        )


class Window(WindowArray):
    """The part of a `Source` that a lazy array holds, read on demand and cast to ``dtype``.

    ``picks`` gives, for every axis of the source, the positions taken: a tuple of indices
    (a band selection, or a run of rows or columns), or an int, which drops the axis as NumPy
    does. Windows are what users make before upscaling: band selection, spatial slicing,
    ``astype``.
    """

    def __init__(self, source: Source, picks: tuple[Any, ...], dtype: Any) -> None:
        if len(picks) != len(source.shape):
            raise ValueError(f"{len(picks)} picks for a source of {len(source.shape)} axes")
        self.source = source
        self.picks = tuple(
            int(p) if isinstance(p, int | np.integer) else tuple(int(i) for i in p) for p in picks
        )
        self.dtype = np.dtype(dtype)
        self.shape = tuple(len(p) for p in self.picks if not isinstance(p, int))

    @property
    def token(self) -> str:
        """What identifies the window's pixels: the source's name, the picks and the dtype."""
        return tokenize(self.source.name, self.picks, self.dtype.str)

    def _read(self, box: list[tuple[int, int]]) -> Any:
        reads: list[slice] = []
        takes: list[Any] = []
        kept = iter(box)
        for pick in self.picks:
            if isinstance(pick, int):
                reads.append(slice(pick, pick + 1))
                takes.append(0)
                continue
            start, stop = next(kept)
            chosen = np.asarray(pick[start:stop], dtype=np.intp)
            first = int(chosen.min())
            reads.append(slice(first, int(chosen.max()) + 1))
            run = np.array_equal(chosen, np.arange(first, first + chosen.size))
            takes.append(None if run else chosen - first)
        block = np.asarray(self.source.reader[tuple(reads)])
        for axis in reversed(range(len(takes))):  # from the last: an int drops its axis
            if takes[axis] is not None:
                block = np.take(block, takes[axis], axis=axis)
        return block.astype(self.dtype, copy=False)


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


class OperationWindows(WindowArray):
    """The output of a block function on windows of sources, as a lazily computed array.

    A box of the output is computed from the box of every input under it plus the halo, read
    from the input (see `_haloed_read`); the block function gets the padded inputs in order and
    returns the fine pixels of the input pixels under the box, which are cropped to the box.
    """

    def __init__(
        self,
        inputs: tuple[Any, ...],
        kernel: Callable[..., Any],
        scale: int,
        halo: int,
        boundary: str,
        dtype: Any,
    ) -> None:
        self.inputs = inputs
        self.kernel = kernel
        self.scale = scale
        self.halo = halo
        self.boundary = boundary
        self.dtype = np.dtype(dtype)
        first = inputs[0].shape
        self.shape = (*first[:-2], *(n * scale for n in first[-2:]))

    def _read(self, box: list[tuple[int, int]]) -> Any:
        padded = []
        crops: list[slice] = []
        for source in self.inputs:
            block, crops = _haloed_read(source, box, self.scale, self.halo, self.boundary)
            padded.append(block)
        return self.kernel(*padded)[(..., *crops)]


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


def map_extended(
    kernel: Any,
    *arrays: da.Array,
    halos: list[int],
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
    meta: Any,
    name: str,
) -> da.Array:
    """Call ``kernel(*blocks)`` on arrays already extended past their edges by their ``halos``.

    Array ``i`` carries ``halos[i]`` extra pixels before its first and after its last spatial
    chunk; its blocks get ``halos[i]`` more from each neighbour (no boundary rule: the extension
    is the caller's). The arrays may lie on different grids (different shapes and chunk sizes)
    but have the same number of blocks along each axis, block ``j`` of each covering the same
    ground. ``chunks`` are the output's.
    """
    depth = [
        {ax: (h if ax >= a.ndim - 2 else 0) for ax in range(a.ndim)}
        for a, h in zip(arrays, halos, strict=True)
    ]
    return da.map_overlap(
        kernel,
        *arrays,
        depth=depth,
        boundary="none",
        trim=False,
        align_arrays=False,
        allow_rechunk=False,
        chunks=chunks,
        dtype=dtype,
        meta=meta,
        name=name,
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
