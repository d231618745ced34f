"""Make docs/figures/sensor_crops.png: what ``cnn-sensor`` does to real pixels, beside bicubic.

Three windows of the held-out rows (the bottom 40 %, which no shipped model read) of the shared
native scenes: Sentinel-2 L1C 18SVG B04 at x2, its B08 at x4 (a harbour's buildings and quays),
and Landsat 8's 15 m pan at x2. Each window is degraded as the sensor evaluation degrades
(``dasksr.degrade_sensor``: Gaussian PSF sigma 0.5 low-resolution pixels, 40 dB noise), then
upscaled by ``bicubic``, ``cnn-sensor`` and ``cnn-sensor-bounded``. Columns: the truth, then the
three methods; the central 96 x 96 output pixels of each, shown 3 times larger (nearest), each row
stretched to the truth's 1st-99th percentiles. The RMSE of each method against the truth (the
whole 192 x 192 window) is printed. Needs the shared data (``DASKSR_DATA``). Contains modified
Copernicus Sentinel data 2016; Landsat 8 courtesy of the U.S. Geological Survey.

    python docs/figures/sensor_crops.py      # writes docs/figures/sensor_crops.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

import dasksr
from dasksr.scenes import LANDSAT8_NATIVE, SENTINEL2_NATIVE, read_file, test_rows

HERE = Path(__file__).resolve().parent
METHODS = ("bicubic", "cnn-sensor", "cnn-sensor-bounded")
#: (label, scene file, first row and column in the held-out rows, scale); 192 x 192 windows.
WINDOWS = (
    ("Sentinel-2 B04, x2", SENTINEL2_NATIVE["B04"], 100, 700, 2),
    ("Sentinel-2 B08, x4", SENTINEL2_NATIVE["B08"], 300, 300, 4),
    ("Landsat 8 pan, x2", LANDSAT8_NATIVE["B8"], 150, 600, 2),
)
SIZE = 192


def window(parts: tuple[str, ...], y0: int, x0: int) -> np.ndarray:
    data, _ = read_file(parts)
    return data[0, test_rows(data.shape[1])][y0 : y0 + SIZE, x0 : x0 + SIZE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "sensor_crops.png")
    args = ap.parse_args()
    from PIL import Image

    rows = []
    for label, parts, y0, x0, scale in WINDOWS:
        truth = window(parts, y0, x0)
        low = dasksr.degrade_sensor(truth.astype(np.float64), scale, sigma=0.5, snr=40, seed=3)
        low = np.clip(np.rint(low), 0, np.iinfo(truth.dtype).max).astype(truth.dtype)
        outs = [truth]
        for method in METHODS:
            up = dasksr.upscale(xr.DataArray(low, dims=("y", "x")), scale=scale, method=method)
            outs.append(np.asarray(up.values))
            rmse = np.sqrt(np.mean((outs[-1].astype(float) - truth.astype(float)) ** 2))
            print(f"{label}: {method} RMSE {rmse:.1f} DN")
        lo, hi = np.percentile(truth, [1, 99])
        tiles = []
        for out in outs:
            shown = np.clip((out.astype(float) - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
            tiles.append(shown[48:144, 48:144].repeat(3, 0).repeat(3, 1))
            tiles.append(np.full((tiles[-1].shape[0], 6), 255, np.uint8))
        rows.append(np.concatenate(tiles[:-1], axis=1))
        rows.append(np.full((6, rows[-1].shape[1]), 255, np.uint8))
    Image.fromarray(np.concatenate(rows[:-1])).save(args.out, optimize=True)
    print(f"wrote {args.out}; columns: truth | {' | '.join(METHODS)}")


if __name__ == "__main__":
    main()
