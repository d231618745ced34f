"""Training and validation data for the compact networks, read through `dasksr.data`.

Two degradations:

- ``bicubic`` (model ``cnn``): the literature's protocol. High-resolution images are the BT.601 Y
  channel (MATLAB's ``rgb2ycbcr``, uint8) of T91, BSDS200 and BSDS500-test200; the low-resolution
  input is MATLAB-compatible ``imresize(hr, 1 / scale)`` in uint8. Values are divided by 255.
- ``sensor`` (model ``cnn-sensor``): `dasksr.degrade_sensor` with a Gaussian PSF of sigma drawn from
  0.3 to 0.7 low-resolution pixels and white noise of 30 to 50 dB SNR, on single bands of the shared
  satellite scenes (`dasksr.scenes`: the top 60 % of each scene, the bottom 40 % is kept for
  evaluation), the aerial tile, the AID aerial tiles and the natural images. uint8 bands are
  divided by 255, other bands by the 99.5th percentile of their non-zero values: one factor per
  band and no offset. That only brings the optimiser's values near 1; it changes nothing in what
  the network computes, which is positively homogeneous (no biases, PReLU), and dasksr applies no
  normalisation at inference.

Every natural image and AID tile is checked against the evaluation sets: `split` drops from both
splits the images that ``dedupe.py`` found to be Set5 or Set14 images (``excluded.json``: BSDS200
``302003`` is Set5's ``woman``, rotated). Set5 and Set14 are read here only by `fingerprints`, for
that check, never as training or validation data.

How ``train.py`` shares its patches among the images (`scene_weights`, `scene_shares`,
`draw_weights`) is here too: NumPy only, so that its tests run where torch is not installed (CI).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dasksr.api import upscale
from dasksr.data import data_path
from dasksr.degrade import degrade_sensor, imresize, mod_crop
from dasksr.metrics import rgb2y
from dasksr.scenes import (
    fit_rows,
    native_scenes,
    native_training_files,
    read_file,
    scene_files,
    test_rows,
    train_rows,
    validation_rows,
    zero_is_fill,
)

NATURAL = ("T91/*.bmp", "BSDS200/*.jpg", "BSDS500-test200/*.jpg")
AID = ("rs-tiles/AID-150px-subset/*/*.jpg",)
#: The evaluation sets' high-resolution images, which no training or validation image may be.
BENCHMARKS = ("Set5/image_SRF_2/*_HR.png", "Set14/image_SRF_2/*_HR.png")
#: Training images found to be benchmark images (``dedupe.py`` writes it; `split` drops them).
EXCLUDED = Path(__file__).resolve().with_name("excluded.json")
#: Thumbnail side and the similarity from which two images count as the same picture.
THUMBNAIL = 32
SAME_PICTURE = 0.6


@dataclass
class Pair:
    """One training image: normalised HR, LR and the bicubic upscaling of LR (float32)."""

    hr: np.ndarray
    lr: np.ndarray
    bicubic: np.ndarray
    valid: np.ndarray | None = None  # LR pixels free of fill, for scenes with 0-fill


def _files(patterns: tuple[str, ...]) -> list[str]:
    root = data_path("sr-benchmarks")
    if root is None:
        raise SystemExit("the shared sr-benchmarks data is missing: set DASKSR_DATA")
    out: list[str] = []
    for p in patterns:
        out += sorted(glob.glob(str(root / p)))
    return out


def luma(path: str) -> np.ndarray:
    """uint8 Y channel of an image file (grey images as they are)."""
    image = np.asarray(Image.open(path))
    if image.ndim == 2:
        return image
    y = rgb2y(image[..., :3], axis=-1)
    return np.asarray(y).astype(np.uint8)


def relative(path: str) -> str:
    """A shared image's path relative to the ``sr-benchmarks`` folder (``BSDS200/302003.jpg``)."""
    root = data_path("sr-benchmarks")
    return Path(os.path.relpath(path, root)).as_posix()


