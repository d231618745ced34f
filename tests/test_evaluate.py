"""The evaluation protocol: published bicubic numbers on Set5/Set14, every method, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dasksr
from dasksr.cli import main
from dasksr.data import data_path
from dasksr.degrade import imresize
from dasksr.errors import InputError
from dasksr.evaluate import evaluate_images, format_table, read_image
from dasksr.methods import list_methods
from dasksr.metrics import psnr, ssim

# Bicubic means as the literature quotes them (e.g. SRCNN, VDSR): (PSNR, SSIM) per scale.
PUBLISHED = {
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, None), 3: (27.55, None), 4: (26.00, None)},
}
PSNR_TOLERANCE = 0.05
SSIM_TOLERANCE = 0.002


def _benchmark(dataset: str, scale: int) -> Path:
    folder = data_path("sr-benchmarks", dataset, f"image_SRF_{scale}")
    if folder is None:
        pytest.skip(f"sr-benchmarks/{dataset} not found (set DASKSR_DATA)")
    return folder


def _published_per_image(dataset: str, scale: int) -> dict[str, tuple[float, float]]:
    table = data_path("sr-benchmarks", "published_per_image_Set5_Set14.csv")
    if table is None:
        pytest.skip("published_per_image_Set5_Set14.csv not found")
    with table.open() as f:
        return {
            f"{row['image']}_SRF_{scale}": (float(row["psnr_Bicubic"]), float(row["ssim_Bicubic"]))
            for row in csv.DictReader(f)
            if row["set"] == dataset and int(row["scale"]) == scale
        }


@pytest.mark.data
@pytest.mark.parametrize("source", ["imresize", "lr-files"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_bicubic_reproduces_the_published_table(dataset: str, scale: int, source: str) -> None:
    folder = _benchmark(dataset, scale)
    lr = str(folder / "*_LR.png") if source == "lr-files" else None
    result = evaluate_images(str(folder / "*_HR.png"), scale=scale, method="bicubic", lr=lr)

    mean_psnr, mean_ssim = PUBLISHED[dataset][scale]
    assert result["mean_psnr"] == pytest.approx(mean_psnr, abs=PSNR_TOLERANCE)
    if mean_ssim is not None:
        assert result["mean_ssim"] == pytest.approx(mean_ssim, abs=SSIM_TOLERANCE)
    # Image by image against the numbers published with these very files.
    published = _published_per_image(dataset, scale)
    assert sorted(published) == [r["name"] for r in result["images"]]
    for row in result["images"]:
        ref_psnr, ref_ssim = published[row["name"]]
        assert row["psnr"] == pytest.approx(ref_psnr, abs=PSNR_TOLERANCE), row["name"]
        assert row["ssim"] == pytest.approx(ref_ssim, abs=SSIM_TOLERANCE), row["name"]


def _scene(size: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth RGB scene with some texture, as uint8 (y, x, band)."""
    y, x = np.mgrid[0 : size[0], 0 : size[1]].astype(float)
    rng = np.random.default_rng(seed)
    bands = [
        128 + 60 * np.sin(x / (5 + 3 * k) + rng.random() * 6) * np.cos(y / (7 + k)) + 8 * k
        for k in range(3)
    ]
    return np.clip(np.stack(bands, axis=-1), 0, 255).astype(np.uint8)


@pytest.fixture
def image_set(tmp_path: Path) -> Path:
    """Two RGB images and a grayscale one, sizes not multiples of 3, as *_HR.png files."""
    Image.fromarray(_scene((50, 61), 1)).save(tmp_path / "b_HR.png")
    Image.fromarray(_scene((47, 40), 2)).save(tmp_path / "a_HR.png")
    Image.fromarray(_scene((44, 52), 3)[..., 0]).save(tmp_path / "c_HR.png")
    return tmp_path


