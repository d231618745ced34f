"""Learned reconstruction: compact CNNs shipped with dasksr, run by onnxruntime on one block.

Each network (trained by ``training/train.py``) is a plain stack of ``layers`` "valid" 3x3
convolutions on the low-resolution grid, a depth-to-space output and a built-in bicubic skip: a
block padded by ``layers`` pixels gives exactly its fine-grid block, wherever it lies in the image.
Its weights ship in ``dasksr/weights`` as ``<name>_x<scale>.onnx`` with a JSON record beside each
(architecture, multiply-adds, degradation, training data, seed, steps, wall time, figures, and the
file's SHA-256, checked before the first use in every process). Nothing is ever downloaded.

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

import contextlib
import hashlib
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dasksr.errors import ModelError
from dasksr.kernels.interp import upsample_nearest
from dasksr.kernels.registry import Method, ProcessResource, register
from dasksr.kernels.values import finalize, invalid_mask, work_dtype

__all__ = ["ModelRecord", "LearnedMethod", "fill_invalid", "load_records", "run_network"]

#: Output pixels per onnxruntime call: a strip of this size keeps the network's intermediate
#: features (channels x pixels x 4 bytes) within a few tens of MB.
_STRIP_PIXELS = 1 << 18


@dataclass(frozen=True)
class ModelRecord:
    """One shipped network: its ONNX file and the facts of its JSON record that inference needs."""

    name: str
    scale: int
    path: str
    sha256: str
    layers: int
    record: dict[str, Any] = field(compare=False, hash=False, repr=False)

    def session(self, threads: int | None = None) -> Any:
        """The process's onnxruntime session for this file (created once, checked first).

        ``threads`` is its intra-op thread count; by default the cores left to each of dask's
        threads (see `_intra_threads`).
        """
        n = threads or _intra_threads()
        return ProcessResource(f"onnx:{self.sha256}:{n}", partial(self._open, n)).get()

    def run(self, planes: np.ndarray) -> np.ndarray:
        """`run_network` with this file on ``planes``, with the threads this caller may use.

        Where it may use several (`_intra_threads`, e.g. a whole image upscaled from the main
        thread), the strips run at once on that many one-thread calls of one session: on this
        2-core CPU the 2048 x 2048 band took 2.2 s so, against 2.55 s as one two-thread call per
        strip. Both give the same bits (onnxruntime's per-pixel arithmetic depends neither on a
        strip's size nor on the thread count).
        """
        threads = _intra_threads()
        n, ny, nx = planes.shape
        count = len(_strips(n, ny - 2 * self.layers, nx - 2 * self.layers))
        if threads == 1 or count == 1:
            return run_network(self.session(), planes, self.layers, self.scale)
        session = self.session(1)
        if "CUDAExecutionProvider" in session.get_providers():  # one device: strip after strip
            return run_network(session, planes, self.layers, self.scale)
        with ThreadPoolExecutor(min(threads, count), thread_name_prefix="dasksr-cnn") as pool:
            return run_network(session, planes, self.layers, self.scale, mapper=pool.map)

    def check(self) -> None:
        """Raise `ModelError` unless the file exists and its SHA-256 matches the record."""
        _read_checked(self.path, self.sha256)

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort

        content = _read_checked(self.path, self.sha256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # All optimisations (blocked NCHWc convolutions, twice the basic level's speed here): their
        # per-pixel arithmetic depends neither on the block's size nor on the thread count, which
        # the seamless contract needs for integer outputs (tests/test_cnn.py checks it).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        try:
            return ort.InferenceSession(content, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own error types for a corrupt model
            raise ModelError(
                f"model file {self.path} is not a valid ONNX model ({type(exc).__name__}): "
                "reinstall dasksr"
            ) from None


def _read_checked(path: str, sha256: str) -> bytes:
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(
            f"model file {path} cannot be read ({exc.strerror or exc}): reinstall dasksr"
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != sha256:
        raise ModelError(
            f"model file {path} has SHA-256 {digest[:12]}..., not the {sha256[:12]}... of its "
            "record: the file is corrupt or was replaced; reinstall dasksr"
        )
    return content


def _intra_threads() -> int:
    """onnxruntime threads per call, so that dask's threads times these stay within the cores.

    In a distributed worker, dask runs the worker's thread count of tasks at once; in the threaded
    scheduler, ``num_workers`` (default: one per core). A call from the main thread (a NumPy
    array upscaled whole, or the synchronous scheduler) runs alone and takes every core.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if threading.current_thread() is threading.main_thread():
        return cores
    threads = cores
    if "distributed" in sys.modules:
        from distributed import get_worker

        # Outside a worker (the client's or the threaded scheduler's process) this raises.
        with contextlib.suppress(ValueError):
            threads = get_worker().state.nthreads
    import dask

    configured = dask.config.get("num_workers", None)
    if threads == cores and configured:
        threads = int(configured)
    return max(1, cores // max(1, threads))


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
    session: Any, planes: np.ndarray, layers: int, scale: int, *, mapper: Any = map
) -> np.ndarray:
    """The network on ``(n, y + 2 layers, x + 2 layers)`` float32 planes: ``(n, y s, x s)``.

    Planes are cut into row strips (each with its own ``layers`` rows of halo) so that memory stays
    bounded; "valid" convolutions make the strips' results exactly those of the whole plane.
    ``mapper`` maps the strips: a thread pool's ``map`` runs several at once (onnxruntime sessions
    may be run from several threads; each strip writes its own rows of the result).
    """
    n, ny, nx = planes.shape
    rows, cols = ny - 2 * layers, nx - 2 * layers
    out = np.empty((n, rows * scale, cols * scale), dtype=np.float32)

    def one(strip: tuple[int, int, int]) -> None:
        i, r0, r1 = strip
        lr = np.ascontiguousarray(planes[i, r0 : r1 + 2 * layers][None, None])
        (result,) = session.run(None, {"lr": lr})
        out[i, r0 * scale : r1 * scale] = result[0, 0]

    for _ in mapper(one, _strips(n, rows, cols)):
        pass
    return out


def _strips(n: int, rows: int, cols: int) -> list[tuple[int, int, int]]:
    """``(plane, first row, end row)`` of the strips of `run_network`."""
    step = max(1, _STRIP_PIXELS // max(cols, 1))
    return [(i, r0, min(rows, r0 + step)) for i in range(n) for r0 in range(0, rows, step)]


class _LearnedBlock:
    """The block function of a learned method: the network of the requested scale on a block."""

    def __init__(self, models: dict[int, ModelRecord]) -> None:
        self.models = models

    def __call__(self, block: Any, scale: int, *, nodata: float | None = None) -> Any:
        model = self.models[scale]
        on_gpu = type(block).__module__.split(".")[0] == "cupy"
        host = block.get() if on_gpu else np.asarray(block)
        layers = model.layers
        lead, (ny, nx) = host.shape[:-2], host.shape[-2:]
        planes = host.reshape(-1, ny, nx)
        invalid = invalid_mask(planes, nodata)
        work = planes.astype(np.float32)
        if invalid is not None:
            work = fill_invalid(work, invalid, layers)
        inner = work[:, layers : ny - layers, layers : nx - layers]
        fine = model.run(inner)
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


class LearnedMethod(Method):
    """A registered method backed by shipped networks, one per scale."""

    def check_scale(self, scale: Any) -> int:
        """`Method.check_scale`, then check the scale's model file against its record."""
        scale = super().check_scale(scale)
        block = self.block
        assert isinstance(block, _LearnedBlock)
        block.models[scale].check()
        return scale


_SUMMARIES = {
    "cnn": "compact CNN trained on bicubic-downscaled images (the literature's protocol)",
    "cnn-sensor": "compact CNN trained on a sensor-like degradation (blur and noise) for "
    "satellite and aerial data",
}


def load_records(folder: Path | None = None) -> dict[str, dict[int, ModelRecord]]:
    """Read every JSON record in the package's ``weights`` folder, by model name and scale."""
    base = Path(str(resources.files("dasksr") / "weights")) if folder is None else folder
    models: dict[str, dict[int, ModelRecord]] = {}
    for meta in sorted(base.glob("*.json")):
        record = json.loads(meta.read_text())
        scale = int(record["scale"])
        models.setdefault(record["name"], {})[scale] = ModelRecord(
            name=record["name"],
            scale=scale,
            path=str(base / record["file"]),
            sha256=record["sha256"],
            layers=int(record["architecture"]["layers"]),
            record=record,
        )
    return models


def learned_method(name: str, models: dict[int, ModelRecord]) -> LearnedMethod:
    """The registry entry for the networks of ``name``."""
    layers = {s: m.layers for s, m in models.items()}
    weights = hashlib.sha256("".join(models[s].sha256 for s in sorted(models)).encode())
    return LearnedMethod(
        name=name,
        summary=_SUMMARIES.get(name, f"learned model {name}"),
        halo=lambda scale: 2 * layers.get(scale, max(layers.values())),
        block=_LearnedBlock(models),
        scales=tuple(sorted(models)),
        boundary="reflect",
        version="1",
        params=(("weights", weights.hexdigest()[:16]),),
        luma=True,
    )


for _name, _models in load_records().items():
    register(learned_method(_name, _models))