def excluded() -> set[str]:
    """The training images `split` drops (paths relative to ``sr-benchmarks``)."""
    return {e["image"] for e in json.loads(EXCLUDED.read_text())["excluded"]}


def split(files: list[str], every: int = 25, exclude: bool = True) -> tuple[list[str], list[str]]:
    """A fixed validation split: every ``every``-th file; then, unless ``exclude`` is false, the
    benchmark images of ``excluded.json`` are dropped from both parts (after the split, so that
    every other image stays where it was)."""
    drop = excluded() if exclude else set()
    train = [f for i, f in enumerate(files) if i % every]
    return [f for f in train if relative(f) not in drop], [
        f for f in files[::every] if relative(f) not in drop
    ]


def image_lists(exclude: bool = True) -> dict[str, list[str]]:
    """Every image file that training or validation reads: the natural images' and the AID
    tiles' training and validation splits (``train.py`` reads these lists and no others)."""
    natural_train, natural_val = split(_files(NATURAL), exclude=exclude)
    aid_train, aid_val = split(_files(AID), exclude=exclude)
    return {
        "natural_train": natural_train,
        "natural_val": natural_val,
        "aid_train": aid_train,
        "aid_val": aid_val,
    }


#: The lists of `image_lists` each model reads (``cnn-sensor`` validates on AID tiles only).
READS = {
    "cnn": ("natural_train", "natural_val"),
    "cnn-sensor": ("natural_train", "aid_train", "aid_val"),
}
#: What each model trains and validates on, for its record (``export.py``).
SOURCES = {
    "cnn": "T91, BSDS200, BSDS500-test200 (every 25th image held out for validation)",
    "cnn-sensor": "top 60% rows of shared Sentinel-2 B02/B03/B04/B08, Landsat 8 B8, HRO aerial "
    "bands; AID-150px tiles (every 25th held out for validation); T91, BSDS200 and "
    "BSDS500-test200 Y (their training split: every 25th image left out)",
}
#: What ``train.py --native`` adds to the sources (and its validation, which replaces AID's).
NATIVE_SOURCES = (
    "; top 45% rows of the native Sentinel-2 L1C 18SVG 10 m and 20 m bands and of the native "
    "Landsat 8 L1T pan and B1-B7 (rows 45-60% of their scored bands validate)"
)
#: What ``train.py --more-scenes`` adds to the sources.
MORE_SOURCES = "; top 60% rows of Landsat 8 B2/B3/B4 and Landsat 7 RGB"


def training_data(meta: dict) -> str:
    """A checkpoint's training data as its record states it: the model's sources, and whether its
    runs dropped the benchmark images of ``excluded.json`` (``train.py`` notes that in each run)
    or which of them they read, before the check existed."""
    text = SOURCES[meta["model"]]
    if any(run.get("more_scenes") for run in meta["runs"]):
        text += MORE_SOURCES
    if any(run.get("native") for run in meta["runs"]):
        text += NATIVE_SOURCES
    if all("excluded" in run for run in meta["runs"]):
        return text + "; images found to be Set5/Set14 images left out (training/excluded.json)"
    seen = [
        f"{e['image']} (= {e['benchmark']} {e['name']}) was in its "
        + ("validation" if e["list"].endswith("_val") else "training")
        + " split"
        for e in json.loads(EXCLUDED.read_text())["excluded"]
        if e["list"] in READS[meta["model"]]
    ]
    return (
        text
        + "; trained before the check against Set5/Set14 (training/excluded.json): "
        + ("; ".join(seen) if seen else "it read none of the images listed there")
    )


