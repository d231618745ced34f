"""The learned methods: shipped files, the network against independent references, value and nodata
rules, the seamless contract through dask, per-process sessions and bad model files."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import dasksr
from dasksr import models
from dasksr.data import data_path
from dasksr.errors import InvalidScaleError, ModelError
from dasksr.kernels import cnn
from dasksr.methods import get_method
from dasksr.models import ProcessResource

WEIGHTS = Path(models.__file__).resolve().parent / "weights"
RECORDS = [
    r
    for family in models.load_records().values()
    for r in family.values()
    if r.record.get("kind") != "guided"  # sharpen's networks: tests/test_sharpen.py
]
IDS = [f"{r.name}_x{r.scale}" for r in RECORDS]
#: The training scripts' folder: `test_training_scripts` runs their tests there.
TRAINING = Path(__file__).resolve().parent.parent / "training"


def test_models_are_shipped():
    names = {r.name for r in RECORDS}
    assert {"cnn", "cnn-sensor"} <= names
    assert {r.scale for r in RECORDS if r.name == "cnn"} == {2, 3, 4}
    assert {r.scale for r in RECORDS if r.name == "cnn-sensor"} == {2, 4}


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_record_matches_file(record):
    meta = record.record
    record.check()  # the SHA-256 of the file is the record's
    assert meta["file"] == f"{record.name}_x{record.scale}.onnx"
    assert meta["macs_per_lr_pixel"] <= 100_000
    for key in (
        "architecture",
        "degradation",
        "training_data",
        "seed",
        "steps",
        "wall_time_s",
        "date",
        "evaluation",
    ):
        assert meta[key] not in (None, ""), key
    arch = meta["architecture"]
    c, n, s = arch["channels"], arch["layers"], record.scale
    assert meta["macs_per_lr_pixel"] == 9 * c + 9 * c * c * (n - 2) + 9 * c * s * s + 25 * s * s
    assert get_method(record.name).halo(s) == 2 * n


def _onnx_weights(path: str) -> list[np.ndarray]:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(path)
    return [numpy_helper.to_array(t) for t in model.graph.initializer]


def _slopes(path: str) -> list[np.ndarray]:
    """The PReLU slopes of the graph, layer by layer. Exported graphs hold ``1 - a`` as the
    weights of a 1x1 depthwise convolution (``training/graph.py: prelu_as_depthwise``) named
    ``*_1ma``; a graph with ``PRelu`` nodes holds them as such."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(path)
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if any(n.op_type == "PRelu" for n in model.graph.node):
        return [tensors[n.input[1]].reshape(-1) for n in model.graph.node if n.op_type == "PRelu"]
    return [1 - t.reshape(-1) for name, t in tensors.items() if name.endswith("_1ma")]


def _reference_network(path: str, image: np.ndarray, scale: int) -> np.ndarray:
    """The network written out in NumPy: valid 3x3 convolutions, PReLU, depth-to-space, plus
    dasksr's bicubic (computed by the interpolation method, not by the graph's skip filters)."""
    tensors = _onnx_weights(path)
    convs = [t for t in tensors if t.ndim == 4 and t.shape[-1] == 3]
    slopes = _slopes(path)
    assert len(slopes) == len(convs) - 1
    x = image[None].astype(np.float64)
    for i, w in enumerate(convs):
        out = np.zeros((w.shape[0], x.shape[1] - 2, x.shape[2] - 2))
        for dy in range(3):
            for dx in range(3):
                patch = x[:, dy : dy + out.shape[1], dx : dx + out.shape[2]]
                out += np.einsum("oc,cyx->oyx", w[:, :, dy, dx], patch)
        if i < len(convs) - 1:
            a = slopes[i][:, None, None]
            out = np.where(out > 0, out, a * out)
        x = out
    layers = len(convs)
    r = x.reshape(scale, scale, x.shape[1], x.shape[2]).transpose(2, 0, 3, 1)
    residual = r.reshape(x.shape[1] * scale, x.shape[2] * scale)
    inner = image[
        layers - 2 : image.shape[0] - layers + 2, layers - 2 : image.shape[1] - layers + 2
    ]
    bicubic = get_method("bicubic").block(inner.astype(np.float64), scale)
    return residual + bicubic


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_onnx_equals_numpy_reference(record):
    rng = np.random.default_rng(1)
    n = record.layers
    image = rng.random((2 * n + 9, 2 * n + 7)).astype(np.float32)
    ours = cnn.run_network(record.session(), image[None], n, record.scale)[0]
    ref = _reference_network(record.path, image, record.scale)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def _scene(shape=(2, 61, 47), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[-2], 0 : shape[-1]]
    base = 1500 + 800 * np.sin(x / 4.0) * np.cos(y / 6.0) + 600 * ((x + 2 * y) % 17 > 8)
    data = base + rng.normal(0, 30, shape)
    return np.clip(data, 1, 60000).astype(dtype)


