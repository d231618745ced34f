"""Every shipped network is its committed checkpoint: ONNX file, record and ``training/checkpoints``.

Without torch (CI does not install it): the checkpoint's arrays are read with NumPy, the ONNX
file's with ``onnx``. Each weight of the file must be the checkpoint's, after the export's own
rewrites (``training/graph.py``: a PReLU of slopes ``a`` becomes 1x1 depthwise convolutions of
weights ``-1`` and ``1 - a``; the bicubic skip of ``training/model.py``); the network rebuilt in
NumPy from the checkpoint alone must give onnxruntime's output on a random input; and the JSON
record must state the checkpoint's runs, steps and training data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest

from dasksr.kernels.interp import phase_weights

onnx = pytest.importorskip("onnx")  # the test extra has it; a bare install skips
from onnx import numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "dasksr" / "weights"
CHECKPOINTS = ROOT / "training" / "checkpoints"
SHIPPED = sorted(WEIGHTS.glob("*.onnx"))


def checkpoint_of(onnx_file: Path) -> Path:
    """``cnn_x2.onnx`` -> ``training/checkpoints/cnn_x2-best.npz``: what ``export.py`` exported."""
    return CHECKPOINTS / f"{onnx_file.stem}-best.npz"


def read_checkpoint(path: Path) -> tuple[list[np.ndarray], dict]:
    """The network's tensors in layer order (``body.0``, ``body.1``, ...) and the metadata."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k[2:]: f[k] for k in f.files if k.startswith("w/")}
        raw = f["meta"]
    # train.py stores the metadata as UTF-8 bytes, guided.py as a string.
    meta = json.loads(raw.tobytes().decode() if raw.dtype == np.uint8 else str(raw))
    body = [arrays[f"body.{i}.weight"] for i in range(len(arrays))]
    return body, meta


def _bicubic_skip(scale: int) -> np.ndarray:
    """``training/model.py``'s ``bicubic_filters``, written out here (that module needs torch)."""
    w = phase_weights("bicubic", scale)
    return np.einsum("py,qx->pqyx", w, w).reshape(scale * scale, 1, 5, 5).astype(np.float32)


