"""The learned methods: shipped files, the network against independent references, value and nodata
rules, the seamless contract through dask, per-process sessions and bad model files."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import dasksr
from dasksr.data import data_path
from dasksr.errors import InvalidScaleError, ModelError
from dasksr.kernels import cnn, get_method
from dasksr.kernels.registry import ProcessResource

WEIGHTS = Path(cnn.__file__).resolve().parent.parent / "weights"
RECORDS = [r for models in cnn.load_records().values() for r in models.values()]
IDS = [f"{r.name}_x{r.scale}" for r in RECORDS]
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


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_onnx_equals_pytorch(record):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(TRAINING))
    try:
        from model import CompactSR
    finally:
        sys.path.remove(str(TRAINING))
    arch = record.record["architecture"]
    model = CompactSR(record.scale, arch["channels"], arch["layers"], padding=0)
    weights = _onnx_weights(record.path)
    convs = [w for w in weights if w.ndim == 4 and w.shape[-1] == 3]
    slopes = _slopes(record.path)
    with torch.no_grad():
        for conv, w in zip(
            [m for m in model.body if isinstance(m, torch.nn.Conv2d)], convs, strict=True
        ):
            conv.weight.copy_(torch.from_numpy(np.array(w)))
        for act, a in zip(
            [m for m in model.body if isinstance(m, torch.nn.PReLU)], slopes, strict=True
        ):
            act.weight.copy_(torch.from_numpy(np.array(a)))
        image = torch.rand(1, 1, 2 * record.layers + 11, 2 * record.layers + 6)
        expected = model(image)[0, 0].numpy()
    ours = cnn.run_network(record.session(), image[0].numpy(), record.layers, record.scale)[0]
    np.testing.assert_allclose(ours, expected, atol=1e-5)


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
    record = cnn.load_records()["cnn"][2]
    record.session()
    method = get_method("cnn")
    assert len(pickle.dumps(method.block)) < 10_000
    resource = ProcessResource("k", dict)
    assert resource.get() is resource.get()
    clone = pickle.loads(pickle.dumps(resource))
    assert clone.key == "k" and clone.get() is resource.get()


def test_intra_op_threads_leave_room_for_dask():
    import os
    from concurrent.futures import ThreadPoolExecutor

    import dask

    cores = len(os.sched_getaffinity(0))
    assert cnn._intra_threads() == cores  # the main thread runs alone

    def in_a_task(workers):
        with dask.config.set(num_workers=workers):
            return cnn._intra_threads()

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
    method = cnn.learned_method("cnn", cnn.load_records(folder)["cnn"])
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

    record = cnn.load_records()["cnn"][2]
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
            xr.open_dataarray(out, engine="zarr")
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


def test_prelu_rewrite_matches_prelu():
    """The shipped graphs hold PReLU as two 1x1 depthwise convolutions (onnxruntime's PRelu kernel
    took half the network's time): the rewrite gives PRelu's bits where ``y >= 0`` and ``a y`` to
    three float32 roundings elsewhere, for any slope."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(TRAINING))
    try:
        from graph import prelu_as_depthwise
    finally:
        sys.path.remove(str(TRAINING))
    rng = np.random.default_rng(3)
    c = 16
    slope = np.concatenate([rng.uniform(-0.5, 2.5, c - 2), [0.0, 1.0]]).astype(np.float32)
    weight = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"]),
            helper.make_node("PRelu", ["y", "a"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, c, None, None])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(slope.reshape(c, 1, 1), "a"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = onnx.load_from_string(model.SerializeToString())
    assert prelu_as_depthwise(rewritten) == 1
    assert not [n for n in rewritten.graph.node if n.op_type == "PRelu"]
    onnx.checker.check_model(rewritten)
    x = (rng.standard_normal((1, 1, 67, 45)) * 1e3).astype(np.float32)
    outputs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]
        for m in (model, rewritten)
    ]
    reference, ours = outputs
    y = ort.InferenceSession(
        helper.make_model(
            helper.make_graph(
                graph.node[:1],
                "c",
                graph.input,
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, None, None])],
                graph.initializer,
            ),
            opset_imports=[helper.make_opsetid("", 17)],
        ).SerializeToString(),
        providers=["CPUExecutionProvider"],
    ).run(None, {"x": x})[0]
    positive = y >= 0
    np.testing.assert_array_equal(ours[positive], reference[positive])
    # Three roundings of at most 2**-24 of |y| (1 - a, its product with -y, the sum) for |a| <= 2.5.
    assert np.all(np.abs(ours - reference) <= 4e-7 * np.abs(y))
    for record in RECORDS:  # every shipped graph is rewritten
        assert not [n for n in onnx.load(record.path).graph.node if n.op_type == "PRelu"]


