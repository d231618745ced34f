#!/usr/bin/env python
"""Fixed costs of dasksr against gdalwarp, process start included (issue 11, "Start fast").

Run from the repository root::

    python benchmarks/startup.py                   # every part, 7 runs each (the 4096 scene: 3)
    python benchmarks/startup.py --quick           # 3 runs, the scene at 1024: a smoke test
    python benchmarks/startup.py --parts import,help,small
    python benchmarks/startup.py --out docs/startup-run.md

Parts, each a Markdown table of medians over runs interleaved round-robin after one untimed
warm-up (so a noisy machine slows every candidate alike):

- ``import``: ``python -c 'import dasksr'`` (target <= 0.4 s), against ``python -c pass``.
- ``help``: the ``dasksr --help`` console script (target <= 0.4 s).
- ``small``: ``dasksr upscale`` of a 64 x 64 x 3 uint16 GeoTIFF at x2 bicubic (target <= 1.0 s),
  against ``gdalwarp -r cubic`` on the same file.
- ``rule``: the rule for small jobs. ``dasksr upscale --scheduler threads`` (Dask's threaded
  scheduler in the process) against ``--workers 1`` (an embedded LocalCluster) for a few scene
  sizes: where the cluster's start stops costing more than it gives.
- ``scene``: the 4096 x 4096 x 3 uint16 GeoTIFF at x2 bicubic to Zarr and to GeoTIFF against
  gdalwarp, on each scene (targets, on the real-texture scene: >= 3x gdalwarp's throughput to
  Zarr, >= 1.5x to GeoTIFF).

The scenes and the gdalwarp command line are those of ``benchmarks/speed.py``: ``--scene real``
(the native Sentinel-2 bands B04, B03, B02 of the shared data, mirrored to size),
``synthetic`` (``dasksr.demo.make_scene``) or ``both`` (real first, the default). The small and
rule parts run on the first scene chosen, the scene part on each. A last table judges the
measured targets as ``speed.py`` does (``speed.targets``). Without the shared data the script
stops at once with a one-line error, unless only ``--scene synthetic`` or the import and help
parts are asked for.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

# The sibling benchmark: `python benchmarks/startup.py` puts its folder first on sys.path.
import speed  # the sibling benchmark: scenes, the gdalwarp command line, medians

PARTS = ("import", "help", "small", "rule", "scene")
_NO_GDALWARP = {"gdalwarp": "not installed (apt-get install gdal-bin): no ratio"}
TARGETS = {"import dasksr": 0.4, "dasksr --help": 0.4, "dasksr upscale 64 x 64": 1.0}


def _console_script() -> list[str]:
    """The installed ``dasksr`` script beside this interpreter (as a user runs it)."""
    script = Path(sys.executable).parent / "dasksr"
    if script.exists():
        return [str(script)]
    return [shutil.which("dasksr") or "dasksr"]


def _command(argv: list[str]) -> Callable[[], None]:
    env = speed.job_environment()

    def call() -> None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-400:]}")

    return call


def _upscale(src: Path, dst: Path, *extra: str) -> list[str]:
    scale = str(speed.SCALE)
    options = ["--scale", scale, "--method", "bicubic", "--no-progress", "--overwrite", *extra]
    return [*_console_script(), "upscale", str(src), str(dst), *options]


def _gdalwarp(src: Path, dst: Path, size: int) -> dict[str, Callable[[], None]]:
    """gdalwarp's candidate when it is installed (none otherwise: the table says so)."""
    if shutil.which("gdalwarp") is None:
        return {}
    return {f"gdalwarp -r cubic {size} x {size}": _command(speed._gdalwarp(src, dst, size))}


