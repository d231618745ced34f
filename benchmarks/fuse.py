"""Multi-frame super-resolution benchmark: quality over unknown blurs, clouds, speed.

Run from the repository root (the scenes are read from ``../shared/data`` or ``$DASKSR_DATA``)::

    nice -n 10 python benchmarks/fuse.py --crop 256   # the table into docs/fuse.md, docs/fuse_psnr.png
    python benchmarks/fuse.py --quick                 # 128^2 crops of two scenes: printed

No inverse crime: stacks are simulated with :func:`dasksr.simulate_stack` from the shared native
scenes (the Sentinel-2 L1C 10 m bands B02, B03, B04, B08 and the Landsat 8 15 m panchromatic band
B8, at the sensors' own pixel sizes) and the aerial tile (its BT.601 luminance), each in turn with
a Gaussian PSF of 0.3, 0.5 and 0.7 LR pixels that ``fuse`` is not told: it runs with its defaults
(``psf_sigma=None`` estimates the width from the stack, ``fallback='auto'`` is ``cnn-sensor``).
8 frames, x2, shifts uniform in +-1 LR pixel (frame 0, the reference, unshifted: the scene is the
ground truth on its fine grid), 40 dB SNR. The crops come from the scenes' held-out rows
(``dasksr.scenes.test_rows``: the rows no shipped network trained on), stretched to [0, 1] by
their 0.1 and 99.9 percentiles, so PSNR is against a peak of 1, taken with ``8 * scale`` fine
pixels cropped from each border. Baselines: bicubic of the reference frame, ``cnn-sensor`` of the
reference frame (the single-image result that ``fuse`` falls back to), and bicubic of the mean of
the registered frames (the PROBA-V baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import dasksr
from dasksr import scenes
from dasksr.data import require_path
from dasksr.kernels import fuse as K
from dasksr.sensor import textured_scene

SCENES = {
    **{f"S2 {b}": scenes.SENTINEL2_NATIVE[b] for b in ("B02", "B03", "B04", "B08")},
    "L8 pan": scenes.LANDSAT8_NATIVE["B8"],
    "aerial": scenes.AERIAL,
}
#: The true PSF widths (LR pixels) of the simulated stacks; ``fuse`` is not told them.
SIGMAS = (0.3, 0.5, 0.7)
FRAMES, SCALE, SNR, MAX_SHIFT = 8, 2, 40.0, 1.0
#: The markers between which the table goes in docs/fuse.md.
START, END = "<!-- benchmarks/fuse.py: start -->", "<!-- benchmarks/fuse.py: end -->"


def load_scene(name: str, crop: int | None = None) -> np.ndarray:
    """The scene's held-out rows as float32 in [0, 1] (0.1/99.9 percentiles), a central ``crop``
    of them when given."""
    import rasterio

    with rasterio.open(require_path(*SCENES[name])) as src:
        pixels = src.read().astype(np.float64)
    image = dasksr.rgb2y(pixels, quantize=False) if pixels.shape[0] == 3 else pixels[0]
    image = image[scenes.test_rows(image.shape[0])]
    if crop:
        cy, cx = (n // 2 for n in image.shape)
        half = min(crop, *image.shape) // 2
        image = image[cy - half : cy + half, cx - half : cx + half]
    low, high = np.percentile(image, [0.1, 99.9])
    return ((image - low) / (high - low)).astype(np.float32)


def scores(estimate: np.ndarray, truth: np.ndarray, scale: int) -> tuple[float, float]:
    c = 8 * scale
    inner = (slice(c, -c), slice(c, -c))
    e, t = estimate[inner].astype(np.float64), truth[inner].astype(np.float64)
    return float(dasksr.psnr(e, t, data_range=1.0)), float(dasksr.ssim(e, t, data_range=1.0))


def quality(
    name: str, hr: np.ndarray, sigma: float, *, n: int = FRAMES, scale: int = SCALE, seed: int = 0
) -> dict[str, Any]:
    """PSNR/SSIM of ``fuse`` (defaults) and the baselines on one stack simulated with a PSF of
    ``sigma``; the PSF width ``fuse`` estimated, its iterations, registration error, times."""
    hr = dasksr.mod_crop(hr, scale)
    frames, shifts, _ = dasksr.simulate_stack(
        hr, n, scale, sigma=sigma, snr=SNR, max_shift=MAX_SHIFT, seed=seed
    )
    pixels = frames.values
    row: dict[str, Any] = {"scene": name, "sigma": sigma, "n": n, "scale": scale}
    start = time.perf_counter()
    result = dasksr.fuse(frames, scale)
    row["fuse_s"] = time.perf_counter() - start
    attrs = result.attrs
    row["iterations"] = attrs["fuse_iterations"]
    row["psf"] = attrs["fuse_psf_sigma"]
    estimated = np.column_stack([attrs["fuse_shift_y"], attrs["fuse_shift_x"]])
    row["fuse"] = scores(result.values, hr, scale)
    registered = [K.cubic_shift(pixels[k], -dy, -dx) for k, (dy, dx) in enumerate(estimated)]
    mean = dasksr.upscale(np.mean(registered, axis=0).astype(np.float32), scale=scale)
    row["mean"] = scores(mean, hr, scale)
    for key, method in (("bicubic", "bicubic"), ("cnn", "cnn-sensor")):
        row[key] = scores(dasksr.upscale(pixels[0], scale=scale, method=method), hr, scale)
    row["rms_refined"] = float(np.sqrt(np.mean((estimated[1:] - shifts[1:]) ** 2)))
    row["out_mpix"] = result.size / 1e6
    return row


def markdown(rows: list[dict[str, Any]], timings: list[tuple[str, float, float]] | None) -> str:
    head = (
        "| scene | true sigma | est. sigma | it. | fuse | bicubic ref | cnn-sensor ref "
        "| bicubic mean | fuse - bicubic | fuse - cnn-sensor | reg. RMS (LR px) |"
    )
    lines = [
        f"PSNR dB / SSIM, {FRAMES} frames at x{SCALE}, {SNR:g} dB, shifts +-{MAX_SHIFT:g} LR px "
        "(peak 1 after the 0.1-99.9 % stretch; 8 * scale border pixels cropped).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        cells = [r["scene"], f"{r['sigma']:.1f}", f"{r['psf']:.2f}", str(r["iterations"])]
        cells += [f"{r[k][0]:.2f} / {r[k][1]:.4f}" for k in ("fuse", "bicubic", "cnn", "mean")]
        cells += [f"{r['fuse'][0] - r['bicubic'][0]:+.2f}", f"{r['fuse'][0] - r['cnn'][0]:+.2f}"]
        cells.append(f"{r['rms_refined']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean over the true sigmas, and the worst sigma against cnn-sensor:",
        "",
        "| scene | fuse - bicubic | fuse - cnn-sensor | worst fuse - cnn-sensor |",
        "|---|---|---|---|",
    ]
    for scene in dict.fromkeys(r["scene"] for r in rows):
        sub = [r for r in rows if r["scene"] == scene]
        over_bicubic = np.mean([r["fuse"][0] - r["bicubic"][0] for r in sub])
        over_cnn = [r["fuse"][0] - r["cnn"][0] for r in sub]
        lines.append(
            f"| {scene} | {over_bicubic:+.2f} | {np.mean(over_cnn):+.2f} | {min(over_cnn):+.2f} |"
        )
    seconds = np.mean([r["fuse_s"] / r["out_mpix"] for r in rows])
    lines += ["", f"fuse: {seconds:.1f} s per output MPix (in memory, registration included)."]
    if timings:
        lines += ["", *_speed_lines(timings)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def on_cores(count: int) -> Iterator[None]:
    """Run the body on ``count`` of this process's cores (Linux; elsewhere on all of them).

    Dask's threads, the BLAS and the eager steps are held to the thread count by their own
    settings, but onnxruntime (the ``cnn-sensor`` prior) sizes its calls by the cores it may use:
    without this, a "one thread" run still ran the network on every core. The mask is set on the
    calling thread, and the threads started in the body (dask's pool for this thread count, the
    eager steps' pool) inherit it.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cores)[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def speed(size: int, frames: int, chunk: int, runs: int) -> list[tuple[str, float, float]]:
    """``fuse`` of ``frames`` frames of ``size``^2 at x2: one chunk vs ``chunk``^2 chunks, 1 vs 2
    threads, the median of ``runs`` runs each. Registration is included in every time (it runs
    when the graph is built); every run holds dask, the eager steps and the BLAS to its threads,
    and the whole process to as many cores (`on_cores`)."""
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
            on_cores(threads),
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

    fig, ax = plt.subplots(figsize=(6, 4))
    for scene in dict.fromkeys(r["scene"] for r in rows):
        sub = sorted((r for r in rows if r["scene"] == scene), key=lambda r: r["sigma"])
        sigmas = [r["sigma"] for r in sub]
        line = ax.plot(sigmas, [r["fuse"][0] - r["bicubic"][0] for r in sub], "o-", label=scene)
        ax.plot(
            sigmas, [r["cnn"][0] - r["bicubic"][0] for r in sub], "x:", color=line[0].get_color()
        )
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("true PSF sigma (LR px), not told to fuse")
    ax.set_ylabel("PSNR gain over bicubic of the reference (dB)")
    ax.set_title(f"{FRAMES} frames, x{SCALE}: fuse (solid), cnn-sensor of the reference (dotted)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="128^2 crops of S2 B04 and aerial")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES))
    parser.add_argument("--crop", type=int, default=256, help="HR crop edge (default 256)")
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
    names, crop = (["S2 B04", "aerial"], 128) if args.quick else (args.scenes, args.crop)
    rows = []
    for name in names:
        hr = load_scene(name, crop)
        for seed, sigma in enumerate(SIGMAS):
            row = quality(name, hr, sigma, seed=seed)
            rows.append(row)
            print(
                f"{name} sigma {sigma}: fuse {row['fuse'][0]:.2f} dB (est. sigma {row['psf']:.2f}, "
                f"{row['iterations']} it.), bicubic {row['bicubic'][0]:.2f}, "
                f"cnn-sensor {row['cnn'][0]:.2f}",
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