def test_evaluate_follows_the_protocol(image_set: Path) -> None:
    result = evaluate_images(str(image_set / "*_HR.png"), scale=3, method="bicubic")
    assert set(result) == {"method", "scale", "images", "mean_psnr", "mean_ssim"}
    assert (result["method"], result["scale"]) == ("bicubic", 3)
    assert [r["name"] for r in result["images"]] == ["a", "b", "c"]
    # Recompute image "b" by hand: mod-crop, imresize down, bicubic up, Y, crop 3.
    truth = np.moveaxis(np.array(Image.open(image_set / "b_HR.png")), -1, 0)[:, :48, :60]
    restored = dasksr.upscale(imresize(truth, 1 / 3), scale=3, method="bicubic")
    b = result["images"][1]
    assert b["psnr"] == psnr(truth, restored, crop=3, y_channel=True)
    assert b["ssim"] == ssim(truth, restored, crop=3, y_channel=True)
    assert result["mean_psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["images"]]))
    assert result["mean_ssim"] == pytest.approx(np.mean([r["ssim"] for r in result["images"]]))
    table = format_table(result).splitlines()
    assert table[0].split() == ["image", "PSNR", "(dB)", "SSIM"]
    assert table[-1].split()[0] == "mean" and len(table) == 5


def test_given_low_resolution_files_are_paired_in_sorted_order(image_set: Path) -> None:
    lr_dir = image_set / "lr"
    lr_dir.mkdir()
    for name in ("a", "b", "c"):
        truth = read_image(image_set / f"{name}_HR.png")
        small = imresize(truth[..., : truth.shape[-2] // 2 * 2, : truth.shape[-1] // 2 * 2], 1 / 2)
        pixels = np.moveaxis(small, 0, -1) if small.ndim == 3 else small
        Image.fromarray(pixels).save(lr_dir / f"{name}_LR.png")
    made = evaluate_images(str(image_set / "*_HR.png"), scale=2)
    given = evaluate_images(str(image_set / "*_HR.png"), scale=2, lr=str(lr_dir / "*_LR.png"))
    assert given == made


@pytest.mark.parametrize("method", [m.name for m in list_methods()])
def test_every_registered_method_can_be_evaluated(image_set: Path, method: str) -> None:
    result = evaluate_images(str(image_set / "*_HR.png"), scale=2, method=method)
    assert result["method"] == method
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in result["images"])
    assert 15 < result["mean_psnr"] < 60


def test_interpolation_quality_is_ordered(image_set: Path) -> None:
    means = {
        m: evaluate_images(str(image_set / "*_HR.png"), scale=2, method=m)["mean_psnr"]
        for m in ("nearest", "bilinear", "bicubic")
    }
    assert means["nearest"] < means["bilinear"] < means["bicubic"]


def test_read_image_modes(tmp_path: Path) -> None:
    rgba = np.zeros((5, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (3, 5, 6)
    Image.fromarray(np.full((5, 6), 9, dtype=np.uint8)).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 5, 6)
    Image.fromarray(np.full((5, 6), 9, dtype=np.uint8)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").shape == (5, 6)


def test_bad_inputs_raise_input_errors(image_set: Path) -> None:
    with pytest.raises(InputError, match="matches no file"):
        evaluate_images(str(image_set / "*.tif"), scale=2)
    with pytest.raises(InputError, match="lr has 1 file"):
        evaluate_images(str(image_set / "*_HR.png"), scale=2, lr=str(image_set / "a_HR.png"))
    with pytest.raises(InputError, match="needs"):
        evaluate_images(str(image_set / "a_HR.png"), scale=2, lr=str(image_set / "b_HR.png"))
    (image_set / "broken_HR.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image"):
        evaluate_images(str(image_set / "*_HR.png"), scale=2)


def test_cli_prints_the_table_and_writes_json(
    image_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = image_set / "result.json"
    pattern = str(image_set / "*_HR.png")
    code = main(["evaluate", "--hr", pattern, "--scale", "2", "-m", "bilinear", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "bilinear x2, 3 image(s)"
    assert printed[-2].split()[0] == "mean" and printed[-1] == f"wrote {out}"
    saved = json.loads(out.read_text())
    assert saved == evaluate_images(pattern, scale=2, method="bilinear")
    assert set(saved["images"][0]) == {"name", "psnr", "ssim"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--hr", "{d}/*.jpg"], "matches no file"),
        (["--hr", "{d}/*_HR.png", "--lr", "{d}/a_HR.png"], "lr has 1 file(s) but hr has 3"),
        (["--hr", "{d}/*_HR.png", "--scale", "1.5"], "--scale '1.5' is not an integer"),
        (["--hr", "{d}/*_HR.png", "--method", "magic"], "unknown method 'magic'"),
        (["--hr", "{d}/notes.txt"], "cannot read image"),
        (["--hr", "{d}/*_HR.png", "--json", "{d}/missing/dir/out.json"], "cannot write"),
    ],
)
def test_cli_errors_are_one_line(
    image_set: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    (image_set / "notes.txt").write_text("hello")
    code = main(["evaluate", *(a.format(d=image_set) for a in arguments)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dasksr: error: ") and err.count("\n") == 1
    assert message in err
