"""Halo arithmetic and ``map_overlap`` wiring: run a method's kernel on every block of a dask array.

The kernel always sees its block padded by ``halo`` pixels, taken from the neighbouring blocks or,
at the image edge, made by the method's boundary rule, exactly as the whole-image result pads the
whole image. The output chunks are the input chunks times the scale; nothing is blended.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from dasksr.kernels.registry import Method

__all__ = [
    "downscale_blocks",
    "map_with_halo",
    "merge_small_chunks",
    "pad_block",
    "upscale_block_array",
    "upscale_numpy",
]

_NUMPY_PAD_MODE = {"reflect": "symmetric", "nearest": "edge", "periodic": "wrap"}


def pad_block(block: Any, halo: int, boundary: str, axes: tuple[int, ...] = (-2, -1)) -> Any:
    """Pad ``block`` by ``halo`` on ``axes`` with the boundary rule, as the whole image is padded."""
    if halo == 0 or not axes:
        return block
    from dasksr.backend import array_namespace

    xp = array_namespace(block)
    width = [(0, 0)] * block.ndim
    for ax in axes:
        width[ax] = (halo, halo)
    return xp.pad(block, width, mode=_NUMPY_PAD_MODE[boundary])


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

    Chunks smaller than the halo are merged with a neighbour first. An axis shorter than the halo is
    taken whole and padded inside the task, so the result equals `upscale_numpy` on any chunking.
    """
    halo = method.halo(scale)
    ndim = array.ndim
    spatial = (ndim - 2, ndim - 1)
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
    # A deterministic name: the same input, method, scale and nodata give the same graph keys in
    # every process, which is what lets an interrupted Zarr job be recognised and resumed.
    name = f"upscale-{method.name}-x{scale}-" + tokenize(array.name, method.name, scale, nodata)
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