@pytest.mark.parametrize("name", ["cnn", "cnn-sensor"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_chunked_equals_whole(name, dtype):
    data = _scene(dtype=np.float64)
    if np.dtype(dtype) == np.uint8:
        data = data / 20
    data = data.astype(dtype)
    nodata = None if np.dtype(dtype).kind == "f" else 0
    data[:, 20:33, 10:18] = 0 if nodata is not None else np.nan
    whole = dasksr.upscale(data, scale=2, method=name, nodata=nodata)
    chunked = dasksr.upscale(
        da.from_array(data, chunks=(1, 25, 21)), scale=2, method=name, nodata=nodata
    )
    chunked = chunked.compute()
    assert whole.dtype == chunked.dtype == dtype
    if np.dtype(dtype).kind == "f":
        span = float(np.nanmax(data) - np.nanmin(data))
        np.testing.assert_allclose(chunked, whole, atol=1e-5 * span, equal_nan=True)
    else:
        np.testing.assert_array_equal(chunked, whole)


def test_scale_equivariant_value_rule():
    """No hidden normalisation: the same scene in other units gives the same result in them."""
    data = _scene(dtype=np.float32)
    once = dasksr.upscale(data, scale=2, method="cnn")
    scaled = dasksr.upscale(data * np.float32(0.0001), scale=2, method="cnn")
    np.testing.assert_allclose(scaled, once * 0.0001, rtol=1e-4, atol=1e-6)


def test_beats_bicubic_on_a_sharp_scene():
    from dasksr.degrade import imresize

    truth = (_scene((96, 96), dtype=np.float64) / 20).astype(np.uint8)
    small = imresize(truth, 1 / 2)
    err = {
        m: np.abs(dasksr.upscale(small, scale=2, method=m).astype(float) - truth)[4:-4, 4:-4].mean()
        for m in ("bicubic", "cnn")
    }
    assert err["cnn"] < err["bicubic"]


def test_nodata_never_enters_the_network():
    data = _scene()
    data[:, 25:40, 15:30] = 0
    a = dasksr.upscale(data, scale=2, method="cnn", nodata=0)
    other = data.copy()
    other[:, 25:40, 15:30] = 65535  # another fill value must not change any valid pixel
    b = dasksr.upscale(other, scale=2, method="cnn", nodata=65535)
    hole = np.zeros(data.shape, bool)
    hole[:, 25:40, 15:30] = True
    fine_hole = hole.repeat(2, axis=1).repeat(2, axis=2)
    assert (a[fine_hole] == 0).all() and (b[fine_hole] == 65535).all()
    np.testing.assert_array_equal(a[~fine_hole], b[~fine_hole])
    assert (a[~fine_hole] > 0).all()


@pytest.mark.parametrize("scale", [2, 4])
def test_bounded_makes_no_new_extrema_and_keeps_the_rest(scale: int) -> None:
    """``cnn-sensor-bounded``: ``cnn-sensor`` clipped to the 4 x 4 input neighbourhood of every
    output pixel (`neighbourhood_bounds`), inside the image as at its edges, nodata kept."""
    from dasksr.artefacts import neighbourhood_bounds, new_extrema

    data = _scene().astype(np.float32)
    free = dasksr.upscale(data, scale=scale, method="cnn-sensor")
    bounded = dasksr.upscale(data, scale=scale, method="cnn-sensor-bounded")
    low, high = neighbourhood_bounds(data, scale)
    inner = np.zeros(free.shape, bool)
    inner[..., 2 * scale : -2 * scale, 2 * scale : -2 * scale] = True
    assert new_extrema(free, data, scale, noise=1.0) > 0.005  # the network makes some
    assert new_extrema(bounded, data, scale, noise=1e-3, mask=inner) == 0.0
    np.testing.assert_array_equal(
        bounded[inner], np.clip(free, low, high).astype(np.float32)[inner]
    )
    holes = data.copy()
    holes[:, 20:30, 10:22] = 0
    fine = dasksr.upscale(holes, scale=scale, method="cnn-sensor-bounded", nodata=0)
    hole = np.zeros(holes.shape, bool)
    hole[:, 20:30, 10:22] = True
    fine_hole = hole.repeat(scale, axis=1).repeat(scale, axis=2)
    assert (fine[fine_hole] == 0).all() and (fine[~fine_hole] > 0).all()


def test_fill_reaches_only_its_steps():
    planes = np.zeros((1, 9, 9), np.float32)
    invalid = np.ones((1, 9, 9), bool)
    invalid[0, 4, 4] = False
    planes[0, 4, 4] = 7
    filled = cnn.fill_invalid(planes, invalid, 2)
    assert (filled[0, 2:7, 2:7] == 7).all()
    assert filled[0, 0].sum() == 0 and filled[0, :, 0].sum() == 0


def test_unsupported_scale_names_the_supported_ones():
    with pytest.raises(InvalidScaleError, match=r"'cnn-sensor': use an integer among 2, 4$"):
        dasksr.upscale(np.zeros((8, 8), np.uint8), scale=3, method="cnn-sensor")


def test_method_identity_carries_the_weights():
    token = get_method("cnn").token
    assert token.startswith("cnn/v1,weights=") and token != get_method("cnn-sensor").token


def test_tasks_do_not_carry_the_session():
    record = models.load_records()["cnn"][2]
    record.session()
    method = get_method("cnn")
    assert len(pickle.dumps(method.block)) < 10_000
    resource = ProcessResource("k", dict)
    assert resource.get() is resource.get()
    clone = pickle.loads(pickle.dumps(resource))
    assert clone.key == "k" and clone.get() is resource.get()


def test_kernel_takes_any_network():
    """The kernel is pure: a plain callable network gives the shipped session's bits, and the
    block function runs with a network that is no onnxruntime session at all."""
    record = models.load_records()["cnn"][2]
    n = record.layers
    session = record.session()
    planes = (np.random.default_rng(4).random((1, 40 + 2 * n, 33 + 2 * n)) * 300).astype(np.float32)

    def plain(strip):
        return session.run(None, {"lr": strip})[0]

    np.testing.assert_array_equal(
        cnn.run_network(plain, planes, n, 2), cnn.run_network(session, planes, n, 2)
    )

    class Repeat:
        layers = 2

        def __call__(self, planes):
            inner = planes[:, self.layers : -self.layers, self.layers : -self.layers]
            return inner.repeat(2, axis=1).repeat(2, axis=2)

    block = np.arange(1, 12 * 11 + 1, dtype=np.uint16).reshape(12, 11)
    out = cnn.LearnedBlock({2: Repeat()})(block, 2)
    assert out.dtype == np.uint16 and out.shape == (8, 6)
    np.testing.assert_array_equal(out, block[4:-4, 4:-4].repeat(2, 0).repeat(2, 1))


def test_luma_evaluation_is_the_learned_models():
    assert models.evaluated_on_luma(get_method("cnn"))
    assert models.evaluated_on_luma(get_method("cnn-sensor"))
    assert not models.evaluated_on_luma(get_method("bicubic"))


def test_intra_op_threads_leave_room_for_dask():
    import os
    from concurrent.futures import ThreadPoolExecutor

    import dask

    cores = len(os.sched_getaffinity(0))
    assert models._intra_threads() == cores  # the main thread runs alone

    def in_a_task(workers):
        with dask.config.set(num_workers=workers):
            return models._intra_threads()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_a_task, cores).result() == 1
        assert pool.submit(in_a_task, 1).result() == cores


def _copy_weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS, folder, ignore=shutil.ignore_patterns("*-x*", "cnn-sensor*"))
    return folder