def _conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid 2-D convolution (cross-correlation, as ONNX's Conv) of ``(c, h, w)`` planes."""
    k = w.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return np.einsum("chwyx,ocyx->ohw", windows, w.astype(np.float64))


def rebuild(body: list[np.ndarray], x: np.ndarray, scale: int | None) -> np.ndarray:
    """The network from its checkpoint tensors in NumPy (float64): valid 3x3 convolutions with
    PReLU between them; with ``scale``, ``training/model.py``'s bicubic skip and depth-to-space."""
    out = x.astype(np.float64)
    for i in range(0, len(body), 2):
        out = _conv(out, body[i])
        if i + 1 < len(body):
            a = body[i + 1].astype(np.float64)[:, None, None]
            out = np.where(out > 0, out, a * out)
    if scale is None:
        return out
    c = len(body) // 2 + 1 - 2  # the skip's 5x5 filters read the input trimmed to fit
    inner = x[:, c : x.shape[1] - c, c : x.shape[2] - c].astype(np.float64)
    out = out + _conv(inner, _bicubic_skip(scale))
    s, h, w = scale, out.shape[1], out.shape[2]
    return out.reshape(s, s, h, w).transpose(2, 0, 3, 1).reshape(h * s, w * s)


def shipped_weights(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The file's network tensors in graph order as the checkpoint holds them: 3x3 convolutions and
    PReLU slopes (read back from the ``1 - a`` depthwise weights; their ``-1`` partner checked),
    and any other initialiser (the bicubic skip)."""
    model = onnx.load(str(path))
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    used = set()
    body, other = [], []
    for node in model.graph.node:
        weights = [n for n in node.input[1:] if n in tensors]
        used.update(weights)
        if node.op_type == "PRelu":
            body.append(tensors[weights[0]].reshape(-1))
        elif node.op_type == "Conv" and weights:
            w = tensors[weights[0]]
            # 3x3 convolutions; graph.prelu_as_depthwise's 1 - a.
            if w.shape[-1] == 3 or weights[0].endswith("_1ma"):
                body.append(w)
            elif weights[0].endswith("_m1"):
                np.testing.assert_array_equal(w, -1, err_msg=f"{path.name}: {weights[0]}")
            else:
                other.append(w)
    assert used == set(tensors), f"{path.name}: unused initialisers {set(tensors) - used}"
    return body, other


def tie(onnx_file: Path, checkpoint: Path) -> None:
    """Fail unless ``onnx_file`` holds exactly ``checkpoint``'s network."""
    body, meta = read_checkpoint(checkpoint)
    shipped, other = shipped_weights(onnx_file)
    assert len(shipped) == len(body), f"{onnx_file.name}: {len(shipped)} tensors, not {len(body)}"
    guided = "ratio" in meta
    for i, (ours, theirs) in enumerate(zip(shipped, body, strict=True)):
        if i % 2 and not guided:  # stored as 1 - a (graph.prelu_as_depthwise)
            theirs = (np.float32(1) - theirs).reshape(-1, 1, 1, 1)
        assert ours.shape == theirs.shape, f"{onnx_file.name}: tensor {i} {ours.shape}"
        assert np.array_equal(ours, theirs), f"{onnx_file.name}: tensor {i} differs"
    scale = None if guided else int(meta["scale"])
    if not guided:
        assert len(other) == 1, f"{onnx_file.name}: {len(other)} extra tensors"
        np.testing.assert_array_equal(other[0], _bicubic_skip(scale))
    rng = np.random.default_rng(7)
    n = len(body) // 2 + 1  # valid 3x3 layers
    channels = body[0].shape[1]
    x = rng.uniform(0, 2, (channels, 2 * n + 9, 2 * n + 6)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (got,) = session.run(None, {name: x[None]})
    expected = rebuild(body, x, scale)
    np.testing.assert_allclose(got[0].reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def test_every_shipped_network_has_a_checkpoint():
    assert len(SHIPPED) >= 7  # cnn x2 x3 x4, cnn-sensor x2 x4, cnn-s2 x2 x6
    missing = [p.name for p in SHIPPED if not checkpoint_of(p).is_file()]
    assert not missing, f"no committed checkpoint for {missing}"


@pytest.mark.parametrize("onnx_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_onnx_file_is_its_checkpoint(onnx_file):
    tie(onnx_file, checkpoint_of(onnx_file))


@pytest.mark.parametrize(
    ("onnx_file", "checkpoint"),
    [
        ("cnn_x2", "cnn-sensor_x2-best.npz"),
        ("cnn-sensor_x4", "cnn_x4-best.npz"),
        ("cnn-s2_x6", "one weight of its own, one ulp off"),
    ],
)
def test_a_swapped_file_is_found(tmp_path, onnx_file, checkpoint):
    """A file of the same architecture from another checkpoint fails the tie, and so does a
    checkpoint that differs from the exported one in a single weight (only the best checkpoints
    are committed; a run's other steps are not)."""
    swapped = tmp_path / f"{onnx_file}.onnx"
    shutil.copy(WEIGHTS / f"{onnx_file}.onnx", swapped)
    source = CHECKPOINTS / checkpoint
    if not checkpoint.endswith(".npz"):
        own = checkpoint_of(WEIGHTS / f"{onnx_file}.onnx")
        with np.load(own, allow_pickle=False) as stored:
            arrays = {k: stored[k].copy() for k in stored.files}
        name = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.size > 1)
        flat = arrays[name].reshape(-1)
        flat[0] = np.nextafter(flat[0], np.inf, dtype=flat.dtype)
        source = tmp_path / own.name
        np.savez(source, **arrays)
    with pytest.raises(AssertionError, match="differs"):
        tie(swapped, source)


@pytest.fixture(scope="module")
def training_data(load_script) -> ModuleType:
    return load_script("training/data.py")


@pytest.mark.parametrize("onnx_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_record_is_its_checkpoint(onnx_file, training_data):
    """The JSON record states the checkpoint's steps, runs and training data, as export.py
    writes them (``cnn-sensor`` included BSDS500-test200, which an earlier record left out)."""
    record = json.loads(onnx_file.with_suffix(".json").read_text())
    body, meta = read_checkpoint(checkpoint_of(onnx_file))
    assert record["architecture"]["layers"] == meta["layers"] == len(body) // 2 + 1
    assert record["architecture"]["parameters"] == sum(t.size for t in body)
    if record.get("kind") == "guided":
        assert record["steps"] == meta["steps"]
        assert record["best_validation"] == min(meta["history"], key=lambda e: e["valid_mean"])
        return
    init = meta.get("init") or {"steps": 0}
    assert record["steps"] == meta["steps"] + init["steps"]
    assert record["runs"] == meta["runs"]
    assert record["best_validation_psnr"] == meta["best_val_psnr"]
    assert record["training_data"] == training_data.training_data(meta)
    if record["name"] == "cnn-sensor":
        assert "BSDS500-test200" in record["training_data"]
