#!/usr/bin/env python
"""Sensor-degradation quality on the held-out part of the shared scenes (issue 9, `cnn-sensor`).

Each scene's bottom 40 % of rows (training used only the top 60 %, see ``training/data.py``) is the
ground truth. Its low-resolution input is ``dasksr.degrade_sensor(truth, scale, sigma=0.5,
snr=40)`` in the scene's dtype; every method upscales it through ``dasksr.upscale`` and the PSNR is
measured over the valid pixels (0-fill of the Landsat scene excluded with the PSF's reach), with
``scale`` pixels cropped from each border and the peak = the truth's largest valid value.

    python benchmarks/sensor_eval.py --scales 2 4
    python benchmarks/sensor_eval.py --linear-bound   # and the best linear filter, fitted on the truth
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import rasterio
from scipy import ndimage

import dasksr
from dasksr.data import data_path
from dasksr.degrade import mod_crop

TEST_ROWS = 0.6  # the first row of the held-out part, as a fraction of the height
SIGMA, SNR = 0.5, 40.0

SCENES = {
    "sentinel2_B02-B08": [("sentinel2_l2a_29RKH_20200219", f"B0{b}.tif") for b in (2, 3, 4, 8)],
    "landsat8_B8_pan": [
        ("landsat8_l1tp_016037_20170813_pan_ms", "LC08_L1TP_016037_20170813_20170814_01_RT_B8.TIF")
    ],
    "aerial_hro": [("aerial_hro_colorado_0p15m", "201404_13SED190110_201404_0x1500m_CL_1.tif")],
}


def load_scene(name: str) -> np.ndarray:
    """The held-out part of a scene as ``(band, y, x)`` in its own dtype."""
    planes = []
    for parts in SCENES[name]:
        path = data_path("rasters", *parts)
        if path is None:
            raise SystemExit(f"shared raster {'/'.join(parts)} not found: set DASKSR_DATA")
        with rasterio.open(path) as src:
            data = src.read()
        planes.append(data[:, int(data.shape[1] * TEST_ROWS) :])
    return np.concatenate(planes)


def scene_psnr(truth: np.ndarray, estimate: np.ndarray, mask: np.ndarray, crop: int) -> float:
    t = truth[..., crop:-crop, crop:-crop].astype(np.float64)
    e = estimate[..., crop:-crop, crop:-crop].astype(np.float64)
    m = mask[..., crop:-crop, crop:-crop]
    peak = float(t[m].max())
    mse = float(np.mean((t - e)[m] ** 2))
    return 10 * math.log10(peak**2 / mse)


def linear_bound(
    truth: np.ndarray, small: np.ndarray, mask: np.ndarray, scale: int, radius: int = 5
) -> np.ndarray:
    """The best linear reconstruction, fitted on the truth it is scored against.

    For every band and every one of the ``scale**2`` fine-pixel phases, least squares fits the
    weights of the ``2 radius + 1`` square low-resolution neighbourhood (extended half-sample
    symmetrically) to the valid truth pixels themselves. No linear filter of that reach, bicubic,
    lanczos or any deconvolution, can score higher on these pixels: the gain of this oracle over
    bicubic is the most that linear restoration of the blur and the noise can give, and what a
    network gains beyond it had to come from predicting the missing detail.
    """
    out = np.empty(truth.shape)
    k = 2 * radius + 1
    for b in range(truth.shape[0]):
        h, w = small[b].shape
        lo = np.pad(small[b].astype(np.float64), radius, mode="symmetric")
        feats = np.lib.stride_tricks.sliding_window_view(lo, (k, k)).reshape(h * w, k * k)
        valid = mask[b].reshape(h, scale, w, scale).all(axis=(1, 3)).reshape(-1)
        for py in range(scale):
            for px in range(scale):
                target = truth[b, py::scale, px::scale].astype(np.float64).reshape(-1)
                coef = np.linalg.lstsq(feats[valid], target[valid], rcond=None)[0]
                out[b, py::scale, px::scale] = (feats @ coef).reshape(h, w)
    return out


def scene_figures(
    scale: int, methods=("cnn-sensor", "cnn", "lanczos", "bicubic"), bound: bool = False
) -> dict:
    """PSNR of each method on each scene, and the gain of each over bicubic."""
    known = {m.name for m in dasksr.list_methods()}
    out: dict = {}
    for name in SCENES:
        truth = mod_crop(load_scene(name), scale)
        fill = truth == 0 if truth.dtype != np.uint8 else np.zeros(truth.shape, bool)
        reach = math.ceil(4 * SIGMA * scale) + scale
        mask = ~ndimage.binary_dilation(fill, np.ones((1, 2 * reach + 1, 2 * reach + 1), bool))
        small = dasksr.degrade_sensor(truth.astype(np.float64), scale, sigma=SIGMA, snr=SNR, seed=0)
        info = np.iinfo(truth.dtype)
        small = np.clip(np.rint(small), info.min, info.max).astype(truth.dtype)
        row = {}
        for method in methods:
            if method not in known or scale not in dasksr.get_method(method).scales:
                continue
            restored = dasksr.upscale(small, scale=scale, method=method)
            row[method] = round(scene_psnr(truth, restored, mask, scale), 3)
        if bound:
            row["linear bound"] = round(
                scene_psnr(truth, linear_bound(truth, small, mask, scale), mask, scale), 3
            )
        if "bicubic" in row:
            row["gain_over_bicubic"] = {
                m: round(v - row["bicubic"], 3) for m, v in row.items() if m != "bicubic"
            }
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument(
        "--linear-bound",
        action="store_true",
        help="also fit the best linear filter on each scene's truth (11 x 11 LR neighbourhood per "
        "fine phase): the most any linear restoration can gain there",
    )
    args = ap.parse_args()
    for scale in args.scales:
        figures = scene_figures(scale, bound=args.linear_bound)
        methods = [
            m
            for m in ("cnn-sensor", "cnn", "lanczos", "bicubic", "linear bound")
            if any(m in row for row in figures.values())
        ]
        print(
            f"\nx{scale}: PSNR (dB) on the held-out 40 % of each scene, sigma {SIGMA}, {SNR:g} dB"
        )
        print(f"{'scene':<20}" + "".join(f"{m:>14}" for m in methods) + f"{'gain':>10}")
        for name, row in figures.items():
            gain = row.get("gain_over_bicubic", {}).get("cnn-sensor", float("nan"))
            print(
                f"{name:<20}"
                + "".join(f"{row.get(m, float('nan')):>14.3f}" for m in methods)
                + f"{gain:>+10.3f}"
            )


if __name__ == "__main__":
    main()
