#!/usr/bin/env python
"""Sensor-degradation quality on the held-out part of the shared scenes (issue 9, `cnn-sensor`).

Each scene's bottom 40 % of rows (training used only the top 60 %, see ``training/data.py``) is the
ground truth. Its low-resolution input is ``dasksr.degrade_sensor(truth, scale, sigma=0.5,
snr=40)`` in the scene's dtype; every method upscales it through ``dasksr.upscale`` and the PSNR is
measured over the valid pixels (0-fill of the Landsat scene excluded with the PSF's reach), with
``scale`` pixels cropped from each border and the peak = the truth's largest valid value.

    python benchmarks/sensor_eval.py --scales 2 4
    python benchmarks/sensor_eval.py --linear-bound   # and the best linear filter, fitted on the truth
    python benchmarks/sensor_eval.py --linear-transfer   # and that filter fitted on the training rows
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


def load_scene(name: str, held_out: bool = True) -> np.ndarray:
    """The held-out part of a scene (or, ``held_out=False``, its training part) as
    ``(band, y, x)`` in its own dtype."""
    planes = []
    for parts in SCENES[name]:
        path = data_path("rasters", *parts)
        if path is None:
            raise SystemExit(f"shared raster {'/'.join(parts)} not found: set DASKSR_DATA")
        with rasterio.open(path) as src:
            data = src.read()
        first = int(data.shape[1] * TEST_ROWS)
        planes.append(data[:, first:] if held_out else data[:, :first])
    return np.concatenate(planes)


def valid_mask(truth: np.ndarray, scale: int) -> np.ndarray:
    """The pixels scored: all but the 0-fill of uint16 scenes, widened by the PSF's reach."""
    fill = truth == 0 if truth.dtype != np.uint8 else np.zeros(truth.shape, bool)
    reach = math.ceil(4 * SIGMA * scale) + scale
    return ~ndimage.binary_dilation(fill, np.ones((1, 2 * reach + 1, 2 * reach + 1), bool))


def degraded(truth: np.ndarray, scale: int, seed: int = 0) -> np.ndarray:
    """The evaluation's low-resolution input, in the truth's dtype."""
    small = dasksr.degrade_sensor(truth.astype(np.float64), scale, sigma=SIGMA, snr=SNR, seed=seed)
    info = np.iinfo(truth.dtype)
    return np.clip(np.rint(small), info.min, info.max).astype(truth.dtype)


def scene_psnr(truth: np.ndarray, estimate: np.ndarray, mask: np.ndarray, crop: int) -> float:
    t = truth[..., crop:-crop, crop:-crop].astype(np.float64)
    e = estimate[..., crop:-crop, crop:-crop].astype(np.float64)
    m = mask[..., crop:-crop, crop:-crop]
    peak = float(t[m].max())
    mse = float(np.mean((t - e)[m] ** 2))
    return 10 * math.log10(peak**2 / mse)


def _neighbourhoods(small: np.ndarray, radius: int) -> np.ndarray:
    """Every low-resolution pixel's ``2 radius + 1`` square neighbourhood (half-sample symmetric
    extension) as one row."""
    k = 2 * radius + 1
    lo = np.pad(small.astype(np.float64), radius, mode="symmetric")
    return np.lib.stride_tricks.sliding_window_view(lo, (k, k)).reshape(small.size, k * k)


def fit_linear(
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scale: int, radius: int = 5
) -> np.ndarray:
    """Least-squares linear filters, ``(band, scale, scale, (2 radius + 1)**2)``: for every band
    and fine-pixel phase, the weights of the low-resolution neighbourhood that best give the valid
    truth pixels of all ``examples``, each ``(truth, small, mask)`` of ``(band, y, x)``."""
    bands = examples[0][0].shape[0]
    coef = np.empty((bands, scale, scale, (2 * radius + 1) ** 2))
    for b in range(bands):
        feats, targets = [], []
        for truth, small, mask in examples:
            h, w = small[b].shape
            valid = mask[b].reshape(h, scale, w, scale).all(axis=(1, 3)).reshape(-1)
            feats.append(_neighbourhoods(small[b], radius)[valid])
            phases = truth[b].astype(np.float64).reshape(h, scale, w, scale).transpose(1, 3, 0, 2)
            targets.append(phases.reshape(scale * scale, h * w)[:, valid])
        solved = np.linalg.lstsq(
            np.concatenate(feats), np.concatenate(targets, axis=1).T, rcond=None
        )
        coef[b] = solved[0].T.reshape(scale, scale, -1)
    return coef


