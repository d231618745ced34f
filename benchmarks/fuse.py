#!/usr/bin/env python
"""Multi-frame super-resolution benchmark (issue 10): quality against N, registration, speed.

Run from the repository root (the scenes are read from ``../shared/data`` or ``$DASKSR_DATA``)::

    nice -n 10 python benchmarks/fuse.py    # the table into docs/fuse.md, docs/fuse_psnr.png
    python benchmarks/fuse.py --quick       # 128^2 crops, N = 1, 2, 4, x2, no speed: printed

Stacks are simulated with :func:`dasksr.simulate_stack` from the shared scenes (the Sentinel-2
10 m-class bands B02, B03, B04, B08, the Landsat 8 panchromatic band B8, the aerial image's
luminance): Gaussian PSF of 0.5 LR pixels, shifts uniform in +-1 LR pixel (frame 0 unshifted, so
the scene is the ground truth on its fine grid), 40 dB SNR. Every scene is scaled to [0, 1] (its
0.1 and 99.9 percentiles) first, so PSNR is against a peak of 1. PSNR and SSIM are taken with
``8 * scale`` fine pixels cropped from each border, for ``fuse`` and three baselines: (a) bicubic
of the reference frame, (b) bicubic of the mean of the registered frames (each resampled onto the
reference with the estimated shift, the PROBA-V baseline), (c) lanczos of the reference. N = 1 is
the same kernels on one frame (8 iterations of back-projection alone: ``dasksr.fuse`` itself
needs two frames, and one to leave out to choose the iterations). "it." is the number of
back-projection iterations that ``fuse`` chose.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import dasksr
from dasksr import scenes
from dasksr.data import require_path
from dasksr.kernels import fuse as K
from dasksr.multiframe import fuse_numpy
from dasksr.sensor import textured_scene

SCENES = {
    **{f"S2 {Path(parts[-1]).stem}": parts for parts in scenes.SENTINEL2},
    "L8 pan": scenes.LANDSAT8_PAN,
    "aerial": scenes.AERIAL,
}
FRAMES = (1, 2, 4, 8, 16)
SCALES = (2, 3)
SIGMA, SNR, MAX_SHIFT = 0.5, 40.0, 1.0
#: The markers between which the table goes in docs/fuse.md.
START, END = "<!-- benchmarks/fuse.py: start -->", "<!-- benchmarks/fuse.py: end -->"


def load_scene(name: str, crop: int | None = None) -> np.ndarray:
    """The scene as float32 in [0, 1] (0.1/99.9 percentiles), the Landsat fill cut away."""
    import rasterio

    with rasterio.open(require_path(*SCENES[name])) as src:
        pixels = src.read().astype(np.float64)
    image = dasksr.rgb2y(pixels, quantize=False) if pixels.shape[0] == 3 else pixels[0]
    if name == "L8 pan":  # the tilted scene has ~30 % zero fill at its edges: keep the inside
        image = image[scenes.LANDSAT8_PAN_INSIDE]
    if crop:
        cy, cx = (n // 2 for n in image.shape)
        image = image[cy - crop // 2 : cy + crop // 2, cx - crop // 2 : cx + crop // 2]
    low, high = np.percentile(image, [0.1, 99.9])
    return ((image - low) / (high - low)).astype(np.float32)


def scores(estimate: np.ndarray, truth: np.ndarray, scale: int) -> tuple[float, float]:
    c = 8 * scale
    inner = (slice(c, -c), slice(c, -c))
    e, t = estimate[inner].astype(np.float64), truth[inner].astype(np.float64)
    return float(dasksr.psnr(e, t, data_range=1.0)), float(dasksr.ssim(e, t, data_range=1.0))


def quality(name: str, hr: np.ndarray, n: int, scale: int, seed: int) -> dict[str, Any]:
    """PSNR/SSIM of fuse and the baselines on one simulated stack; registration errors; times."""
    hr = dasksr.mod_crop(hr, scale)
    frames, shifts, _ = dasksr.simulate_stack(
        hr, n, scale, sigma=SIGMA, snr=SNR, max_shift=MAX_SHIFT, seed=seed
    )
    pixels = frames.values
    row: dict[str, Any] = {"scene": name, "n": n, "scale": scale}
    start = time.perf_counter()
    if n == 1:
        params = K.FuseParams(
            scale=scale, shifts=((0.0, 0.0),), gains=((1.0,),), offsets=((0.0,),), noise=((1.0,),)
        )
        fused = fuse_numpy(pixels[:, None], None, params)[0]
        estimated = phase = np.zeros((1, 2))
        row["iterations"] = params.iterations
    else:
        result = dasksr.fuse(frames, scale)
        fused = result.values
        attrs = result.attrs
        row["iterations"] = attrs["fuse_iterations"]
        estimated = np.column_stack([attrs["fuse_shift_y"], attrs["fuse_shift_x"]])
        phase = np.column_stack([attrs["fuse_phase_shift_y"], attrs["fuse_phase_shift_x"]])
    row["fuse_s"] = time.perf_counter() - start
    registered = [K.cubic_shift(pixels[k], -dy, -dx) for k, (dy, dx) in enumerate(estimated)]
    mean = dasksr.upscale(
        np.mean(registered, axis=0).astype(np.float32), scale=scale, method="bicubic"
    )
    row["out_mpix"] = fused.size / 1e6
    row["fuse"] = scores(fused, hr, scale)
    row["b"] = scores(mean, hr, scale)
    row.update(_reference_baselines(name, pixels[0], hr, scale))
    if n > 1:
        row["rms_refined"] = float(np.sqrt(np.mean((estimated[1:] - shifts[1:]) ** 2)))
        row["rms_phase"] = float(np.sqrt(np.mean((phase[1:] - shifts[1:]) ** 2)))
    return row


_BASELINES: dict[tuple[str, int], dict[str, Any]] = {}


def _reference_baselines(
    name: str, reference: np.ndarray, hr: np.ndarray, scale: int
) -> dict[str, Any]:
    """(a) bicubic, (c) lanczos and cnn (when registered) of the reference frame, with times.

    The reference frame is the same for every N (same seed), so they are computed once."""
    key = (name, scale)
    if key not in _BASELINES:
        found: dict[str, Any] = {}
        methods = {"a": "bicubic", "c": "lanczos"}
        if "cnn" in [m.name for m in dasksr.list_methods()]:
            methods["cnn"] = "cnn"
        for label, method in methods.items():
            start = time.perf_counter()
            image = dasksr.upscale(reference, scale=scale, method=method)
            found[f"{method}_s"] = time.perf_counter() - start
            found[label] = scores(image, hr, scale)
        _BASELINES[key] = found
    return _BASELINES[key]


def speed(size: int, frames: int, chunk: int, runs: int) -> list[tuple[str, float, float]]:
    """``fuse`` of ``frames`` frames of ``size``^2 at x2: one chunk vs ``chunk``^2 chunks, 1 vs 2
    threads, the median of ``runs`` runs each. Registration is included in every time (it runs
    when the graph is built); every run holds dask, the eager steps and the BLAS to its threads."""
    import dask
    from threadpoolctl import threadpool_limits

    base = load_scene("S2 B04")
    reps = -(-2 * size // base.shape[0])
    mirrored = np.block([[base, base[:, ::-1]], [base[::-1], base[::-1, ::-1]]])
    hr = np.tile(mirrored, (reps, reps))[: 2 * size, : 2 * size]
    stack, _, _ = dasksr.simulate_stack(hr, frames, 2, snr=SNR, seed=1)

    def run(chunks: int, threads: int) -> None:
        lazy = stack.chunk({"time": -1, "y": chunks, "x": chunks})
        with (
            threadpool_limits(threads),
            dask.config.set(scheduler="threads", num_workers=threads),
        ):
            dasksr.fuse(lazy, 2).data.compute()

    out_mpix = (2 * size) ** 2 / 1e6
    results = []
    for label, chunks, threads in (
        ("whole scene (one chunk), 1 thread", size, 1),
        (f"{chunk}^2 chunks, 1 thread", chunk, 1),
        (f"{chunk}^2 chunks, 2 threads", chunk, 2),
    ):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(chunks, threads)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results.append((label, median, out_mpix / median))
        print(
            f"  {label}: {median:.1f} s (median of {runs}), {out_mpix / median:.2f} output MPix/s",
            flush=True,
        )
    return results


def clouds() -> list[str]:
    """The clouds criteria of issue 10 on the scene of ``tests/test_fuse.py``
    (`dasksr.sensor.textured_scene`): 3 frames at x2 and
    40 dB, unflagged clouds on 20 % of frames 1 and 2, at least 60 DN above the scene; the bias of
    the fused result, area-averaged back to the frame grid, against the clear frame."""
    hr = textured_scene(384, seed=11)
    frames, _, masks = dasksr.simulate_stack(
        hr, 3, 2, snr=40, clouds=0.2, cloud_brightness=60, seed=4
    )
    clear = dasksr.degrade_sensor(hr, 2, sigma=0.5)
    m = masks.values
    clouded, both = m[1] | m[2], m[1] & m[2]
    lines = [
        f"clouded pixels: {m[1].mean():.1%} and {m[2].mean():.1%} of frames 1 and 2, "
        f"both {both.mean():.1%}; plain mean bias where clouded "
        f"{(frames.values.mean(axis=0) - clear)[clouded].mean():+.2f} DN"
    ]
    for label, given in (("no masks", None), ("masks", masks)):
        out = dasksr.fuse(frames, 2, masks=given)
        ny, nx = out.shape
        back = out.values.reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3)) - clear
        lines.append(
            f"{label}: bias where clouded {back[clouded].mean():+.2f} DN, where both are "
            f"{back[both].mean():+.2f} DN, mean |error| {np.abs(back[clouded]).mean():.2f} DN "
            f"({out.attrs['fuse_iterations']} iterations)"
        )
    return lines


def markdown(rows: list[dict[str, Any]], timings: list[tuple[str, float, float]] | None) -> str:
    keys = ["fuse", "a", "b", "c"] + (["cnn"] if rows and "cnn" in rows[0] else [])
    head = "| scene | x | N | it. | fuse | (a) bicubic ref | (b) bicubic mean | (c) lanczos ref |"
    head += " cnn ref |" if "cnn" in keys else ""
    head += " fuse - (a) | fuse - (b) | reg. RMS phase / refined (LR px) |"
    lines = [
        "PSNR dB / SSIM (peak 1 after the 0.1-99.9 % stretch; 8 * scale border pixels cropped).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        cells = [r["scene"], str(r["scale"]), str(r["n"]), str(r["iterations"])]
        cells += [f"{r[k][0]:.2f} / {r[k][1]:.4f}" for k in keys]
        cells += [f"{r['fuse'][0] - r['a'][0]:+.2f}", f"{r['fuse'][0] - r['b'][0]:+.2f}"]
        cells.append(f"{r['rms_phase']:.4f} / {r['rms_refined']:.4f}" if "rms_phase" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runtime per output MPix (mean over the rows above, one thread each, in memory):",
        "",
    ]
    timed = ["fuse_s", "bicubic_s", "lanczos_s"] + (["cnn_s"] if "cnn" in keys else [])
    lines += ["| N | " + " | ".join(f"{k[:-2]} s/MPix" for k in timed) + " |"]
    lines += ["|---|" + "---|" * len(timed)]
    for n in sorted({r["n"] for r in rows}):
        sub = [r for r in rows if r["n"] == n]
        per = [np.mean([r[k] / r["out_mpix"] for r in sub]) for k in timed]
        lines.append(f"| {n} | " + " | ".join(f"{v:.4f}" for v in per) + " |")
    if timings:
        lines += ["", *_speed_lines(timings)]
    return "\n".join(lines) + "\n"


def _speed_lines(timings: list[tuple[str, float, float]]) -> list[str]:
    lines = ["| 8 frames at x2, output 4096^2 | s | output MPix/s |", "|---|---|---|"]
    lines += [f"| {label} | {t:.1f} | {rate:.2f} |" for label, t, rate in timings]
    whole, one, two = (t for _, t, _ in timings)
    return [
        *lines,
        "",
        f"Chunked / whole (1 thread each): {one / whole:.2f}x; "
        f"2 threads speed-up over 1: {one / two:.2f}x.",
    ]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["scale"] for r in rows})
    fig, axes = plt.subplots(1, len(scales), figsize=(6 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        for scene in dict.fromkeys(r["scene"] for r in rows):
            sub = sorted(
                (r for r in rows if r["scene"] == scene and r["scale"] == scale),
                key=lambda r: r["n"],
            )
            ns = [r["n"] for r in sub]
            line = ax.plot(ns, [r["fuse"][0] - r["a"][0] for r in sub], "o-", label=scene)
            ax.plot(ns, [r["b"][0] - r["a"][0] for r in sub], "x:", color=line[0].get_color())
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("frames N")
        ax.set_ylabel("PSNR gain over bicubic of the reference (dB)")
        ax.set_title(f"x{scale}: fuse (solid), bicubic of the mean (dotted)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--quick", action="store_true", help="128^2 crops, N = 1, 2, 4, x2, no speed"
    )
    parser.add_argument("--scenes", nargs="+", default=list(SCENES))
    parser.add_argument(
        "--out",
        default=None,
        help="folder of fuse.md (its table is replaced between the markers; else fuse_table.md "
        "is written) and fuse_psnr.png (default: docs; --quick writes nothing unless given)",
    )
    parser.add_argument("--speed-size", type=int, default=2048)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true", help="only the speed rows, printed")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per speed row (median)")
    parser.add_argument("--clouds", action="store_true", help="only the clouds criteria")
    args = parser.parse_args(argv)
    if args.clouds:
        print("\n".join(clouds()))
        return 0
    if args.speed_only:
        timings = speed(args.speed_size, 8, 1024, runs=args.runs)
        print("\n".join(_speed_lines(timings)))
        return 0
    frames, scales, crop = (FRAMES, SCALES, None) if not args.quick else ((1, 2, 4), (2,), 128)
    for method in ("bicubic", "lanczos"):  # compile the kernels before anything is timed
        dasksr.upscale(np.zeros((16, 16), np.float32), scale=2, method=method)
    rows = []
    for name in args.scenes:
        hr = load_scene(name, crop)
        for scale in scales:
            for n in frames:
                row = quality(name, hr, n, scale, seed=0)
                rows.append(row)
                print(
                    f"{name} x{scale} N={n}: fuse {row['fuse'][0]:.2f} dB, (a) {row['a'][0]:.2f}, "
                    f"(b) {row['b'][0]:.2f}, (c) {row['c'][0]:.2f}"
                    + (
                        f", reg RMS {row['rms_phase']:.4f}/{row['rms_refined']:.4f}"
                        if n > 1
                        else ""
                    ),
                    flush=True,
                )
    timings = None
    if not (args.quick or args.no_speed):
        timings = speed(args.speed_size, 8, 1024, runs=args.runs)
    table = markdown(rows, timings)
    print(table)
    out = Path(args.out) if args.out else (None if args.quick else Path("docs"))
    if out is None:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    page = out / "fuse.md"
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    if START in text and END in text:  # the docs page: its table between the markers
        before, rest = text.split(START, 1)
        page.write_text(before + START + "\n" + table + END + rest.split(END, 1)[1])
    else:
        (out / "fuse_table.md").write_text(table)
    plot(rows, out / "fuse_psnr.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
