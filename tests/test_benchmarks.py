"""Smoke test of benchmarks/speed.py at tiny sizes: the tables have their rows (no timings checked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def speed(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("benchmarks/speed.py")


def test_machine_lines(speed):
    lines = speed.machine_info()
    assert lines[0].startswith("- CPU: ")
    assert any("numpy" in line for line in lines)


def test_kernel_table(speed):
    section = speed.bench_kernel(size=64, runs=1)
    assert section.labels() == [
        "dasksr bicubic",
        "cv2 INTER_CUBIC",
        "Pillow BICUBIC",
        "GDAL read cubic",
        "scipy zoom order=3",
        "dasksr lanczos",
        "cv2 INTER_LANCZOS4",
        "Pillow LANCZOS",
    ]
    assert "| implementation | median s | output MPix/s |" in section.markdown()
    # Our kernels and Pillow's agree away from the borders: the rows compare the same work.
    agreement = dict(zip(section.labels(), (row[-1] for row in section.rows), strict=True))
    for name in ("dasksr bicubic", "dasksr lanczos"):
        diff = float(agreement[name].rsplit(" ", 1)[-1])
        assert diff < 1e-4
    assert section.values["kernel cv2 INTER_CUBIC x cv2"] == pytest.approx(1.0)


def test_blockwise_table(speed):
    section = speed.bench_blockwise(size=128, chunk=32, runs=1)
    labels = section.labels()
    assert labels[0] == "dasksr kernel, whole array"
    assert any(label.startswith("dasksr upscale, da.store") for label in labels)
    assert any(label.startswith("cv2 map_overlap, da.store") for label in labels)
    assert section.rows[0][3] == "1.00"
    assert "blockwise store x" in section.values


def test_cv2_map_overlap_is_seamless(speed):
    import cv2
    import dask.array as da
    import numpy as np

    image = speed.test_image(96)
    whole = cv2.resize(
        np.pad(image, 2, mode="symmetric"), (200, 200), interpolation=cv2.INTER_CUBIC
    )[4:-4, 4:-4]
    chunked = speed.cv2_map_overlap(da.from_array(image, chunks=40)).compute(scheduler="sync")
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_end_to_end_table(speed, tmp_path):
    jobs = ["dasksr-zarr", "dasksr-tif", "cv2-map-overlap"]
    section = speed.bench_end_to_end(tmp_path, size=128, runs=1, jobs=jobs)
    assert section.labels() == [speed.JOBS[key].label for key in jobs]
    for key in jobs:
        assert section.values[f"e2e {key} RSS GiB"] > 0
    assert (tmp_path / "scene_128.tif").exists()
    assert not list(tmp_path.glob("out_*"))  # outputs are removed after each run


def test_targets_table_marks_missing_numbers(speed):
    section = speed.targets({"kernel dasksr bicubic x cv2": 0.7, "blockwise store x": 2.0})
    met = {row[0]: row[-1] for row in section.rows}
    assert met["kernel bicubic vs cv2 INTER_CUBIC (throughput ratio)"] == "yes"
    assert met["blockwise da.store time / whole-array kernel time"] == "**no**"
    assert met["end to end Zarr throughput / gdalwarp"] == "-"


def test_parse_args(speed):
    args = speed.parse_args(["--quick", "--runs", "2", "--jobs", "dasksr-zarr,gdalwarp"])
    assert args.quick and args.runs == 2 and args.jobs == ["dasksr-zarr", "gdalwarp"]


def test_cnn_speed_script_runs(tmp_path: Path) -> None:
    """benchmarks/cnn_speed.py end to end on a tiny band (in a subprocess: it pins its cores)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cnn_speed.py"
    args = ["--threads", "1", "--size", "64", "--runs", "1", "--workdir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    row = [line for line in proc.stdout.splitlines() if line.startswith("| 1 |")]
    assert len(row) == 1 and len(row[0].split("|")) == 10


def test_sensor_linear_bound_recovers_a_linear_truth():
    """The oracle of ``sensor_eval.py --linear-bound`` fits the best linear filter on the truth:
    where the truth is a linear function of the input (bicubic of it, reach 2 <= radius), it is
    recovered to rounding, and on any truth it scores at least as well as bicubic."""
    import numpy as np

    import dasksr
    from dasksr import sensor as sensor_eval  # what benchmarks/sensor_eval.py runs

    rng = np.random.default_rng(0)
    small = rng.random((2, 24, 20)) * 1000
    truth = np.asarray(dasksr.upscale(small, scale=2, method="bicubic"))
    mask = np.ones(truth.shape, bool)
    bound = sensor_eval.linear_bound(truth, small, mask, 2)
    np.testing.assert_allclose(bound, truth, atol=1e-6)
    noisy_truth = truth + rng.normal(0, 50, truth.shape)
    mask[0, :6] = False  # pixels outside the mask are neither fitted nor scored
    bound = sensor_eval.linear_bound(noisy_truth, small, mask, 2)
    assert sensor_eval.scene_psnr(noisy_truth, bound, mask, 2) >= sensor_eval.scene_psnr(
        noisy_truth, truth, mask, 2
    )


def test_sensor_linear_filters_transfer_to_other_images():
    """``sensor_eval.py --linear-transfer`` fits on some images and applies to another: filters
    fitted on two images whose truth is linear in their input (x4 bicubic) give that linear
    function on a third, and on noisy examples the fit is their least-squares filter."""
    import numpy as np

    import dasksr
    from dasksr import sensor as sensor_eval  # what benchmarks/sensor_eval.py runs

    rng = np.random.default_rng(1)
    smalls = [rng.random((1, 16, 18)) * 100 for _ in range(3)]
    truths = [np.asarray(dasksr.upscale(s, scale=4, method="bicubic")) for s in smalls]
    masks = [np.ones(t.shape, bool) for t in truths]
    coef = sensor_eval.fit_linear(list(zip(truths[:2], smalls[:2], masks[:2], strict=True)), 4)
    assert coef.shape == (1, 4, 4, 121)
    np.testing.assert_allclose(sensor_eval.apply_linear(coef, smalls[2], 4), truths[2], atol=1e-6)
    # On noisy truths (some pixels masked out), the fit over both examples is least squares:
    # no other filter, the exact bicubic one included, has a smaller error on their valid pixels.
    noisy = [t + rng.normal(0, 5, t.shape) for t in truths[:2]]
    masks[1][0, :8] = False
    examples = list(zip(noisy, smalls[:2], masks[:2], strict=True))
    fitted = sensor_eval.fit_linear(examples, 4)

    def error(c):
        return sum(
            float(np.sum((sensor_eval.apply_linear(c, s, 4) - t)[m] ** 2)) for t, s, m in examples
        )

    assert error(fitted) <= error(coef) and error(fitted) <= error(fitted * 1.001)


def test_scenes_split_every_row_once():
    """`dasksr.scenes`: training and held-out rows cover a scene once, the split at 60 % (the row
    the training data and the sensor evaluation always used), the scenes in their table order."""
    from dasksr import scenes

    for height in (232, 259, 519, 718, 1098):
        train, test = scenes.train_rows(height), scenes.test_rows(height)
        assert train.stop == test.start == int(height * 0.6) and test.stop == height
    files = scenes.scene_files(more=True)
    assert files[:4] == list(scenes.SENTINEL2) and files[-1] == scenes.LANDSAT7_RGB
    assert len(files) == len(set(files)) == 10


@pytest.mark.data
def test_the_native_scenes_of_the_sensor_evaluation_load_apart_from_training() -> None:
    """``sensor_eval.py`` scores the native scenes' held-out rows; the shipped sensor models'
    records name the decimated scenes they read, none of the native ones."""
    import json

    from dasksr.scenes import load_scene, native_scenes, split_row

    for name, files in native_scenes().items():
        test = load_scene(name)
        train = load_scene(name, "train")
        assert test.shape[0] == len(files) and train.shape[0] == len(files)
        height = test.shape[1] + train.shape[1]
        assert train.shape[1] == split_row(height)
    weights = Path(__file__).resolve().parents[1] / "dasksr" / "weights"
    for scale in (2, 4):
        record = json.loads((weights / f"cnn-sensor_x{scale}.json").read_text(encoding="utf-8"))
        assert "native" not in record["training_data"] and "18SVG" not in record["training_data"]
