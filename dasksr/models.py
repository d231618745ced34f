"""The networks shipped with dasksr: their records, weight files, inference sessions and methods.

Each network (trained by ``training/train.py``) ships in ``dasksr/weights`` as
``<name>_x<scale>.onnx`` with a JSON record beside it (architecture, multiply-adds, degradation,
training data, seed, steps, wall time, figures, and the file's SHA-256, checked before the first
use in every process). Nothing is ever downloaded. This module reads the records, checks the files,
makes the onnxruntime sessions (once per process, with an intra-op thread count that leaves room
for dask's own threads) and builds the learned methods: the block function of each is the pure
kernel :class:`dasksr.kernels.cnn.LearnedBlock`, handed an `OnnxNetwork` per scale.

onnxruntime is imported when the first session is made, not with this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dasksr.errors import ModelError
from dasksr.kernels.cnn import LearnedBlock, run_network, strips
from dasksr.kernels.method import Method

__all__ = [
    "GuidedNetwork",
    "LearnedMethod",
    "ModelRecord",
    "OnnxNetwork",
    "ProcessResource",
    "evaluated_on_luma",
    "guided_records",
    "learned_method",
    "learned_methods",
    "load_records",
]


class ProcessResource:
    """A heavy object (an inference session) made lazily, once per process, shared by its threads.

    The object is created by ``factory()`` on first `get` in each process, under a lock, and cached
    by ``key`` (for a network, the hash of its weights), so tasks that carry a `ProcessResource`
    pickle only the key and the factory, never the object itself.
    """

    _cache: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: str, factory: Callable[[], Any]) -> None:
        self.key = key
        self.factory = factory

    def get(self) -> Any:
        """The process's object for this key, made by the factory on first use."""
        found = self._cache.get(self.key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(self.key)
            if found is None:
                found = self._cache[self.key] = self.factory()
        return found

    @classmethod
    def clear(cls) -> None:
        """Drop every cached object of this process."""
        with cls._lock:
            cls._cache.clear()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.factory))


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
        count = len(strips(n, ny - 2 * self.layers, nx - 2 * self.layers))
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


class OnnxNetwork:
    """A shipped network as the kernel sees it: a light, picklable callable on float32 planes.

    Tasks pickle the record only; each process makes its onnxruntime session on the first call
    (`ModelRecord.session`, a `ProcessResource`).
    """

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        self.layers = record.layers

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        """`ModelRecord.run` on ``(n, y + 2 layers, x + 2 layers)`` float32 planes."""
        return self.record.run(planes)


class LearnedMethod(Method):
    """A registered method backed by shipped networks, one per scale."""

    def check_scale(self, scale: Any) -> int:
        """`Method.check_scale`, then check the scale's model file against its record."""
        scale = super().check_scale(scale)
        block = self.block
        assert isinstance(block, LearnedBlock)
        network = block.networks[scale]
        assert isinstance(network, OnnxNetwork)
        network.record.check()
        return scale


_SUMMARIES = {
    "cnn": "compact CNN trained on bicubic-downscaled images (the literature's protocol)",
    "cnn-sensor": "compact CNN trained on a sensor-like degradation (blur and noise) for "
    "satellite and aerial data",
    "cnn-sensor-bounded": "cnn-sensor held within the range of the 4x4 input pixels around each "
    "output pixel: no new extrema (halos, dark or bright spots), a little less sharp",
}
#: The learned families that also come ``-bounded`` (`LearnedBlock`'s ``bounded``).
BOUNDED = ("cnn-sensor",)


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


def learned_method(
    name: str, models: dict[int, ModelRecord], bounded: bool = False
) -> LearnedMethod:
    """The registry entry for the networks of ``name`` (``name-bounded`` with ``bounded``)."""
    layers = {s: m.layers for s, m in models.items()}
    weights = hashlib.sha256("".join(models[s].sha256 for s in sorted(models)).encode())
    name = f"{name}-bounded" if bounded else name
    return LearnedMethod(
        name=name,
        summary=_SUMMARIES.get(name, f"learned model {name}"),
        halo=lambda scale: 2 * layers.get(scale, max(layers.values())),
        block=LearnedBlock({s: OnnxNetwork(m) for s, m in models.items()}, bounded=bounded),
        scales=tuple(sorted(models)),
        boundary="reflect",
        version="1",
        params=(("weights", weights.hexdigest()[:16]),),
    )


def learned_methods(folder: Path | None = None) -> list[LearnedMethod]:
    """The learned method of every network family whose records are in ``folder`` (the guided
    networks of ``sharpen`` are not upscaling methods: see `guided_records`)."""
    return [
        learned_method(name, models, bounded)
        for name, models in load_records(folder).items()
        if not any(m.record.get("kind") == "guided" for m in models.values())
        for bounded in ((False, True) if name in BOUNDED else (False,))
    ]


def guided_records(name: str = "cnn-s2", folder: Path | None = None) -> dict[int, ModelRecord]:
    """The guided networks of ``name`` (``dasksr.sharpen``'s learned method), by ratio."""
    return {
        scale: record
        for scale, record in load_records(folder).get(name, {}).items()
        if record.record.get("kind") == "guided"
    }


#: Output pixels of one call of a guided network (a strip of rows). Each call also computes its
#: strip's halo rows (the network's depth on either side), so longer strips recompute less, at
#: the cost of larger activations (about 50 MB a layer for the x2 network at 2**18). The strips'
#: results do not depend on it.
GUIDED_STRIP_PIXELS = 1 << 18


class GuidedNetwork:
    """A shipped guided network as the kernel sees it: ``(inputs, y + 2 layers, x + 2 layers)``
    float32 planes to the ``(bands, y, x)`` residual, in row strips (valid convolutions: each
    strip's rows are exactly the whole plane's), one session per process."""

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        self.layers = record.layers

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        session = self.record.session()
        m = self.layers
        _cin, ny, nx = planes.shape
        rows, cols = ny - 2 * m, nx - 2 * m
        outputs = int(self.record.record["architecture"]["outputs"])
        out = np.empty((outputs, rows, cols), dtype=np.float32)
        step = max(1, GUIDED_STRIP_PIXELS // max(cols, 1))
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            strip = np.ascontiguousarray(planes[None, :, r0 : r1 + 2 * m])
            (result,) = session.run(None, {"x": strip})
            out[:, r0:r1] = result[0]
        return out


def evaluated_on_luma(method: Method) -> bool:
    """Whether the evaluation protocol runs ``method`` on the Y channel of RGB images.

    The shipped networks take one band at a time and learnt natural images as their BT.601 Y
    channel, so their published figures (and ours) reconstruct Y; interpolation methods are
    evaluated on the RGB bands, as the published bicubic figures are.
    """
    return isinstance(method, LearnedMethod)