def apply_linear(coef: np.ndarray, small: np.ndarray, scale: int) -> np.ndarray:
    """The fine grid that the filters of `fit_linear` give from ``small``."""
    radius = (math.isqrt(coef.shape[-1]) - 1) // 2
    out = np.empty((small.shape[0], small.shape[1] * scale, small.shape[2] * scale))
    for b in range(small.shape[0]):
        h, w = small[b].shape
        phases = _neighbourhoods(small[b], radius) @ coef[b].reshape(scale * scale, -1).T
        out[b] = phases.T.reshape(scale, scale, h, w).transpose(2, 0, 3, 1).reshape(h * scale, -1)
    return out


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
    return apply_linear(fit_linear([(truth, small, mask)], scale, radius), small, scale)


#: Noise draws of the training part that `linear_transfer` fits on (the evaluation's is seed 0).
TRANSFER_SEEDS = (1, 2, 3, 4)


def linear_transfer(name: str, small: np.ndarray, scale: int, radius: int = 5) -> np.ndarray:
    """The best linear reconstruction learnt where training may look: the filters of `fit_linear`
    fitted on the scene's training part (top 60 %), degraded as for the evaluation with other noise
    draws (`TRANSFER_SEEDS`), then applied to the held-out input ``small``. What a linear
    restoration learnt from the training rows gains on the held-out rows; the gap to
    `linear_bound` is what the held-out rows do not share with the training rows."""
    top = mod_crop(load_scene(name, held_out=False), scale)
    mask = valid_mask(top, scale)
    examples = [(top, degraded(top, scale, seed), mask) for seed in TRANSFER_SEEDS]
    return apply_linear(fit_linear(examples, scale, radius), small, scale)


def scene_figures(
    scale: int,
    methods=("cnn-sensor", "cnn", "lanczos", "bicubic"),
    bound: bool = False,
    transfer: bool = False,
) -> dict:
    """PSNR of each method on each scene, and the gain of each over bicubic; ``bound`` and
    ``transfer`` add `linear_bound` and `linear_transfer`."""
    known = {m.name for m in dasksr.list_methods()}
    out: dict = {}
    for name in SCENES:
        truth = mod_crop(load_scene(name), scale)
        mask = valid_mask(truth, scale)
        small = degraded(truth, scale)
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
        if transfer:
            row["linear transfer"] = round(
                scene_psnr(truth, linear_transfer(name, small, scale), mask, scale), 3
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
    ap.add_argument(
        "--linear-transfer",
        action="store_true",
        help="also fit that filter on each scene's training part (top 60 %%, four other noise "
        "draws) and score it on the held-out part: what linear restoration learnt from the "
        "training rows reaches",
    )
    args = ap.parse_args()
    for scale in args.scales:
        figures = scene_figures(scale, bound=args.linear_bound, transfer=args.linear_transfer)
        methods = [
            m
            for m in ("cnn-sensor", "cnn", "lanczos", "bicubic", "linear bound", "linear transfer")
            if any(m in row for row in figures.values())
        ]
        print(
            f"\nx{scale}: PSNR (dB) on the held-out 40 % of each scene, sigma {SIGMA}, {SNR:g} dB"
        )
        print(f"{'scene':<20}" + "".join(f"{m:>16}" for m in methods) + f"{'gain':>10}")
        for name, row in figures.items():
            gain = row.get("gain_over_bicubic", {}).get("cnn-sensor", float("nan"))
            print(
                f"{name:<20}"
                + "".join(f"{row.get(m, float('nan')):>16.3f}" for m in methods)
                + f"{gain:>+10.3f}"
            )


if __name__ == "__main__":
    main()
