"""Training and validation data for the compact networks, read through `dasksr.data`.

Two degradations:

- ``bicubic`` (model ``cnn``): the literature's protocol. High-resolution images are the BT.601 Y
  channel (MATLAB's ``rgb2ycbcr``, uint8) of T91, BSDS200 and BSDS500-test200; the low-resolution
  input is MATLAB-compatible ``imresize(hr, 1 / scale)`` in uint8. Values are divided by 255.
- ``sensor`` (model ``cnn-sensor``): `dasksr.degrade_sensor` with a Gaussian PSF of sigma drawn from
  0.3 to 0.7 low-resolution pixels and white noise of 30 to 50 dB SNR, on single bands of the shared
  satellite scenes (`dasksr.scenes`: the top 60 % of each scene, the bottom 40 % is kept for
  evaluation), the aerial tile, the AID aerial tiles and the natural images. uint8 bands are
  divided by 255; other bands are mapped by their 0.5 and 99.5 percentiles, the value rule dasksr
  applies at inference.

Set5 and Set14 are never read here.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dasksr.api import upscale
from dasksr.data import data_path
from dasksr.degrade import degrade_sensor, imresize, mod_crop
from dasksr.metrics import rgb2y
from dasksr.scenes import read_file, scene_files, test_rows, train_rows, zero_is_fill

NATURAL = ("T91/*.bmp", "BSDS200/*.jpg", "BSDS500-test200/*.jpg")


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


def split(files: list[str], every: int = 25) -> tuple[list[str], list[str]]:
    """A fixed validation split: every ``every``-th file."""
    return [f for i, f in enumerate(files) if i % every], files[::every]


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
    for f in _files(("rs-tiles/AID-150px-subset/*/*.jpg",)):
        bands.append((f, luma(f)))
    return bands


def sensor_pairs(
    bands: list[tuple[str, np.ndarray]], scale: int, variants: int, rng: np.random.Generator
) -> list[Pair]:
    """``variants`` random sensor degradations of every band (float, normalised as at inference)."""
    pairs = []
    for _, raw in bands:
        hr_raw = mod_crop(raw, scale).astype(np.float64)
        fill = raw.dtype != np.uint8 and bool((hr_raw == 0).any())
        for _ in range(variants):
            sigma = float(rng.uniform(0.3, 0.7))
            snr = float(rng.uniform(30, 50))
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