@pytest.mark.parametrize("damage", ["missing", "corrupt", "replaced"])
def test_bad_model_file_is_one_line_naming_it(tmp_path, damage):
    folder = _copy_weights(tmp_path)
    onnx_file = folder / "cnn_x2.onnx"
    if damage == "missing":
        onnx_file.unlink()
    elif damage == "corrupt":
        onnx_file.write_bytes(b"not a model")
        record = json.loads((folder / "cnn_x2.json").read_text())
        import hashlib

        record["sha256"] = hashlib.sha256(b"not a model").hexdigest()
        (folder / "cnn_x2.json").write_text(json.dumps(record))
    else:
        content = bytearray(onnx_file.read_bytes())
        content[-10] ^= 0xFF
        onnx_file.write_bytes(bytes(content))
    method = models.learned_method("cnn", models.load_records(folder)["cnn"])
    with pytest.raises(ModelError) as info:
        method.check_scale(2)
        ProcessResource.clear()
        method.block(np.zeros((50, 50), np.float32), 2)
    message = str(info.value)
    assert str(onnx_file) in message and "\n" not in message


@pytest.mark.data
@pytest.mark.parametrize("record", [r for r in RECORDS if r.name == "cnn"], ids=lambda r: r.scale)
def test_recorded_set5_figure(record):
    folder = data_path("sr-benchmarks", "Set5", f"image_SRF_{record.scale}")
    if folder is None:
        pytest.skip("sr-benchmarks/Set5 not found (set DASKSR_DATA)")
    result = dasksr.evaluate_images(str(folder / "*_HR.png"), scale=record.scale, method="cnn")
    recorded = record.record["evaluation"]["Set5"]["psnr"]
    assert abs(result["mean_psnr"] - recorded) <= 0.01


