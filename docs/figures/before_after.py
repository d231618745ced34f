"""Make docs/figures/before_after.png, the README's picture: a real Sentinel-2 scene, before and after.

A zoomed window of the shared Sentinel-2 L2A tile 29RKH (bands B04, B03, B02 at 100 m: the
sample's publisher decimated the 10 m bands x10) as the input pixels, then upscaled with
``bicubic``, ``lanczos`` and, when installed, ``cnn-sensor``, through the ``sr`` accessor on the
lazily opened bands. Needs the shared data (``DASKSR_DATA``); contains modified Copernicus
Sentinel data 2020.

    python docs/figures/before_after.py            # writes docs/figures/before_after.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

import dasksr

HERE = Path(__file__).resolve().parent
SENTINEL2 = ("rasters", "sentinel2_l2a_29RKH_20200219")
#: A dry river bed, bright sand against dark rock: rows 462-542, columns 582-662 of the tile.
WINDOW = {"y": slice(462, 542), "x": slice(582, 662)}
CANDIDATES = ("bicubic", "lanczos", "cnn-sensor")


def panels(scale: int) -> tuple[dict[str, np.ndarray], xr.DataArray]:
    """The window's input pixels and each method's upscaled window, as (band, y, x) arrays."""
    folder = dasksr.data.data_path(*SENTINEL2)
    if folder is None:
        raise SystemExit("the shared Sentinel-2 data is absent: set DASKSR_DATA")
    scene = xr.concat(
        [
            dasksr.open_raster(folder / f"{band}.tif").assign_coords(band=[i])
            for i, band in enumerate(("B04", "B03", "B02"), 1)
        ],
        dim="band",
    )
    window = scene.isel(WINDOW)
    left, bottom, right, top = window.rio.bounds()
    methods = {m.name: m for m in dasksr.list_methods()}
    shown = {"input (100 m pixels)": window.values}
    for name in CANDIDATES:
        if name in methods and scale in methods[name].scales:
            fine = scene.sr.upscale(scale=scale, method=name)
            shown[f"{name} x{scale}"] = fine.sel(x=slice(left, right), y=slice(top, bottom)).values
    return shown, window


def draw(shown: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(shown.values()))
    low, high = np.percentile(first, [1, 99], axis=(1, 2))
    fig, axes = plt.subplots(1, len(shown), figsize=(2.9 * len(shown), 3.2), layout="constrained")
    for ax, (title, pixels) in zip(axes, shown.items(), strict=True):
        stretched = (pixels.astype(np.float32) - low[:, None, None]) / (high - low)[:, None, None]
        ax.imshow(np.dstack(np.clip(stretched, 0, 1)), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "before_after.png")
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args()
    shown, window = panels(args.scale)
    draw(shown, args.out)
    print(f"window {window.sizes['y']} x {window.sizes['x']} px; panels: {', '.join(shown)}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
