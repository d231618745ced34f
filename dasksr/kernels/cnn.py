"""Learned reconstruction on one block: the pure maths around a compact CNN.

Each network (trained by ``training/train.py``) is a plain stack of ``layers`` "valid" 3x3
convolutions on the low-resolution grid, a depth-to-space output and a built-in bicubic skip: a
block padded by ``layers`` pixels gives exactly its fine-grid block, wherever it lies in the image.
The kernel gets the network as a parameter (a `Network`: any callable on float32 planes); the
shipped networks, their ONNX files, records and onnxruntime sessions are :mod:`dasksr.models`'
business, so this module reads no file and makes no session.

Value rule: the network computes in float32 on the band's own values. It has no biases and PReLU
activations, so it is positively homogeneous, ``f(a x) = a f(x)`` for ``a > 0``: no per-band
normalisation (no hidden ``/ 255`` or ``/ 10000``) is needed, and uint8, uint16 reflectance and
float data are treated alike. The result is cast back to the input dtype by the rules every method
follows (integers rounded half to even and clipped, never wrapped).

Nodata rule: a fine pixel is nodata exactly when its coarse pixel is, as for the interpolation
methods. Before the network runs, every invalid pixel within ``layers`` pixels of valid data is
filled by repeated 3x3 means of its valid (or already filled) neighbours, so no nodata value ever
enters the receptive field of a valid output pixel. The fill needs ``layers`` more pixels of halo:
``halo(scale) = 2 * layers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from dasksr.kernels.interp import neighbourhood_bounds, upsample_nearest
from dasksr.kernels.values import finalize, invalid_mask, work_dtype

__all__ = ["LearnedBlock", "Network", "fill_invalid", "run_network", "strips"]

#: Output pixels per network call: a strip of this size keeps the network's intermediate
#: features (channels x pixels x 4 bytes) within a few tens of MB.
_STRIP_PIXELS = 1 << 18


class Network(Protocol):
    """A network of ``layers`` valid 3x3 convolutions for one scale, as the kernel sees it.

    Called on ``(n, y + 2 * layers, x + 2 * layers)`` float32 planes, it returns the
    ``(n, y * scale, x * scale)`` float32 fine planes (for example through `run_network`).
    """

    layers: int

    def __call__(self, planes: np.ndarray) -> np.ndarray: ...


def fill_invalid(planes: np.ndarray, invalid: np.ndarray, steps: int) -> np.ndarray:
    """Fill invalid pixels of ``(n, y, x)`` float ``planes`` from their valid neighbours.

    Each of ``steps`` passes gives every still-invalid pixel with a known 3x3 neighbour the mean of
    its known neighbours, so pixels up to ``steps`` away from valid data are filled; the rest
    become 0. A pixel's value depends only on pixels within ``steps`` of it (the halo it needs).
    """
    values = np.where(invalid, 0, planes).astype(np.float32)
    known = (~invalid).astype(np.float32)
    for _ in range(steps):
        todo = known == 0
        if not todo.any():
            break
        total = _box3(values * known)
        count = _box3(known)
        grow = todo & (count > 0)
        values[grow] = total[grow] / count[grow]
        known[grow] = 1
    return values


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 sums on the last two axes with zeros past the edge."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def run_network(
    session: Any,
    planes: np.ndarray,
    layers: int,
    scale: int,
    *,
    mapper: Callable[..., Iterable[Any]] = map,
) -> np.ndarray:
    """The network on ``(n, y + 2 layers, x + 2 layers)`` float32 planes: ``(n, y s, x s)``.

    ``session`` is an already-made inference session (anything with onnxruntime's
    ``run(None, {"lr": strip})``) or a plain callable taking a ``(1, 1, h, w)`` float32 strip to
    its ``(1, 1, h', w')`` fine strip. Planes are cut into row strips (each with its own ``layers``
    rows of halo) so that memory stays bounded; "valid" convolutions make the strips' results
    exactly those of the whole plane. ``mapper`` maps the strips: a thread pool's ``map`` runs
    several at once (onnxruntime sessions may be run from several threads; each strip writes its
    own rows of the result).
    """
    network = _strip_function(session)
    n, ny, nx = planes.shape
    rows, cols = ny - 2 * layers, nx - 2 * layers
    out = np.empty((n, rows * scale, cols * scale), dtype=np.float32)

    def one(strip: tuple[int, int, int]) -> None:
        i, r0, r1 = strip
        lr = np.ascontiguousarray(planes[i, r0 : r1 + 2 * layers][None, None])
        out[i, r0 * scale : r1 * scale] = network(lr)[0, 0]

    for _ in mapper(one, strips(n, rows, cols)):
        pass
    return out


def _strip_function(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``strip -> fine strip`` of a session (its one output) or of a plain callable."""
    run = getattr(session, "run", None)
    if run is None:
        return session

    def through_session(lr: np.ndarray) -> np.ndarray:
        (result,) = run(None, {"lr": lr})
        return result

    return through_session


def strips(n: int, rows: int, cols: int) -> list[tuple[int, int, int]]:
    """``(plane, first row, end row)`` of the strips of `run_network`."""
    step = max(1, _STRIP_PIXELS // max(cols, 1))
    return [(i, r0, min(rows, r0 + step)) for i in range(n) for r0 in range(0, rows, step)]


class LearnedBlock:
    """The block function of a learned method: the network of the requested scale on a block.

    Parameters
    ----------
    networks : mapping of int to Network
        One network per supported scale. The block function is pickled with every task, so the
        networks should be light, picklable handles (the shipped ones make their inference
        session lazily in each process: :class:`dasksr.models.OnnxNetwork`).
    bounded : bool
        Hold every output pixel within the minimum and maximum of the 4 x 4 input pixels around
        it (`neighbourhood_bounds`, bicubic's support): the network may sharpen, but it makes no
        new extrema (no halos, overshoots or spots darker or brighter than the data around
        them). Those pixels are at most 2 input pixels from the output's, well inside the
        network's halo, so the result stays seamless.
    """

    def __init__(self, networks: Mapping[int, Network], bounded: bool = False) -> None:
        self.networks = networks
        self.bounded = bounded

    def __call__(self, block: Any, scale: int, *, nodata: float | None = None) -> Any:
        network = self.networks[scale]
        on_gpu = type(block).__module__.split(".")[0] == "cupy"
        host = block.get() if on_gpu else np.asarray(block)
        layers = network.layers
        lead, (ny, nx) = host.shape[:-2], host.shape[-2:]
        planes = host.reshape(-1, ny, nx)
        invalid = invalid_mask(planes, nodata)
        work = planes.astype(np.float32)
        if invalid is not None:
            work = fill_invalid(work, invalid, layers)
        inner = work[:, layers : ny - layers, layers : nx - layers]
        fine = network(inner)
        if self.bounded:
            low, high = neighbourhood_bounds(inner, scale)
            edge = layers * scale
            core = (..., slice(edge, low.shape[-2] - edge), slice(edge, low.shape[-1] - edge))
            fine = np.clip(fine, low[core], high[core])
        fine_invalid = None
        if invalid is not None:
            core = invalid[:, 2 * layers : ny - 2 * layers, 2 * layers : nx - 2 * layers]
            fine_invalid = upsample_nearest(core, scale)  # the interpolation methods' footprint
        # Wide integers round and clip in float64: float32 cannot hold int32's limits exactly.
        values = fine.astype(work_dtype(host.dtype), copy=False)
        out = finalize(values, host.dtype, nodata, fine_invalid)
        out = out.reshape(*lead, *out.shape[-2:])
        if on_gpu:
            import cupy

            return cupy.asarray(out)
        return out
