"""Sensor-degradation quality on the held-out rows of the shared scenes (issue 9, ``cnn-sensor``).

What ``benchmarks/sensor_eval.py`` prints and ``training/export.py`` records for the sensor model.
Each scene's held-out rows (`dasksr.scenes.test_rows`: training sees only the others) are the
ground truth. Its low-resolution input is ``dasksr.degrade_sensor(truth, scale, sigma=SIGMA,
snr=SNR)`` in the scene's dtype; every method upscales it through ``dasksr.upscale`` and the PSNR
(`dasksr.psnr`) is measured over the valid pixels (the 0-fill excluded with the PSF's reach), with
``scale`` pixels cropped from each border and the peak = the truth's largest valid value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from dasksr.api import upscale
from dasksr.artefacts import new_extrema
from dasksr.consistency import Degradation, method_degradation, residual
from dasksr.degrade import degrade_sensor, mod_crop
from dasksr.methods import get_method, list_methods
from dasksr.metrics import psnr
from dasksr.scenes import SCENES, load_scene, native_scenes, zero_is_fill

__all__ = [
    "textured_scene",
    "SIGMA",
    "SNR",
    "TRANSFER_SEEDS",
    "apply_linear",
    "degraded",
    "fidelity",
    "fit_linear",
    "linear_bound",
    "linear_transfer",
    "scene_figures",
    "scene_psnr",
    "valid_mask",
]

#: The evaluation's PSF (LR pixels) and SNR (dB).
SIGMA, SNR = 0.5, 40.0


def textured_scene(size: int = 128, seed: int = 0, level: float = 1000.0) -> np.ndarray:
    """A synthetic textured scene: smooth random fields at several scales, in DN around ``level``
    (the scene of ``tests/test_fuse.py`` and of ``benchmarks/fuse.py --clouds``)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size))
    for sigma, amplitude in ((12, 300), (4, 150), (1.5, 80)):
        out += (
            amplitude
            * ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
            * sigma
        )
    return level + out


def valid_mask(truth: np.ndarray, scale: int) -> np.ndarray:
    """The pixels scored: all but the scene's 0-fill (`dasksr.scenes.zero_is_fill`), widened by
    the PSF's reach."""
    fill = truth == 0 if zero_is_fill(truth.dtype, None) else np.zeros(truth.shape, bool)
    reach = math.ceil(4 * SIGMA * scale) + scale
    return ~ndimage.binary_dilation(fill, np.ones((1, 2 * reach + 1, 2 * reach + 1), bool))


def degraded(truth: np.ndarray, scale: int, seed: int = 0) -> np.ndarray:
    """The evaluation's low-resolution input, in the truth's dtype."""
    small = degrade_sensor(truth.astype(np.float64), scale, sigma=SIGMA, snr=SNR, seed=seed)
    info = np.iinfo(truth.dtype)
    return np.clip(np.rint(small), info.min, info.max).astype(truth.dtype)


def scene_psnr(truth: np.ndarray, estimate: np.ndarray, mask: np.ndarray, crop: int) -> float:
    """PSNR over the pixels of ``mask``, ``crop`` pixels cropped from each border, against the
    largest valid value of the truth."""
    inner = (..., slice(crop, -crop), slice(crop, -crop))
    peak = float(truth[inner][mask[inner]].max())
    return psnr(truth, estimate, crop=crop, data_range=peak, mask=mask)


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
    top = mod_crop(load_scene(name, "train"), scale)
    mask = valid_mask(top, scale)
    examples = [(top, degraded(top, scale, seed), mask) for seed in TRANSFER_SEEDS]
    return apply_linear(fit_linear(examples, scale, radius), small, scale)


def fidelity(
    restored: np.ndarray, small: np.ndarray, mask: np.ndarray, scale: int, method: str
) -> dict[str, float]:
    """How faithful ``restored`` (of ``small``) is where ``mask`` (fine grid) holds, ``scale``
    pixels cropped from each border: the RMS of ``small - degrade(restored)`` with the method's
    own model (``consistency``, `dasksr.consistency.method_degradation`) and with the
    evaluation's (``consistency_sensor``, Gaussian PSF `SIGMA`), and the share of new extrema
    (``new_extrema``, `dasksr.artefacts.new_extrema`) beyond the noise level of the `SNR`; both
    on the pixels whose method's halo and model's reach hold no invalid pixel (the 0-fill)."""
    coarse_ok = mask.reshape(*mask.shape[:-2], mask.shape[-2] // scale, scale, -1, scale)
    reach = get_method(method).halo(scale) + 3
    coarse_ok = ndimage.binary_erosion(
        coarse_ok.all(axis=(-3, -1)),
        np.ones((1, 2 * reach + 1, 2 * reach + 1), bool),
        border_value=1,  # the image's own edges are padded as every method pads them
    )
    mask = mask & np.repeat(np.repeat(coarse_ok, scale, axis=-2), scale, axis=-1)
    crop = (..., slice(1, -1), slice(1, -1))
    out = {}
    for key, model in (
        ("consistency", method_degradation(method, scale)),
        ("consistency_sensor", Degradation("gaussian", SIGMA)),
    ):
        psf = model.psf(scale)
        found = residual(restored, small, scale, [(psf, psf)])[crop][coarse_ok[crop]]
        out[key] = float(np.sqrt(np.mean(found**2)))
    noise = np.sqrt(
        np.mean(small.astype(np.float64) ** 2, axis=(-2, -1), keepdims=True) / 10 ** (SNR / 10)
    )
    inner = np.zeros(mask.shape, bool)
    inner[..., scale:-scale, scale:-scale] = True
    out["new_extrema"] = new_extrema(restored, small, scale, noise=noise, mask=mask & inner)
    return out


def scene_figures(
    scale: int,
    methods: tuple[str, ...] = ("cnn-sensor", "cnn-sensor-bounded", "cnn", "lanczos", "bicubic"),
    bound: bool = False,
    transfer: bool = False,
    faithful: bool = False,
    native: bool = False,
) -> dict:
    """PSNR of each method on each scene (`SCENES`, or with ``native`` the native-resolution
    scenes of `native_scenes`), and the gain of each over bicubic; ``bound`` and ``transfer`` add
    `linear_bound` and `linear_transfer`; ``faithful`` adds each method's `fidelity` figures
    under ``'fidelity'``, and the truth's (as if a method had returned it, with bicubic's models
    and halo) under ``'truth'`` there."""
    known = {m.name for m in list_methods()}
    out: dict = {}
    for name in native_scenes() if native else SCENES:
        truth = mod_crop(load_scene(name), scale)
        mask = valid_mask(truth, scale)
        small = degraded(truth, scale)
        row: dict[str, Any] = {}
        for method in methods:
            if method not in known or scale not in get_method(method).scales:
                continue
            restored = upscale(small, scale=scale, method=method)
            row[method] = round(scene_psnr(truth, restored, mask, scale), 3)
            if faithful:
                row.setdefault("fidelity", {})[method] = fidelity(
                    restored, small, mask, scale, method
                )
        if faithful:
            # The truth's own figures: what a perfect reconstruction scores (its new extrema are
            # real detail that the blurred, noisy input does not hold).
            row.setdefault("fidelity", {})["truth"] = fidelity(truth, small, mask, scale, "bicubic")
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
                m: round(v - row["bicubic"], 3)
                for m, v in row.items()
                if m not in ("bicubic", "fidelity")
            }
        out[name] = row
    return out