def test_whole_image_strips_on_threads_give_the_same_bits():
    """A call that may use every core (the main thread) runs its row strips at once on one-thread
    calls; the result is that of one strip after the other."""
    record = cnn.load_records()["cnn"][2]
    n = record.layers
    planes = (np.random.default_rng(5).random((2, 900 + 2 * n, 700 + 2 * n)) * 4000).astype(
        np.float32
    )
    assert len(cnn._strips(2, 900, 700)) > 2
    one_by_one = cnn.run_network(record.session(1), planes, n, 2)
    np.testing.assert_array_equal(record.run(planes), one_by_one)


@pytest.mark.parametrize("context", [0, 3])
def test_training_patches_carry_their_context(context):
    """`train.py --valid`: each LR patch has ``context`` real pixels around the part the HR patch
    covers, through every flip and rotation, and valid convolutions give exactly the HR patch's size."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(TRAINING))
    try:
        from data import Pair
        from model import CompactSR
        from train import sample
    finally:
        sys.path.remove(str(TRAINING))
    scale, patch = 2, 5
    lr = np.arange(30 * 24, dtype=np.float32).reshape(30, 24)
    hr = np.repeat(np.repeat(lr, scale, 0), scale, 1)  # each LR pixel's value on its fine pixels
    pairs = [Pair(hr, lr, hr + 0.5)]
    x, bic, y = sample(pairs, np.ones(1), 64, patch, scale, np.random.default_rng(0), context)
    assert x.shape == (64, 1, patch + 2 * context, patch + 2 * context)
    assert y.shape == bic.shape == (64, 1, patch * scale, patch * scale)
    c = context
    inner = x[:, :, c : c + patch, c : c + patch]
    fine = inner.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    assert torch.equal(fine, y) and torch.equal(y + 0.5, bic)
    # An image whose every patch touches fill can never give one: an error, not an endless loop.
    masked = [Pair(hr, lr, hr + 0.5, np.zeros(lr.shape, bool))]
    with pytest.raises(SystemExit, match="free of fill"):
        sample(masked, np.ones(1), 1, patch, scale, np.random.default_rng(0), context)
    # Every patch lies inside the image with its context (the rim is never padding).
    assert set(np.unique(x.numpy())) <= set(lr.ravel().tolist())
    if c:
        model = CompactSR(scale, channels=4, layers=c, padding=0)
        assert model.residual(x).shape == y.shape


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("extra", [1, 2, 3])
def test_deepening_keeps_the_function(scale, extra):
    # Net2net deepening (train.py --resume with more --layers): the deeper network's output on one
    # more pixel of context per new layer is the shallower one's, and the new layers are trainable.
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(TRAINING))
    try:
        from model import CompactSR, deepen
    finally:
        sys.path.remove(str(TRAINING))
    torch.manual_seed(scale + extra)
    shallow = CompactSR(scale, channels=6, layers=5, padding=0)
    with torch.no_grad():
        for p in shallow.parameters():
            p.add_(0.1 * torch.randn_like(p))  # PReLU slopes away from their 0.25 start
    arrays = {f"w/{k}": v for k, v in shallow.state_arrays().items()}
    arrays["m/body.2.weight"] = np.full((6, 6, 3, 3), 7, np.float32)  # an optimiser moment
    deeper_arrays = deepen(arrays, 5, 5 + extra, prefix="w/")
    moments = [k for k in deeper_arrays if k.startswith("m/")]
    assert len(moments) == 1
    np.testing.assert_array_equal(deeper_arrays[moments[0]], arrays["m/body.2.weight"])
    # The moment moved with its layer (the second convolution), which keeps its weights.
    np.testing.assert_array_equal(
        deeper_arrays[moments[0].replace("m/", "w/")], arrays["w/body.2.weight"]
    )
    deep = CompactSR(scale, channels=6, layers=5 + extra, padding=0)
    deep.load_arrays({k[2:]: v for k, v in deeper_arrays.items() if k.startswith("w/")})
    assert len(deeper_arrays) == len(arrays) + 2 * extra
    x = torch.rand(2, 1, 2 * (5 + extra) + 7, 2 * (5 + extra) + 4)
    with torch.no_grad():
        e = extra
        assert torch.allclose(deep(x), shallow(x[..., e:-e, e:-e]), rtol=0, atol=1e-6)
    deep(x).square().mean().backward()
    grads = [p.grad for p in deep.parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    with pytest.raises(ValueError, match="cannot deepen"):
        deepen(arrays, 5, 4)


def test_scene_weights_share_the_scene_patches():
    """`train.py --scene-weights`: each named scene gets its weight's share of the scenes' patches,
    split evenly among its bands; a name matching no scene or several, or a scene left out, fails."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(TRAINING))
    try:
        from train import scene_shares, scene_weights
    finally:
        sys.path.remove(str(TRAINING))
    names = [f"sentinel2_x/B0{b}.tif:1" for b in (2, 3, 4, 8)]
    names += ["landsat8_y/B8.TIF:1"] + [f"aerial_z/a.tif:{b}" for b in (1, 2, 3)]
    weights = scene_weights("sentinel2=1, landsat8=2,aerial=1")
    assert weights == {"sentinel2": 1.0, "landsat8": 2.0, "aerial": 1.0}
    shares = scene_shares(names, weights)
    np.testing.assert_allclose(shares, [1 / 16] * 4 + [1 / 2] + [1 / 12] * 3)
    for bad in ("sentinel2", "landsat8=x", "=1", "aerial=-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=WEIGHT"):
            scene_weights(bad)
    with pytest.raises(SystemExit, match="matches 3 scenes"):
        scene_shares(names, {"_": 1.0})
    with pytest.raises(SystemExit, match="no weight for aerial_z"):
        scene_shares(names, {"sentinel2": 1.0, "landsat8": 1.0})