def fingerprints(path: str) -> np.ndarray:
    """``(2, THUMBNAIL, THUMBNAIL)`` detail thumbnails of an image: the whole image and its centred
    square, in grey levels, each minus its 5x5 local mean, zero-mean and of unit norm.

    The local mean is taken out so that smooth shading (skies, walls) does not make unrelated
    pictures alike; the centred square matches a picture cut to another aspect ratio.
    """
    image = Image.open(path)
    if image.format == "JPEG":  # decoded at a reduced size (DCT scaling): 5x faster
        image.draft("L", (image.width // 4, image.height // 4))
    image = image.convert("L")
    w, h = image.size
    s = min(w, h)
    square = image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    out = []
    for part in (image, square):
        t = np.asarray(part.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), np.float64)
        padded = np.pad(t, 2, mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
        t = t - windows.mean(axis=(-2, -1))
        t -= t.mean()
        out.append(t / (np.linalg.norm(t) + 1e-12))
    return np.stack(out)


#: The 8 rotations and flips (the dihedral group of the square), by name.
ORIENTATIONS = tuple(f"rot{90 * k}{'+flip' if f else ''}" for k in range(4) for f in (0, 1))


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation of every fingerprint in ``a`` (``(n, 2, t, t)``) with every one in ``b``
    (``(m, 2, t, t)``) over the 8 rotations and flips of ``a`` and over the whole image and the
    centred square: ``(n, m)`` scores in [-1, 1] and the index in `ORIENTATIONS` of the best."""
    turned = []
    for k in range(4):
        r = np.rot90(a, k, axes=(-2, -1))
        turned += [r, r[..., ::-1]]
    scores = np.einsum("nokyx,mkyx->nmok", np.stack(turned, axis=1), b).max(axis=3)
    return scores.max(axis=2), scores.argmax(axis=2)


def _bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.asarray(
        upscale(lr.astype(np.float32), scale=scale, method="bicubic"), dtype=np.float32
    )


def bicubic_pair(y: np.ndarray, scale: int) -> Pair:
    hr = mod_crop(y, scale)
    lr = imresize(hr, 1 / scale)
    lr32 = lr.astype(np.float32) / 255
    return Pair(hr.astype(np.float32) / 255, lr32, _bicubic(lr32, scale))


def natural_pairs(scale: int, files: list[str]) -> list[Pair]:
    return [bicubic_pair(luma(f), scale) for f in files]


def sensor_bands(
    held_out_of: str | None = None, more: bool = False
) -> list[tuple[str, np.ndarray]]:
    """Training bands for the sensor model: (name, raw band), top part of each scene only.

    A scene band is named ``folder/file:band`` (``sentinel2_l2a_29RKH_20200219/B02.tif:1``), an
    AID tile by its path. ``held_out_of`` (a diagnostic, never for shipped weights) gives instead
    the held-out bottom part of the scenes whose folder name contains it, the evaluation's own
    pixels, and the AID tiles. ``more`` adds `dasksr.scenes.MORE_SCENES`.
    """
    bands: list[tuple[str, np.ndarray]] = []
    for parts in scene_files(more=more):
        if held_out_of is not None and held_out_of not in parts[-2]:
            continue
        data, nodata = read_file(parts)
        if data.dtype == np.uint8 and zero_is_fill(data.dtype, nodata):
            # Widened so that `sensor_pairs` masks its zero fill, as for the uint16 scenes.
            data = data.astype(np.uint16)
        rows = (test_rows if held_out_of is not None else train_rows)(data.shape[1])
        for b in range(data.shape[0]):
            bands.append((f"{parts[-2]}/{parts[-1]}:{b + 1}", data[b, rows]))
    for f in _files(AID):
        bands.append((f, luma(f)))
    return bands


def native_bands(part: str = "fit") -> list[tuple[str, np.ndarray]]:
    """The native scenes' bands (`dasksr.scenes.native_training_files`), named like
    `sensor_bands`' scene bands: their ``"fit"`` rows (`dasksr.scenes.fit_rows`, for training), or
    the ``"validation"`` rows (`dasksr.scenes.validation_rows`) of the bands the evaluation scores
    (`dasksr.scenes.native_scenes`)."""
    files = native_training_files() if part == "fit" else native_scenes()
    rows = {"fit": fit_rows, "validation": validation_rows}[part]
    bands = []
    for parts in (f for group in files.values() for f in group):
        data, _ = read_file(parts)
        bands.append((f"{parts[-2]}/{parts[-1]}:1", data[0, rows(data.shape[1])]))
    return bands


def sensor_pairs(
    bands: list[tuple[str, np.ndarray]],
    scale: int,
    variants: int,
    rng: np.random.Generator,
    fixed: tuple[float, float] | None = None,
) -> list[Pair]:
    """``variants`` random sensor degradations of every band (float, normalised as at inference);
    ``fixed`` (sigma, SNR) instead of the random draws, for validation."""
    pairs = []
    for _, raw in bands:
        hr_raw = mod_crop(raw, scale).astype(np.float64)
        fill = raw.dtype != np.uint8 and bool((hr_raw == 0).any())
        for _ in range(variants):
            sigma = float(rng.uniform(0.3, 0.7))
            snr = float(rng.uniform(30, 50))
            if fixed is not None:
                sigma, snr = fixed
            lr_raw = degrade_sensor(
                hr_raw, scale, sigma=sigma, snr=snr, seed=int(rng.integers(2**31))
            )
            top = 255.0 if raw.dtype == np.uint8 else float(np.percentile(hr_raw[hr_raw > 0], 99.5))
            hr = (hr_raw / top).astype(np.float32)
            lr = (lr_raw / top).astype(np.float32)
            valid = None
            if fill:
                small = hr_raw.reshape(lr.shape[0], scale, lr.shape[1], scale)
                valid = (small > 0).all(axis=(1, 3))
            pairs.append(Pair(hr, lr, _bicubic(lr, scale), valid))
    return pairs


def scene_weights(text: str) -> dict[str, float]:
    """``'sentinel2=1,landsat8=2'`` as ``{'sentinel2': 1.0, 'landsat8': 2.0}`` (argparse type)."""
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or out[name.strip()] < 0:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT pairs, got {item!r}")
    return out


def scene_shares(names: list[str], weights: dict[str, float]) -> list[float]:
    """Each scene band's share of the scenes' patches: a scene's weight, split among its bands.

    ``names`` are ``folder/file:band``; every weight must name exactly one scene folder and every
    folder must be named.
    """
    folders = [n.split("/")[0] for n in names]
    chosen = {}
    for key in weights:
        hits = {f for f in folders if key in f}
        if len(hits) != 1:
            raise SystemExit(f"--scene-weights: {key!r} matches {len(hits)} scenes, not one")
        chosen[hits.pop()] = weights[key]
    missing = sorted(set(folders) - set(chosen))
    if missing:
        raise SystemExit(f"--scene-weights: no weight for {', '.join(missing)}")
    total = sum(chosen.values())
    return [chosen[f] / total / folders.count(f) for f in folders]


def draw_weights(
    areas: np.ndarray,
    scene_bands: int,
    variants: int,
    share: float,
    band_shares: list[float] | None = None,
) -> np.ndarray:
    """How likely each training pair is drawn: by its area, every pixel alike, unless ``share > 0``.

    Then the first ``scene_bands * variants`` pairs (the scenes', ``variants`` per band) take
    ``share`` of the draws, split among the bands by ``band_shares`` (default: by area), and the
    other pairs the rest, by area.
    """
    weights = areas / areas.sum()
    if share <= 0:
        return weights
    from_scenes = np.zeros(len(weights), bool)
    from_scenes[: scene_bands * variants] = True
    if band_shares is not None:
        for i, w in enumerate(band_shares):
            part = slice(i * variants, (i + 1) * variants)
            weights[part] *= w / weights[part].sum()
    weights[from_scenes] *= share / weights[from_scenes].sum()
    if share < 1:
        weights[~from_scenes] *= (1 - share) / weights[~from_scenes].sum()
    else:
        weights[~from_scenes] = 0.0
    return weights
