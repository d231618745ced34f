"""Make docs/figures/sharpen_crops.png: the 20 m bands of the native Sentinel-2 scene at 10 m.

A window of the held-out part (the bottom 40 %, which training never read) of the shared native
Sentinel-2 L1C scene 18SVG: a false-colour composite of B12, B8A and B05 and the red-edge index
NDRE = (B8A - B05) / (B8A + B05), from the 20 m bands upsampled by ``bicubic``, then sharpened
with the 10 m bands by ``glp`` and ``cnn-s2``; the 10 m true-colour bands for reference. Needs the
shared data (``DASKSR_DATA``). Contains modified Copernicus Sentinel data 2016.

    python docs/figures/sharpen_crops.py      # writes docs/figures/sharpen_crops.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

import dasksr

HERE = Path(__file__).resolve().parent
FOLDER = ("rasters", "sentinel2_l1c_18SVG_20160112_native")
COARSE = ("B05", "B06", "B07", "B8A", "B11", "B12")
GUIDE = ("B02", "B03", "B04", "B08")
#: 160 x 160 guide pixels (1.6 km) of the held-out rows.
WINDOW = {"y": slice(1240, 1400), "x": slice(120, 280)}


def bands(names: tuple[str, ...]) -> xr.DataArray:
    folder = dasksr.data.data_path(*FOLDER)
    if folder is None:
        raise SystemExit("the shared native Sentinel-2 scene is absent: set DASKSR_DATA")
    return xr.concat(
        [dasksr.open_raster(folder / f"{b}.tif").assign_coords(band=[b]) for b in names], "band"
    )


def stretch(rgb: np.ndarray) -> np.ndarray:
    low, high = np.percentile(rgb, (2, 98))
    return np.clip((rgb - low) / (high - low), 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "sharpen_crops.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coarse, guide = bands(COARSE), bands(GUIDE)
    results = {
        "20 m, bicubic": dasksr.upscale(coarse, scale=2, method="bicubic"),
        "glp": dasksr.sharpen(coarse, guide, method="glp"),
        "cnn-s2": dasksr.sharpen(coarse, guide, method="cnn-s2"),
    }
    # The bicubic result lies on the 20 m grid's own 10 m subdivision: put it on the guide's.
    results["20 m, bicubic"] = results["20 m, bicubic"].sel(x=guide.x, y=guide.y, method="nearest")
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    true = guide.sel(band=["B04", "B03", "B02"]).isel(WINDOW).values.astype(float)
    axes[0, 0].imshow(stretch(true.transpose(1, 2, 0)))
    axes[0, 0].set_title("10 m B04 B03 B02 (guide)")
    axes[1, 0].imshow(guide.sel(band="B08").isel(WINDOW).values, cmap="gray")
    axes[1, 0].set_title("10 m B08 (guide)")

    def ndre(window: xr.DataArray) -> np.ndarray:
        b8a, b05 = window.sel(band="B8A").values, window.sel(band="B05").values
        return (b8a - b05) / np.maximum(b8a + b05, 1)

    first = results["20 m, bicubic"].isel(WINDOW).astype(float)
    low, high = np.percentile(ndre(first), (2, 98))
    for col, (name, data) in enumerate(results.items(), start=1):
        window = data.isel(WINDOW).astype(float)
        rgb = window.sel(band=["B12", "B8A", "B05"]).values.transpose(1, 2, 0)
        axes[0, col].imshow(stretch(rgb))
        axes[0, col].set_title(f"B12 B8A B05: {name}")
        axes[1, col].imshow(ndre(window), cmap="RdYlGn", vmin=low, vmax=high)
        axes[1, col].set_title(f"NDRE: {name}")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "Native Sentinel-2 L1C 18SVG (held-out rows): the 20 m bands at 10 m. "
        "Contains modified Copernicus Sentinel data 2016",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
