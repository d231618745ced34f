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
@pytest.mark.data
def test_end_to_end_table(speed, tmp_path):
    jobs = ["dasksr-zarr", "dasksr-tif", "cv2-map-overlap"]
    section = speed.bench_end_to_end(tmp_path, size=128, runs=1, jobs=jobs, warmup=False)
    assert section.title.startswith("End to end, real-texture scene: 3x128x128")
    assert section.labels() == [speed.JOBS[key].label for key in jobs]
    for key in jobs:
        assert section.values[f"e2e real {key} RSS GiB"] > 0
    assert section.values["e2e real size"] == 128
    assert (tmp_path / "real_128.tif").exists()
    assert not list(tmp_path.glob("out_*"))  # outputs are removed after each run


def test_mirrored_indices_are_numpys_symmetric_pad(speed):
    import numpy as np

    for n, start, stop in ((5, 0, 40), (7, 3, 29), (7, 17, 60), (1, 0, 4)):
        expected = np.pad(np.arange(n), (0, stop), mode="symmetric")[start:stop]
        np.testing.assert_array_equal(speed.mirrored(n, start, stop), expected)


@pytest.mark.data
def test_the_real_scene_is_the_native_bands_mirrored(speed, tmp_path):
    import numpy as np
    import rasterio

    from dasksr.scenes import SENTINEL2_NATIVE, read_bands

    path = speed.make_input(tmp_path / "real.tif", 2100, scene="real")
    native, transform = read_bands([SENTINEL2_NATIVE[b] for b in ("B04", "B03", "B02")])
    with rasterio.open(path) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (3, 2100, 2100, "uint16")
        assert src.block_shapes[0] == (512, 512) and src.compression.name == "deflate"
        assert src.transform == transform and src.descriptions == ("B04", "B03", "B02")
        corner = src.read(window=((1900, 2100), (1900, 2100)))
        head = src.read(window=((0, 64), (0, 64)))
    _, height, width = native.shape
    pad = ((0, 0), (0, 2100 - height), (0, 2100 - width))
    np.testing.assert_array_equal(corner, np.pad(native, pad, mode="symmetric")[:, 1900:, 1900:])
    np.testing.assert_array_equal(head, native[:, :64, :64])
    # A kept file is reused only for the same scene: a synthetic one of that size is replaced.
    speed.make_input(tmp_path / "synthetic.tif", 96, scene="synthetic")
    speed.make_input(tmp_path / "synthetic.tif", 96, scene="real")
    with rasterio.open(tmp_path / "synthetic.tif") as src:
        assert src.tags()[speed.SCENE_TAG] == "real" and src.crs.to_epsg() == 32618


def test_without_the_shared_data_the_real_scene_fails_in_one_line(
    speed, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DASKSR_DATA", str(tmp_path))  # an existing folder without the bands
    assert speed.main(["--quick", "--sections", "e2e", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "native Sentinel-2 bands B04, B03, B02" in err and "--scene synthetic" in err
    assert not list(tmp_path.iterdir())  # nothing was made
    with pytest.raises(speed.SceneDataMissing, match="DASKSR_DATA"):
        speed.make_input(tmp_path / "real.tif", 64, scene="real")
    # The synthetic scene needs no shared data.
    path = speed.make_input(tmp_path / "synthetic.tif", 64, scene="synthetic")
    assert path.exists() and not (tmp_path / "synthetic.tif.partial").exists()


def test_targets_table_marks_missing_numbers(speed):
    section = speed.targets({"kernel dasksr bicubic x cv2": 0.7, "blockwise store x": 2.0})
    met = {row[0]: row[-1] for row in section.rows}
    assert met["kernel bicubic vs cv2 INTER_CUBIC (throughput ratio)"] == "yes"
    assert met["blockwise da.store time / whole-array kernel time"] == "**no**"
    assert met["end to end Zarr throughput / gdalwarp, real-texture scene"] == "-"
    measured = speed.targets({"blockwise store x": 2.0}, measured_only=True)
    assert measured.labels() == ["blockwise da.store time / whole-array kernel time"]


def test_targets_judge_the_real_scene_and_show_the_synthetic_one(speed):
    values = {"small dasksr s": 0.9}
    for scene, zarr_s, tif_s in (("real", 4.0, 9.0), ("synthetic", 2.0, 5.0)):
        values |= {
            f"e2e {scene} size": 4096,
            f"e2e {scene} gdalwarp s": 10.0,
            f"e2e {scene} dasksr-zarr s": zarr_s,
            f"e2e {scene} dasksr-tif s": tif_s,
        }
    rows = {row[0]: row[1:] for row in speed.targets(values).rows}
    real, synthetic = "real-texture 4096² scene", "synthetic 4096² scene"
    assert rows[f"end to end Zarr throughput / gdalwarp, {real}"] == [">= 3", "2.50", "**no**"]
    assert rows[f"end to end GeoTIFF throughput / gdalwarp, {real}"] == [">= 1.5", "1.11", "**no**"]
    assert rows[f"end to end Zarr throughput / gdalwarp, {synthetic}"] == [
        "not judged",
        "5.00",
        "-",
    ]
    assert rows[f"end to end GeoTIFF throughput / gdalwarp, {synthetic}"][1:] == ["2.00", "-"]
    small = [row for label, row in rows.items() if label.startswith("64 x 64 x 3 job")]
    assert small == [["<= 1.0", "0.90", "yes"]]


def test_parse_args(speed):
    args = speed.parse_args(["--quick", "--runs", "2", "--jobs", "dasksr-zarr,gdalwarp"])
    assert args.quick and args.runs == 2 and args.jobs == ["dasksr-zarr", "gdalwarp"]
    assert args.scenes == ["real", "synthetic"]  # real texture first
    assert speed.parse_args(["--scene", "synthetic"]).scenes == ["synthetic"]


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

    for height in (232, 259, 519, 718, 1098, 1207, 1947):
        train, test = scenes.train_rows(height), scenes.test_rows(height)
        assert train.stop == test.start == int(height * 0.6) and test.stop == height
        # A run that validates on a scene fits on the rows above its validation rows, all of
        # them training rows.
        fit, validation = scenes.fit_rows(height), scenes.validation_rows(height)
        assert fit.start == 0 and fit.stop == validation.start
        assert abs(fit.stop - 0.45 * height) <= 1
        assert validation.stop == train.stop and validation.stop - validation.start > 0
    files = scenes.scene_files(more=True)
    assert files[:4] == list(scenes.SENTINEL2) and files[-1] == scenes.LANDSAT7_RGB
    assert len(files) == len(set(files)) == 10


@pytest.mark.data
def test_the_native_scenes_of_the_sensor_evaluation_load_apart_from_training() -> None:
    """``sensor_eval.py`` scores the native scenes' held-out rows; the shipped sensor models'
    records name the native rows they read, if any (never the held-out ones)."""
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
        # A model fine-tuned on the native scenes (train.py --native) read their top 45 % and
        # validated on rows 45-60 %; its record says so, and no run read held-out rows.
        native = [run for run in record["runs"] if run.get("native")]
        assert ("18SVG" in record["training_data"]) == bool(native)
        assert not native or "top 45% rows of the native" in record["training_data"]
        assert not any("oracle_held_out_of" in run for run in record["runs"])
