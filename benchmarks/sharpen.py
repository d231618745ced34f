#!/usr/bin/env python
"""Guided reconstruction (``dasksr sharpen``): quality by Wald's protocol and QNR, and speed,
against bicubic, GDAL's weighted Brovey and s2super, in the same run, on the native scenes.

Quality (``--quality``):

- **Reduced resolution (Wald).** Each native product (Sentinel-2 L1C 18SVG: the 20 m bands from
  the 10 m ones at x2, B01 and B09 from the 10 m bands at x6; Landsat 8 L1T: B2-B5 from the pan at
  x2) is degraded by the ratio (`dasksr.scenes.wald_pair`): every band filtered by a Gaussian MTF
  and resampled, the guide at the coarse pixels' centres. The MTF widths are the published ones
  times a factor drawn per band from U(0.8, 1.25) (seeded): the methods are not handed the blur
  that made their inputs. The methods sharpen the reduced inputs; the original coarse bands are
  the reference. Figures are over the held-out rows (the bottom 40 % of each scene, which no
  training saw): RMSE (DN), SRE (dB), SAM (degrees), ERGAS and Q2^n (Q4 for four bands; Q8 with
  padding for six), per band and mean.
- **Full resolution.** QNR (1 - D_lambda) (1 - D_s) on the native products, held-out rows, with
  the guide degraded by its MTF as the coarse-scale reference of D_s.

Peers: bicubic upsampling of each coarse band (dasksr's ``upscale``, the same cubic convolution),
GDAL's weighted Brovey (``gdal_translate`` of the pansharpened VRT that ``gdal_pansharpen.py``
writes; for Sentinel-2 its pan is the mean of the 10 m bands) and s2super (in its own
environment, see ``sharpen_peers.py``) where they apply. All methods get grids whose origins
coincide (GDAL 3.6 ignores sub-pixel offsets between pan and MS: ``sharpen_peers.py``).

Speed (``--speed``): the whole native Sentinel-2 scene, its six 20 m bands to 10 m, process start
included, median of ``--repeats`` runs: ``dasksr sharpen`` (glp and cnn-s2) against GDAL's Brovey
(B08 as pan), both on every core; output MPix/s. The network's arithmetic rate (multiply-adds per
second in the network alone) is compared with NumPy's float32 matrix product on the same cores.

Example::

    python benchmarks/sharpen.py --quality --speed --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

# A sibling module: `python benchmarks/sharpen.py` imports from its own folder.
from sharpen_peers import gdal_brovey, run_s2super, s2super_status

import dasksr
from dasksr import metrics
from dasksr.kernels.sharpen import mtf_sigma
from dasksr.scenes import (
    LANDSAT8_NATIVE,
    SENTINEL2_MTF,
    SENTINEL2_NATIVE,
    read_bands,
    split_row,
    wald_pair,
)

S2_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
S2_60M = ("B01", "B09")
S2_10M = ("B02", "B03", "B04", "B08")
L8_MS = ("B2", "B3", "B4", "B5")
SKIP_S2SUPER = ""  # set by --skip-s2super
L8_MTF = 0.3  # what dasksr assumes for Landsat (GENERIC_MTF); the data's blur is drawn around it


def raster(values: np.ndarray, transform: Affine, crs: str, names) -> xr.DataArray:
    _n, ny, nx = values.shape
    x = transform.c + (np.arange(nx) + 0.5) * transform.a
    y = transform.f + (np.arange(ny) + 0.5) * transform.e
    data = xr.DataArray(
        values, dims=("band", "y", "x"), coords={"band": list(names), "y": y, "x": x}
    )
    return data.rio.write_transform(transform).rio.write_crs(crs)


def write_tif(path: Path, values: np.ndarray, transform: Affine, crs: str) -> None:
    profile = {
        "driver": "GTiff",
        "height": values.shape[1],
        "width": values.shape[2],
        "count": values.shape[0],
        "dtype": values.dtype.name,
        "transform": transform,
        "crs": crs,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)


def reduced(scene: str, seed: int) -> dict:
    """The Wald pair of a scene, the data's MTF widths drawn around the published ones."""
    rng = np.random.default_rng(seed)
    if scene.startswith("sentinel2"):
        ratio = 6 if scene.endswith("x6") else 2
        names = S2_60M if ratio == 6 else S2_20M
        coarse, ct = read_bands([SENTINEL2_NATIVE[b] for b in names])
        guide, gt = read_bands([SENTINEL2_NATIVE[b] for b in S2_10M])
        gains_c = [SENTINEL2_MTF[b] for b in names]
        gains_g = [SENTINEL2_MTF[b] for b in S2_10M]
        guides, crs = S2_10M, "EPSG:32618"
    else:
        ratio, names, guides = 2, L8_MS, ("B8",)
        coarse, ct = read_bands([LANDSAT8_NATIVE[b] for b in names])
        guide, gt = read_bands([LANDSAT8_NATIVE["B8"]])
        gains_c, gains_g = [L8_MTF] * len(names), [L8_MTF]
        crs = "EPSG:32616"
    jitter_c = rng.uniform(0.8, 1.25, len(names))
    jitter_g = rng.uniform(0.8, 1.25, len(guides))
    pair = wald_pair(
        coarse.astype(np.float64),
        ct,
        guide.astype(np.float64),
        gt,
        ratio,
        [mtf_sigma(g, ratio) * j for g, j in zip(gains_c, jitter_c, strict=True)],
        [mtf_sigma(g, ratio) * j for g, j in zip(gains_g, jitter_g, strict=True)],
    )
    ny, nx = pair["guide"].shape[-2:]
    t = pair["transform"]
    dtype = coarse.dtype
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return {
        "ratio": ratio,
        "names": names,
        "guides": guides,
        "crs": crs,
        "coarse": raster(
            np.clip(np.rint(pair["coarse"]), lo, hi).astype(dtype),
            Affine(t.a * ratio, 0, t.c, 0, t.e * ratio, t.f),
            crs,
            names,
        ),
        "guide": raster(np.clip(np.rint(pair["guide"]), lo, hi).astype(dtype), t, crs, guides),
        "reference": pair["reference"][:, :ny, :nx],
        "jitter": {"coarse": jitter_c.round(3).tolist(), "guide": jitter_g.round(3).tolist()},
    }