def test_draw_weights_give_the_scenes_their_share(capsys):
    """`train.py --scene-share/--scene-variants`: the scenes' pairs (first, ``variants`` per band)
    take the share, each band's variants alike; every pixel alike without a share."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(TRAINING))
    try:
        from train import draw_weights, main
    finally:
        sys.path.remove(str(TRAINING))
    # Two scene bands (areas 100 and 300) with 4 variants each, then three other pairs.
    areas = np.array([100.0] * 4 + [300.0] * 4 + [50.0, 50.0, 100.0])
    plain = draw_weights(areas, 2, 4, 0.0)
    np.testing.assert_allclose(plain, areas / areas.sum())
    by_area = draw_weights(areas, 2, 4, 0.6)
    np.testing.assert_allclose(by_area[:8], [0.6 * 0.25 / 4] * 4 + [0.6 * 0.75 / 4] * 4)
    np.testing.assert_allclose(by_area[8:], [0.1, 0.1, 0.2])
    even = draw_weights(areas, 2, 4, 0.6, [0.5, 0.5])
    np.testing.assert_allclose(even[:8], [0.6 * 0.5 / 4] * 8)
    only = draw_weights(areas, 2, 4, 1.0)
    assert only[8:].sum() == 0 and only.sum() == pytest.approx(1.0)
    for model, bad, message in (
        ("cnn-sensor", ["--scene-variants", "0"], "must be at least 1"),
        ("cnn-sensor", ["--variants", "0"], "must be at least 1"),
        ("cnn", ["--scene-variants", "8"], "are for --model cnn-sensor"),
        ("cnn", ["--more-scenes"], "are for --model cnn-sensor"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--model", model, "--scale", "2", "--steps", "1", "--out", "x", *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.data
def test_more_scenes_keep_the_split_and_mask_the_fill(load_script):
    """`train.py --more-scenes`: the Landsat 8 multispectral bands and the Landsat 7 RGB scene,
    top 60 % only like every scene; Landsat 7's declared zero fill is masked out of the patches."""
    data = load_script("training/data.py")
    if data_path("rasters", "landsat7_rgb_byte", "RGB.byte.tif") is None:
        pytest.skip("shared rasters are not on this machine (set DASKSR_DATA)")
    bands = dict(data.sensor_bands(more=True))
    assert len(bands) == len(dict(data.sensor_bands())) + 6
    landsat7 = [raw for name, raw in bands.items() if name.startswith("landsat7_rgb_byte/")]
    assert len(landsat7) == 3 and all(raw.shape == (int(718 * 0.6), 791) for raw in landsat7)
    pairs = data.sensor_pairs([("landsat7", landsat7[0])], 4, 1, np.random.default_rng(0))
    valid = pairs[0].valid
    assert valid is not None and 0.1 < 1 - valid.mean() < 0.6
    held_out = dict(data.sensor_bands(held_out_of="landsat7", more=True))
    assert {n.split(":")[0] for n in held_out if not n.endswith(".jpg")} == {
        "landsat7_rgb_byte/RGB.byte.tif"
    }
    assert all(raw.shape[0] == 718 - int(718 * 0.6) for n, raw in held_out.items() if ":" in n)
