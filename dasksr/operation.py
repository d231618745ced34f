"""Reconstruction operations, each declared once, and the one planner that wires any of them.

``upscale`` (with any registered method), ``fuse`` and the guided ``sharpen`` share one shape, an
`Operation`:

- its operands, the input arrays, all on one input grid; the output grid is ``scale`` times finer
  and covers the same ground (pixel-is-area, see :mod:`dasksr.grid`);
- the halo, in input pixels, that every block needs on each side;
- its block function: the padded blocks of the operands in, the block's own fine pixels out;
- its boundary rule (how the image is extended past its edges, the same as the whole-image
  result's) and its nodata rule;
- its identity token, which names the graph's keys so that the same operation on the same input
  has the same keys in every process (that is how an interrupted Zarr job is resumed).

`plan` turns an operation and its inputs into a lazy dask array and says which wiring it took
(see :mod:`dasksr.blockwise`): ``'source'`` when every input is an explicit window of a raster
source, so that each output block reads its own haloed window, else ``'overlap'``.
`Operation.whole` is the whole-image result, the reference of the seamless contract. The API
(:mod:`dasksr.api`, :mod:`dasksr.multiframe`) declares operations, plans them, and puts the result
on its georeferenced grid; the accessor, command line, evaluation and benchmarks call the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
from dask.base import tokenize

from dasksr.blockwise import (
    OperationWindows,
    Window,
    map_extended,
    map_with_halo,
    merge_small_chunks,
    pad_block,
)

__all__ = ["WIRINGS", "Input", "Operand", "Operation", "Plan", "plan"]

#: The wirings `plan` may take.
WIRINGS = ("source", "overlap", "extended")


@dataclass(frozen=True)
class Operand:
    """One input of an operation.

    Attributes
    ----------
    name : str
        What the input is (``'image'``, ``'frames'``, ``'masks'``), for messages and docs.
    whole_leading : bool
        The block function needs the leading (non-spatial) axes whole, as fusion needs every
        frame and band of a block at once: they are taken as one chunk.
    halo : int, optional
        This operand's own halo, in its own pixels, where operands lie on different grids (the
        ``'extended'`` boundary); by default the operation's.
    """

    name: str
    whole_leading: bool = False
    halo: int | None = None


@dataclass(frozen=True)
class Operation:
    """A reconstruction operation: everything the planner needs, and nothing about files or grids.

    Attributes
    ----------
    name : str
        Prefix of the graph's names, e.g. ``'upscale-bicubic-x2'``.
    token : str
        Identity: everything else that determines the output (method token, parameters, nodata,
        dtypes). Equal tokens on equal inputs give equal outputs and equal graph keys.
    operands : tuple of Operand
        The inputs, in the order the block function takes them. They share one shape, except
        that an operand may be broadcast by the caller first.
    scale : int
        Output pixels per input pixel along ``y`` and ``x``.
    halo : int
        Input pixels the block function needs on each spatial side of a block.
    block : callable
        ``block(*padded) -> fine``: the operands' blocks, each padded by ``halo`` on the last two
        axes, in; the fine pixels of the blocks' own input pixels out, in ``dtype``.
    dtype : numpy.dtype or None
        The output dtype; None for the first input's.
    boundary : {'reflect', 'nearest', 'periodic', 'extended'}
        How the image is extended past its edges, the same for blocks and the whole image.
        ``'extended'``: the caller has already extended every input by its operand's halo (as
        ``sharpen`` does for operands on two grids), and chunked them so that block ``i`` of every
        input covers the same ground; `plan` only adds the neighbours' halos.
    nodata : float, optional
        The value that marks invalid pixels, in the inputs and the output.
    nodata_rule : str
        In words, when an output pixel is nodata (for the docs and ``dasksr methods``).
    drop_axis : int, optional
        A leading axis that the block function reduces away (fusion's ``time``).
    """

    name: str
    token: str
    operands: tuple[Operand, ...]
    scale: int
    halo: int
    block: Callable[..., Any]
    dtype: np.dtype[Any] | None
    boundary: str = "reflect"
    nodata: float | None = None
    nodata_rule: str = ""
    drop_axis: int | None = None

    def whole(self, *arrays: Any) -> Any:
        """The whole-image result: pad every input by the halo with the boundary rule, then run
        the block function once. Any chunking of `plan` gives the same pixels."""
        self._check_count(len(arrays))
        if self.boundary == "extended":
            return self.block(*arrays)
        return self.block(*(pad_block(a, self.halo, self.boundary) for a in arrays))

    def _check_count(self, n: int) -> None:
        if n != len(self.operands):
            names = ", ".join(op.name for op in self.operands)
            raise TypeError(f"{self.name} takes {len(self.operands)} input(s) ({names}), got {n}")


@dataclass(frozen=True)
class Input:
    """An input of `plan`: a dask array and, when it is one, the window of a source it holds.

    ``window`` is the explicit promise that ``array`` is exactly that window's pixels (see
    :func:`dasksr.sources.source_window`); without it the blocks of ``array`` are used.
    """

    array: da.Array
    window: Window | None = None


@dataclass(frozen=True)
class Plan:
    """The lazy result of an operation and the wiring that makes it (one of `WIRINGS`)."""

    array: da.Array
    wiring: Literal["source", "overlap", "extended"]


def plan(
    operation: Operation,
    *inputs: Input | da.Array,
    spatial_chunks: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    output_chunks: tuple[tuple[int, ...], ...] | None = None,
) -> Plan:
    """Wire ``operation`` over its inputs' blocks: a lazy result equal to `Operation.whole`.

    Parameters
    ----------
    operation : Operation
    *inputs : Input or dask.array.Array
        One per operand, in order, of one shape ``(..., y, x)``.
    spatial_chunks : (tuple of int, tuple of int), optional
        The ``(y, x)`` chunks to compute in; the default keeps the first input's.

    Returns
    -------
    Plan
        The output has the inputs' chunks times the scale on the spatial axes. With the
        ``'source'`` wiring every chunk is kept and each task reads its own haloed windows; with
        ``'overlap'`` chunks smaller than the halo are first merged into a neighbour (dask#11580:
        ``map_overlap`` cannot take a depth larger than a chunk). An operation with the
        ``'extended'`` boundary takes its inputs' chunks as they are and needs ``output_chunks``
        (its wiring is ``'extended'``).
    """
    operation._check_count(len(inputs))
    given = [i if isinstance(i, Input) else Input(i) for i in inputs]
    if operation.boundary == "extended":
        if output_chunks is None:
            raise TypeError(f"{operation.name}: an extended operation needs output_chunks")
        return _plan_extended(operation, [i.array for i in given], output_chunks)
    windows = [i.window for i in given]
    direct = (
        spatial_chunks is None
        and operation.drop_axis is None
        and not any(op.whole_leading for op in operation.operands)
        and all(w is not None for w in windows)
    )
    if direct:
        return _plan_source(operation, given)
    return _plan_overlap(operation, [i.array for i in given], spatial_chunks)


def _output_chunks(operation: Operation, chunks: tuple[tuple[int, ...], ...]) -> tuple[Any, ...]:
    ndim = len(chunks)
    out = [
        tuple(c * operation.scale for c in chunks[ax]) if ax >= ndim - 2 else chunks[ax]
        for ax in range(ndim)
    ]
    if operation.drop_axis is not None:
        del out[operation.drop_axis]
    return tuple(out)


def _dtype(operation: Operation, first: da.Array) -> np.dtype[Any]:
    return np.dtype(first.dtype if operation.dtype is None else operation.dtype)


def _meta(operation: Operation, first: da.Array) -> Any:
    if operation.drop_axis is None:
        return first._meta.astype(_dtype(operation, first))
    return np.empty((0,) * (first.ndim - 1), dtype=_dtype(operation, first))


def _plan_source(operation: Operation, inputs: list[Input]) -> Plan:
    first = inputs[0].array
    windows = tuple(i.window for i in inputs)
    computed = OperationWindows(
        windows,
        operation.block,
        operation.scale,
        operation.halo,
        operation.boundary,
        _dtype(operation, first),
    )
    name = f"{operation.name}-" + tokenize(operation.token, *(w.token for w in windows))  # type: ignore[union-attr]
    array = da.from_array(
        computed,
        chunks=_output_chunks(operation, first.chunks),
        name=name,
        lock=False,
        asarray=False,
        fancy=False,
        meta=_meta(operation, first),
        # Each task holds the (small) readers itself: no shared key to fetch first, so every
        # worker process starts at once.
        inline_array=True,
    )
    return Plan(array, "source")


def _plan_overlap(
    operation: Operation,
    arrays: list[da.Array],
    spatial_chunks: tuple[tuple[int, ...], tuple[int, ...]] | None,
) -> Plan:
    first = arrays[0]
    ndim = first.ndim
    target = list(first.chunks)
    if spatial_chunks is not None:
        target[-2:] = list(spatial_chunks)
    if any(op.whole_leading for op in operation.operands):
        for ax in range(ndim - 2):
            target[ax] = (first.shape[ax],)
    for ax in (ndim - 2, ndim - 1):
        target[ax] = merge_small_chunks(tuple(target[ax]), operation.halo)
    chunks = tuple(target)
    arrays = [a if a.chunks == chunks else a.rechunk(chunks) for a in arrays]
    # A deterministic name: the same inputs and identity give the same graph keys in every
    # process, which is what lets an interrupted Zarr job be recognised and resumed.
    name = f"{operation.name}-" + tokenize(operation.token, *(a.name for a in arrays))
    array = map_with_halo(
        operation.block,
        *arrays,
        halo=operation.halo,
        boundary=operation.boundary,
        chunks=_output_chunks(operation, chunks),
        dtype=_dtype(operation, first),
        meta=_meta(operation, first),
        name=name,
        drop_axis=operation.drop_axis,
    )
    return Plan(array, "overlap")


def _plan_extended(
    operation: Operation, arrays: list[da.Array], chunks: tuple[tuple[int, ...], ...]
) -> Plan:
    dtype = _dtype(operation, arrays[0])
    name = f"{operation.name}-" + tokenize(operation.token, *(a.name for a in arrays))
    halos = [operation.halo if op.halo is None else op.halo for op in operation.operands]
    array = map_extended(
        operation.block,
        *arrays,
        halos=halos,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(chunks), dtype=dtype),
        name=name,
    )
    return Plan(array, "extended")