def brovey(coarse: xr.DataArray, pan: xr.DataArray, folder: Path) -> tuple[np.ndarray, float]:
    ms_path, pan_path, out = folder / "ms.tif", folder / "pan.tif", folder / "brovey.tif"
    for p in (ms_path, pan_path, out):
        p.unlink(missing_ok=True)
    write_tif(ms_path, coarse.values, coarse.rio.transform(), str(coarse.rio.crs))
    write_tif(pan_path, pan.values, pan.rio.transform(), str(pan.rio.crs))
    seconds = gdal_brovey(pan_path, ms_path, out, threads=os.cpu_count() or 1, warn_extent=False)
    with rasterio.open(out) as src:
        return src.read(), seconds


def pan_of(guide: xr.DataArray) -> xr.DataArray:
    """A one-band pan for Brovey: the guide itself, or the mean of several guide bands."""
    if guide.shape[0] == 1:
        return guide
    mean = np.rint(guide.values.astype(np.float64).mean(axis=0, keepdims=True)).astype(guide.dtype)
    return raster(mean, guide.rio.transform(), str(guide.rio.crs), ["pan"])


def figures(estimate: np.ndarray, reference: np.ndarray, ratio: int, rows: slice) -> dict:
    est = estimate[:, rows].astype(np.float64)
    ref = reference[:, rows].astype(np.float64)
    rmse = metrics.band_rmse(ref, est)
    return {
        "rmse": rmse.round(2).tolist(),
        "rmse_mean": round(float(rmse.mean()), 3),
        "sre": metrics.sre(ref, est).round(2).tolist(),
        "sre_mean": round(float(metrics.sre(ref, est).mean()), 3),
        "sam": round(float(metrics.sam(ref, est)), 4),
        "ergas": round(float(metrics.ergas(ref, est, ratio)), 4),
        "q2n": round(float(metrics.q2n(ref, est)), 4),
    }