def test_engine_bits_do_not_depend_on_block_size_or_threads():
    import onnxruntime as ort

    record = models.load_records()["cnn"][2]
    n = record.layers
    rng = np.random.default_rng(3)
    image = (rng.random((1, 90, 77)) * 60000).astype(np.float32)
    whole = cnn.run_network(record.session(), image, n, 2)
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(record.path, options, providers=["CPUExecutionProvider"])
        for _ in range(8):
            r0, c0 = int(rng.integers(0, 60)), int(rng.integers(0, 50))
            r1, c1 = int(rng.integers(r0 + 1, 71)), int(rng.integers(c0 + 1, 58))
            part = cnn.run_network(session, image[:, r0 : r1 + 2 * n, c0 : c1 + 2 * n], n, 2)
            np.testing.assert_array_equal(part, whole[:, 2 * r0 : 2 * r1, 2 * c0 : 2 * c1])


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_command_line_and_accessor_keep_the_raster_rules(tmp_path, make_geotiff, suffix):
    """`dasksr upscale --method cnn-sensor` writes the bicubic job's grid, CRS, nodata and bands."""
    import rioxarray
    import xarray as xr

    from dasksr.cli import main

    raster = make_geotiff(tmp_path / "in.tif", height=150, width=140, tile=64)
    outputs = {}
    for method in ("cnn-sensor", "bicubic"):
        out = tmp_path / f"{method}{suffix}"
        args = ["upscale", str(raster.path), str(out), "--scale", "2", "--method", method]
        assert main([*args, "--no-progress"]) == 0
        outputs[method] = (
            xr.open_dataarray(out, engine="zarr", mask_and_scale=False)
            if suffix == ".zarr"
            else rioxarray.open_rasterio(out)
        )
    ours, ref = outputs["cnn-sensor"], outputs["bicubic"]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == raster.data.dtype
    assert ours.rio.crs == ref.rio.crs and ours.rio.transform() == ref.rio.transform()
    assert ours.rio.nodata == ref.rio.nodata == raster.nodata
    np.testing.assert_array_equal(ours.values == raster.nodata, ref.values == raster.nodata)
    lazy = dasksr.open_raster(raster.path).sr.upscale(scale=2, method="cnn-sensor")
    np.testing.assert_array_equal(lazy.values, ours.values)


def test_whole_image_strips_on_threads_give_the_same_bits():
    """A call that may use every core (the main thread) runs its row strips at once on one-thread
    calls; the result is that of one strip after the other."""
    record = models.load_records()["cnn"][2]
    n = record.layers
    planes = (np.random.default_rng(5).random((2, 900 + 2 * n, 700 + 2 * n)) * 4000).astype(
        np.float32
    )
    assert len(cnn.strips(2, 900, 700)) > 2
    one_by_one = cnn.run_network(record.session(1), planes, n, 2)
    np.testing.assert_array_equal(record.run(planes), one_by_one)


def test_training_scripts():
    """The tests of the training scripts (training/test_training.py), run as those scripts run: by
    a Python started in training/, whose siblings (model, train, data, graph) import by name."""
    pytest.importorskip("onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_training.py"],
        cwd=TRAINING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
