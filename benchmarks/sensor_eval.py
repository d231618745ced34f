#!/usr/bin/env python
"""Sensor-degradation quality (`cnn-sensor` and its peers) on the held-out part of shared scenes.

The scenes are the native-resolution ones (``dasksr.scenes.native_scenes``: Sentinel-2 L1C 18SVG
B02, B03, B04, B08 and B8A, Landsat 8 B8 pan), which no shipped model read, or with ``--scenes
decimated`` the decimated overviews the sensor models were first judged on (and trained on, top
60 %). Each scene's bottom 40 % of rows (training used only the top 60 %: ``dasksr.scenes.test_rows``) is
the ground truth. Its low-resolution input is ``dasksr.degrade_sensor(truth, scale, sigma=0.5,
snr=40)`` in the scene's dtype; every method upscales it through ``dasksr.upscale`` and the PSNR
is measured over the valid pixels (0-fill of the Landsat scene excluded with the PSF's reach), with
``scale`` pixels cropped from each border and the peak = the truth's largest valid value. The
evaluation itself is ``dasksr.sensor`` (``training/export.py`` records its figures too).

A second table per scale gives each method's fidelity (``dasksr.sensor.fidelity``): the RMS in DN
of ``input - degrade(output)`` with the method's own degradation model
(``dasksr.consistency.method_degradation``: area mean for interpolation, the record's for a learned
model) and with the evaluation's (Gaussian PSF sigma 0.5), and the share of output pixels beyond
the min/max of their 4 x 4 input neighbourhood by more than the noise level
(``dasksr.artefacts.new_extrema``), also as a multiple of bicubic's (target: at most 1.5x). The
row ``truth`` scores the ground truth itself as if a method had returned it: its new extrema are
real detail that the degraded input no longer holds. ``cnn-sensor-bounded`` is ``cnn-sensor``
held within those 4 x 4 bounds (no new extrema by construction).

    python benchmarks/sensor_eval.py --scales 2 4               # the native scenes
    python benchmarks/sensor_eval.py --scenes decimated         # the decimated overviews
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
    ap.add_argument(
        "--scenes",
        choices=("native", "decimated"),
        default="native",
        help="the native-resolution Sentinel-2 and Landsat 8 scenes (default), or the decimated "
        "overviews the sensor models were first judged on",
    )
    args = ap.parse_args()
    for scale in args.scales:
        figures = scene_figures(
            scale,
            bound=args.linear_bound,
            transfer=args.linear_transfer,
            faithful=True,
            native=args.scenes == "native",
        )
        methods = [
            m
            for m in (
                "cnn-sensor",
                "cnn-sensor-bounded",
                "cnn",
                "lanczos",
                "bicubic",
                "linear bound",
                "linear transfer",
            )
            if any(m in row for row in figures.values())
        ]
        print(
            f"\nx{scale}: PSNR (dB) on the held-out 40 % of each scene, sigma {SIGMA}, {SNR:g} dB"
        )
        print(f"{'scene':<26}" + "".join(f"{m:>20}" for m in methods) + f"{'gain':>10}")
        for name, row in figures.items():
            gain = row.get("gain_over_bicubic", {}).get("cnn-sensor", float("nan"))
            print(
                f"{name:<26}"
                + "".join(f"{row.get(m, float('nan')):>20.3f}" for m in methods)
                + f"{gain:>+10.3f}"
            )
        _fidelity_table(scale, figures)


def _fidelity_table(scale: int, figures: dict) -> None:
    print(
        f"\nx{scale}: fidelity: RMS of input - degrade(output) in DN (own model / sigma {SIGMA}), "
        "new extrema % (x bicubic's)"
    )
    for name, row in figures.items():
        faithful = row.get("fidelity", {})
        reference = faithful.get("bicubic", {}).get("new_extrema", float("nan"))
        for method, f in faithful.items():
            share = f["new_extrema"]
            print(
                f"{name:<26}{method:<20}{f['consistency']:>10.2f} /{f['consistency_sensor']:>8.2f}"
                f"{100 * share:>10.3f} % ({share / reference if reference else float('nan'):.2f}x)"
            )


if __name__ == "__main__":
    main()
