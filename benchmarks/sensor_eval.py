#!/usr/bin/env python
"""Sensor-degradation quality on the held-out part of the shared scenes (issue 9, `cnn-sensor`).

Each scene's bottom 40 % of rows (training used only the top 60 %: ``dasksr.scenes.test_rows``) is
the ground truth. Its low-resolution input is ``dasksr.degrade_sensor(truth, scale, sigma=0.5,
snr=40)`` in the scene's dtype; every method upscales it through ``dasksr.upscale`` and the PSNR
is measured over the valid pixels (0-fill of the Landsat scene excluded with the PSF's reach), with
``scale`` pixels cropped from each border and the peak = the truth's largest valid value. The
evaluation itself is ``dasksr.sensor`` (``training/export.py`` records its figures too).

    python benchmarks/sensor_eval.py --scales 2 4
    python benchmarks/sensor_eval.py --linear-bound   # and the best linear filter, fitted on the truth
    python benchmarks/sensor_eval.py --linear-transfer   # and that filter fitted on the training rows
"""

from __future__ import annotations

import argparse

from dasksr.sensor import SIGMA, SNR, scene_figures


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
