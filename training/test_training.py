"""Tests of the training scripts' own code: the network, patch sampling, deepening, scene shares,
the ONNX rewrite and the training data.

Run as the scripts run, from this folder, so that their siblings (``model``, ``train``, ``data``,
``graph``) import by name: ``cd training && python -m pytest test_training.py``.
``tests/test_cnn.py::test_training_scripts`` runs it so, in CI too. Tests that need torch (the
``train`` extra) skip without it, as in CI, which does not install it. They check the training
code itself (patch sampling, deepening, the argument checks) and that PyTorch computes what the
shipped files do. That a shipped file is its committed checkpoint is checked without torch, so in
CI, by ``tests/test_provenance.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from dasksr import models
from dasksr.data import data_path

RECORDS = [
    r
    for family in models.load_records().values()
    for r in family.values()
    if r.record.get("kind") != "guided"  # guided.py's networks have their own test below
]
IDS = [f"{r.name}_x{r.scale}" for r in RECORDS]


def _convolutions_and_slopes(path: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A shipped graph's 3x3 convolution weights and PReLU slopes, layer by layer (stored as the
    ``1 - a`` weights of `graph.prelu_as_depthwise`'s ``*_1ma`` convolutions)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    convs = [t for t in tensors.values() if t.ndim == 4 and t.shape[-1] == 3]
    return convs, [1 - t.reshape(-1) for name, t in tensors.items() if name.endswith("_1ma")]


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_onnx_equals_pytorch(record):
    torch = pytest.importorskip("torch")
    from model import CompactSR

    arch = record.record["architecture"]
    model = CompactSR(record.scale, arch["channels"], arch["layers"], padding=0)
    convs, slopes = _convolutions_and_slopes(record.path)
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
    ours = record.run(image[0].numpy())[0]
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_prelu_rewrite_matches_prelu():
    """The shipped graphs hold PReLU as two 1x1 depthwise convolutions (onnxruntime's PRelu kernel
    took half the network's time): the rewrite gives PRelu's bits where ``y >= 0`` and ``a y`` to
    three float32 roundings elsewhere, for any slope."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from graph import prelu_as_depthwise
    from onnx import TensorProto, helper, numpy_helper

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


@pytest.mark.parametrize("context", [0, 3])
def test_training_patches_carry_their_context(context):
    """`train.py --valid`: each LR patch has ``context`` real pixels around the part the HR patch
    covers, through every flip and rotation, and valid convolutions give exactly the HR patch's size."""
    torch = pytest.importorskip("torch")
    from data import Pair
    from model import CompactSR
    from train import sample

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
    from model import CompactSR, deepen

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
    from data import scene_shares, scene_weights

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


def test_draw_weights_give_the_scenes_their_share():
    """`train.py --scene-share/--scene-variants`: the scenes' pairs (first, ``variants`` per band)
    take the share, each band's variants alike; every pixel alike without a share."""
    from data import draw_weights

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


def test_sensor_options_are_checked(capsys):
    pytest.importorskip("torch")
    from train import main

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
def test_more_scenes_keep_the_split_and_mask_the_fill():
    """`train.py --more-scenes`: the Landsat 8 multispectral bands and the Landsat 7 RGB scene,
    top 60 % only like every scene; Landsat 7's declared zero fill is masked out of the patches."""
    import data

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


@pytest.mark.parametrize("ratio", [2, 6])
def test_guided_onnx_equals_pytorch(ratio):
    """The shipped cnn-s2 file computes what its checkpoint does in PyTorch."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort
    from guided import CHECKPOINTS, load

    model, meta = load(CHECKPOINTS / f"cnn-s2_x{ratio}-best.npz")
    record = models.guided_records()[ratio]
    x = np.random.default_rng(ratio).uniform(0, 3, (1, meta["cin"], 40, 37)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(record.path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