def _table(title: str, times: dict[str, list[float]], extra: dict[str, str] | None = None) -> str:
    lines = [
        f"### {title}",
        "",
        "| candidate | median s | runs (s) | target |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = speed._median(values)
        target = TARGETS.get(name)
        verdict = (
            "-" if target is None else f"<= {target} ({'met' if median <= target else 'missed'})"
        )
        runs = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {median:.3f} | {runs} | {verdict} |")
    for key, value in (extra or {}).items():
        lines.append(f"| {key} | {value} | | |")
    return "\n".join(lines) + "\n"


def part_import(runs: int) -> str:
    py = sys.executable
    times = speed._interleaved(
        {
            "python -c pass": _command([py, "-c", "pass"]),
            "import dasksr": _command([py, "-c", "import dasksr"]),
            "import dasksr, xarray": _command([py, "-c", "import dasksr, xarray"]),
        },
        runs,
    )
    return _table("import", times)


def part_help(runs: int) -> str:
    times = speed._interleaved({"dasksr --help": _command([*_console_script(), "--help"])}, runs)
    return _table("--help", times)


def part_small(runs: int, work: Path, scene: str) -> tuple[str, dict[str, float]]:
    src = speed.make_input(speed.scene_file(work, scene, 64), 64, scene=scene)
    times = speed._interleaved(
        {
            "dasksr upscale 64 x 64": _command(_upscale(src, work / "small64_x2.tif")),
            "dasksr upscale 64 x 64 --workers 1": _command(
                _upscale(src, work / "small64_w1.tif", "--workers", "1")
            ),
            **_gdalwarp(src, work / "small64_gw.tif", 64),
        },
        runs,
    )
    extra = {} if shutil.which("gdalwarp") else _NO_GDALWARP
    title = f"a 64 x 64 x 3 job ({speed.SCENE_NAMES[scene]} scene), x2 bicubic to GeoTIFF"
    values = {"small dasksr s": speed._median(times["dasksr upscale 64 x 64"])}
    return _table(title, times, extra), values


def part_rule(runs: int, work: Path, sizes: Sequence[int], scene: str) -> str:
    lines = [
        "### threaded scheduler in the process against an embedded LocalCluster (to Zarr, "
        f"{speed.SCENE_NAMES[scene]} scene)",
        "",
        "| input edge | output pixels | --scheduler threads s | --workers 1 s | faster |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        src = speed.make_input(speed.scene_file(work, scene, size), size, scene=scene)
        times = speed._interleaved(
            {
                "threads": _command(_upscale(src, work / "rule.zarr", "--scheduler", "threads")),
                "cluster": _command(_upscale(src, work / "rule.zarr", "--workers", "1")),
            },
            runs,
        )
        threads, cluster = speed._median(times["threads"]), speed._median(times["cluster"])
        pixels = 3 * (size * speed.SCALE) ** 2
        faster = "threads" if threads <= cluster else "cluster"
        lines.append(f"| {size} | {pixels:,} | {threads:.2f} | {cluster:.2f} | {faster} |")
    return "\n".join(lines) + "\n"


#: The scene part's dasksr candidates: their keys in `speed.JOBS` and the issue's targets.
SCENE_JOBS = {"dasksr to Zarr": ("dasksr-zarr", 3.0), "dasksr to GeoTIFF": ("dasksr-tif", 1.5)}


def part_scene(runs: int, work: Path, size: int, scene: str) -> tuple[str, dict[str, float]]:
    """The ``size`` scene to Zarr and to GeoTIFF against gdalwarp; ratios judged on the real one."""
    src = speed.make_input(speed.scene_file(work, scene, size), size, scene=scene)
    warp = f"gdalwarp -r cubic {size} x {size}"
    candidates = {
        "dasksr to Zarr": _command(_upscale(src, work / "scene_x2.zarr")),
        "dasksr to GeoTIFF": _command(_upscale(src, work / "scene_x2.tif")),
        **_gdalwarp(src, work / "scene_gw.tif", size),
    }
    times = speed._interleaved(candidates, runs)
    pixels = 3 * (size * speed.SCALE) ** 2
    values = {f"e2e {scene} size": float(size)}
    if warp in times:
        values[f"e2e {scene} gdalwarp s"] = speed._median(times[warp])
    extra = {} if warp in times else dict(_NO_GDALWARP)
    for name, (key, target) in SCENE_JOBS.items():
        median = speed._median(times[name])
        values[f"e2e {scene} {key} s"] = median
        line = f"{pixels / median / 1e6:.1f} MPix/s"
        if warp in times:
            ratio = values[f"e2e {scene} gdalwarp s"] / median
            if scene == "real":
                line += f", {ratio:.2f}x (target >= {target}x: "
                line += f"{'met' if ratio >= target else 'missed'})"
            else:
                line += f", {ratio:.2f}x (not judged: the targets are the real-texture scene's)"
        extra[f"{name}: output MPix/s, x gdalwarp"] = line
    title = f"a {size} x {size} x 3 uint16 GeoTIFF ({speed.SCENE_NAMES[scene]} scene), x2 bicubic"
    return _table(title, times, extra), values


def run(args: argparse.Namespace) -> str:
    quick = args.quick
    runs = args.runs or (3 if quick else 7)
    parts = args.parts
    header = [
        "## dasksr startup benchmark",
        "",
        f"`python benchmarks/startup.py {' '.join(args.argv)}`".replace(" `", "`"),
        "",
        f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"medians of {runs} runs after one warm-up, every candidate a new process"
        + (
            " (without PYTHONDONTWRITEBYTECODE, which is set here: see speed.job_environment)."
            if "PYTHONDONTWRITEBYTECODE" in os.environ
            else "."
        ),
        "",
    ]
    if "real" in args.scenes and {"small", "rule", "scene"} & set(parts):
        speed.require_real_bands()  # before anything runs
    sections, values = [], {}
    first = args.scenes[0]  # the scene of the small and rule parts
    with tempfile.TemporaryDirectory(prefix="dasksr-startup-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "import" in parts:
            sections.append(part_import(runs))
        if "help" in parts:
            sections.append(part_help(runs))
        if "small" in parts:
            text, found = part_small(runs, work, first)
            sections.append(text)
            values.update(found)
        if "rule" in parts:
            sizes = args.rule_sizes or ((256, 512) if quick else (512, 1024, 2048, 4096))
            sections.append(part_rule(min(runs, 3), work, sizes, first))
        if "scene" in parts:
            size = args.size or (1024 if quick else 4096)
            for scene in args.scenes:
                text, found = part_scene(min(runs, 3), work, size, scene)
                sections.append(text)
                values.update(found)
        if values:
            sections.append(speed.targets(values, measured_only=True).markdown())
        text = "\n".join(header + sections)
    print(text)
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 runs, small scenes: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per candidate (default 7)")
    parser.add_argument(
        "--parts",
        type=lambda text: [p for p in text.split(",") if p],
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="edge of the scene part (default 4096)"
    )
    parser.add_argument(
        "--rule-sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=None,
        help="scene edges of the rule part (default 512,1024,2048,4096; 256,512 with --quick)",
    )
    parser.add_argument(
        "--scene",
        choices=(*speed.SCENES, "both"),
        default="both",
        help="the scene part's scenes: the native Sentinel-2 bands mirrored to size (real), "
        "dasksr.demo.make_scene (synthetic) or both, real first (default); the small and rule "
        "parts run on the first",
    )
    parser.add_argument("--workdir", default=None, help="keep the inputs here between runs")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}: choose among {','.join(PARTS)}")
    args.scenes = list(speed.SCENES) if args.scene == "both" else [args.scene]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        text = run(args)
    except speed.SceneDataMissing as exc:
        print(f"startup.py: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