def quality(seed: int, folder: Path) -> dict:
    out = {}
    for scene in ("sentinel2_x2", "sentinel2_x6", "landsat8_x2"):
        case = reduced(scene, seed)
        coarse, guide, ratio = case["coarse"], case["guide"], case["ratio"]
        ny = guide.shape[1]
        rows = slice(split_row(ny), ny)
        estimates = {
            "bicubic": dasksr.upscale(coarse, scale=ratio, method="bicubic").values,
            "glp": dasksr.sharpen(coarse, guide, method="glp").values,
        }
        if scene.startswith("sentinel2"):
            estimates["cnn-s2"] = dasksr.sharpen(coarse, guide, method="cnn-s2").values
        estimates["gdal brovey"], _ = brovey(coarse, pan_of(guide), folder)
        if scene == "sentinel2_x2":
            status = SKIP_S2SUPER or s2super_status()
            if status == "available":
                h, w = (ny // 2) * 2, (guide.shape[2] // 2) * 2
                result, _ = run_s2super(
                    {b: guide.sel(band=b).values[:h, :w] for b in ("B02", "B03", "B04", "B08")},
                    {b: coarse.sel(band=b).values[: h // 2, : w // 2] for b in S2_20M},
                )
                full = estimates["bicubic"].copy()
                for i, b in enumerate(S2_20M):
                    full[i, :h, :w] = result[b]
                estimates["s2super"] = full
            else:
                out.setdefault("notes", {})["s2super"] = status
        table = {}
        for name, est in estimates.items():
            table[name] = figures(est, case["reference"], ratio, rows)
        base = table["bicubic"]
        for row in table.values():
            row["rmse_vs_bicubic"] = round(row["rmse_mean"] / base["rmse_mean"], 3)
            row["ergas_vs_bicubic"] = round(row["ergas"] / base["ergas"], 3)
        out[scene] = {"bands": list(case["names"]), "jitter": case["jitter"], "methods": table}
    out["full_resolution"] = full_resolution(folder)
    return out


def full_resolution(folder: Path) -> dict:
    """QNR on the native products (held-out rows), the guide MTF-degraded for D_s."""
    out = {}
    for scene in ("sentinel2_x2", "landsat8_x2"):
        if scene.startswith("sentinel2"):
            coarse, ct = read_bands([SENTINEL2_NATIVE[b] for b in S2_20M])
            guide, gt = read_bands([SENTINEL2_NATIVE[b] for b in S2_10M])
            names, guides, crs = S2_20M, S2_10M, "EPSG:32618"
            gains = [SENTINEL2_MTF[b] for b in S2_10M]
        else:
            coarse, ct = read_bands([LANDSAT8_NATIVE[b] for b in L8_MS])
            guide, gt = read_bands([LANDSAT8_NATIVE["B8"]])
            names, guides, crs, gains = L8_MS, ("B8",), "EPSG:32616", [L8_MTF]
        # The guide at the coarse pixels' centres (its MTF), on the coarse grid: D_s's reference.
        pair = wald_pair(
            coarse.astype(float),
            ct,
            guide.astype(float),
            gt,
            2,
            [1.0] * len(names),
            [mtf_sigma(g, 2) for g in gains],
        )
        t = pair["transform"]
        kept = pair["reference"].astype(coarse.dtype)
        cdata = raster(kept, t, crs, names)
        # The guide cut to the kept coarse pixels' footprint (Landsat's pan, half a pan pixel off
        # the MS grid, to the pan pixels whose centres fall in it: both stay on their own grids).
        fx, fy = (t.c - gt.c) / gt.a, (t.f - gt.f) / gt.e
        gx, gy = int(np.ceil(fx - 1e-9)), int(np.ceil(fy - 1e-9))
        cut = guide[:, gy : gy + 2 * kept.shape[1], gx : gx + 2 * kept.shape[2]]
        origin = Affine(gt.a, 0, gt.c + gx * gt.a, 0, gt.e, gt.f + gy * gt.e)
        gdata = raster(cut, origin, crs, guides)
        aligned = abs(fx - gx) < 1e-6 and abs(fy - gy) < 1e-6
        estimates = {
            "bicubic": dasksr.upscale(cdata, scale=2, method="bicubic").values,
            "glp": dasksr.sharpen(cdata, gdata, method="glp").values,
        }
        if scene.startswith("sentinel2"):
            estimates["cnn-s2"] = dasksr.sharpen(cdata, gdata, method="cnn-s2").values
        # GDAL 3.6 ignores a sub-pixel offset between pan and MS (sharpen_peers.py): on
        # Landsat its result is half a pan pixel off; it is shown, marked.
        brovey_name = "gdal brovey" if aligned else "gdal brovey (half a pixel off)"
        estimates[brovey_name], _ = brovey(cdata, pan_of(gdata), folder)
        rows_c = slice(split_row(kept.shape[1]), kept.shape[1])
        rows_f = slice(2 * rows_c.start, 2 * kept.shape[1])
        table = {}
        for name, est in estimates.items():
            fused = est[:, rows_f, : 2 * kept.shape[2]].astype(float)
            g = gdata.values[:, rows_f, : 2 * kept.shape[2]].astype(float)
            result = metrics.qnr(
                fused,
                kept[:, rows_c].astype(float),
                g,
                2,
                degraded_guide=pair["guide"][:, rows_c],
            )
            table[name] = {k: round(float(v), 4) for k, v in result.items()}
        out[scene] = table
    return out


def _median_run(command: list[str], repeats: int, env: dict | None = None) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(repeats: int, folder: Path) -> dict:
    coarse = [str(dasksr.data.require_path(*SENTINEL2_NATIVE[b])) for b in S2_20M]
    guide = [str(dasksr.data.require_path(*SENTINEL2_NATIVE[b])) for b in S2_10M]
    with rasterio.open(guide[0]) as src:
        pixels = len(S2_20M) * src.width * src.height
    dasksr_exe = str(Path(sys.executable).with_name("dasksr"))
    out = {"output_pixels": pixels}
    for method in ("glp", "cnn-s2"):
        target = folder / f"{method}.tif"
        cmd = [
            dasksr_exe,
            "sharpen",
            *coarse,
            "--guide",
            *guide,
            str(target),
            "-m",
            method,
            "--overwrite",
            "--no-progress",
        ]
        out[method] = round(pixels / 1e6 / _median_run(cmd, repeats), 2)
    times = []
    ms_vrt = folder / "ms.vrt"
    subprocess.run(
        ["gdalbuildvrt", "-q", "-separate", "-overwrite", str(ms_vrt), *coarse], check=True
    )
    b08 = guide[3]
    for _ in range(repeats):
        target = folder / "brovey_speed.tif"
        target.unlink(missing_ok=True)
        times.append(
            gdal_brovey(b08, ms_vrt, target, threads=os.cpu_count() or 1, warn_extent=False)
        )
    out["gdal brovey"] = round(pixels / 1e6 / statistics.median(times), 2)
    out["glp_vs_gdal"] = round(out["glp"] / out["gdal brovey"], 3)
    out["network"] = network_rate(repeats)
    return out


def network_rate(repeats: int) -> dict:
    """The x2 network's multiply-adds per second against NumPy's float32 matrix product."""
    from dasksr.models import GuidedNetwork, guided_records

    record = guided_records()[2]
    network = GuidedNetwork(record)
    arch = record.record["architecture"]
    planes = (
        np.random.default_rng(0)
        .uniform(0, 3000, (arch["inputs"], 1024 + 2 * network.layers, 1024 + 2 * network.layers))
        .astype(np.float32)
    )
    network(planes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        network(planes)
        times.append(time.perf_counter() - start)
    macs = record.record["macs_per_fine_pixel"] * 1024 * 1024
    network_gmacs = macs / statistics.median(times) / 1e9
    a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    matmul_gmacs = 2048**3 / statistics.median(times) / 1e9
    return {
        "network_gmac_per_s": round(network_gmacs, 2),
        "matmul_gmac_per_s": round(matmul_gmacs, 2),
        "fraction": round(network_gmacs / matmul_gmacs, 3),
    }


def print_quality(result: dict) -> None:
    for scene, block in result.items():
        if scene in ("full_resolution", "notes"):
            continue
        print(f"\n{scene}: Wald protocol, held-out 40 %, bands {', '.join(block['bands'])}")
        print(
            f"{'method':<14}{'RMSE':>9}{'x bicubic':>11}{'SRE dB':>9}{'SAM':>8}{'ERGAS':>8}"
            f"{'x bic.':>8}{'Q2n':>8}   RMSE per band"
        )
        for name, row in block["methods"].items():
            print(
                f"{name:<14}{row['rmse_mean']:>9.2f}{row['rmse_vs_bicubic']:>11.3f}"
                f"{row['sre_mean']:>9.2f}{row['sam']:>8.3f}{row['ergas']:>8.3f}"
                f"{row['ergas_vs_bicubic']:>8.3f}{row['q2n']:>8.4f}   {row['rmse']}"
            )
    print("\nfull resolution, held-out 40 %: QNR (D_lambda, D_s)")
    for scene, table in result["full_resolution"].items():
        for name, row in table.items():
            if isinstance(row, dict):
                print(
                    f"{scene:<14}{name:<14}{row['qnr']:>8.4f} ({row['d_lambda']:.4f}, "
                    f"{row['d_s']:.4f})"
                )
            else:
                print(f"{scene:<14}{row}")
    for name, note in result.get("notes", {}).items():
        print(f"{name}: {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--skip-s2super", metavar="REASON", default="", help="do not run s2super; say why"
    )
    args = ap.parse_args()
    global SKIP_S2SUPER
    SKIP_S2SUPER = args.skip_s2super
    if not (args.quality or args.speed):
        args.quality = True
    result = {}
    with tempfile.TemporaryDirectory(prefix="dasksr_sharpen_") as tmp:
        folder = Path(tmp)
        if args.quality:
            result["quality"] = quality(args.seed, folder)
            print_quality(result["quality"])
        if args.speed:
            result["speed"] = speed(args.repeats, folder)
            s = result["speed"]
            print(
                f"\nspeed, whole native Sentinel-2 scene, six 20 m bands to 10 m "
                f"({s['output_pixels'] / 1e6:.1f} MPix out), process start included, "
                f"median of {args.repeats}: output MPix/s"
            )
            for name in ("glp", "cnn-s2", "gdal brovey"):
                print(f"  {name:<14}{s[name]:>8.2f}")
            print(f"  glp / gdal brovey: {s['glp_vs_gdal']:.3f}")
            n = s["network"]
            print(
                f"  cnn-s2 network: {n['network_gmac_per_s']} GMAC/s, float32 matmul "
                f"{n['matmul_gmac_per_s']} GMAC/s: {n['fraction']:.0%}"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
