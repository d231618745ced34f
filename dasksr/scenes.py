"""The shared scenes that training, the benchmarks and the tests use, and the one train/test split.

Pure facts and small readers: which files of the shared data (``dasksr.data``) are the Sentinel-2,
Landsat and aerial scenes, their bands, which of their zeros are fill, and the spatial split that
keeps the evaluation's pixels out of training. Every scene is split alike: the top
`TRAIN_FRACTION` of its rows may be trained on (`train_rows`), the rest is held out for evaluation
(`test_rows`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dasksr.data import require_path

__all__ = [
    "AERIAL",
    "LANDSAT7_RGB",
    "LANDSAT8_MS",
    "LANDSAT8_PAN",
    "LANDSAT8_PAN_INSIDE",
    "MORE_SCENES",
    "SCENES",
    "SENTINEL2",
    "TRAIN_FRACTION",
    "load_scene",
    "read_file",
    "scene_files",
    "split_row",
    "test_rows",
    "train_rows",
    "zero_is_fill",
]

#: The fraction of each scene's rows, from the top, that training may see.
TRAIN_FRACTION = 0.6

#: A shared raster file: its parts under the shared data folder.
File = tuple[str, ...]

_S2 = "sentinel2_l2a_29RKH_20200219"
_L8 = "landsat8_l1tp_016037_20170813_pan_ms"
_L8_FILE = "LC08_L1TP_016037_20170813_20170814_01_RT_B{}.TIF"

#: Sentinel-2 L2A, the 10 m bands B02, B03, B04, B08 (uint16, 0 = fill).
SENTINEL2: tuple[File, ...] = tuple(("rasters", _S2, f"B0{b}.tif") for b in (2, 3, 4, 8))
#: Landsat 8 panchromatic band B8 (uint16, tilted scene with 0-fill at its edges).
LANDSAT8_PAN: File = ("rasters", _L8, _L8_FILE.format(8))
#: Landsat 8 multispectral bands B2, B3, B4 of the pan band's scene (uint16, 0 = fill).
LANDSAT8_MS: tuple[File, ...] = tuple(("rasters", _L8, _L8_FILE.format(b)) for b in (2, 3, 4))
#: The pan scene's (y, x) window free of fill (it has ~30 % zero fill at its edges).
LANDSAT8_PAN_INSIDE = (slice(100, 420), slice(100, 420))
#: The HRO aerial tile over Colorado, 0.15 m, RGB (uint8, no fill).
AERIAL: File = (
    "rasters",
    "aerial_hro_colorado_0p15m",
    "201404_13SED190110_201404_0x1500m_CL_1.tif",
)
#: Landsat 7 RGB (uint8 with a declared nodata of 0): trained on, never evaluated.
LANDSAT7_RGB: File = ("rasters", "landsat7_rgb_byte", "RGB.byte.tif")

#: The evaluated scenes by name (``benchmarks/sensor_eval.py``), each its files in band order;
#: also the scenes that the sensor model trains on (their training rows).
SCENES: dict[str, tuple[File, ...]] = {
    "sentinel2_B02-B08": SENTINEL2,
    "landsat8_B8_pan": (LANDSAT8_PAN,),
    "aerial_hro": (AERIAL,),
}
#: More scenes that training may add (``training/train.py --more-scenes``); no evaluation scores
#: them.
MORE_SCENES: dict[str, tuple[File, ...]] = {
    "landsat8_B2-B4": LANDSAT8_MS,
    "landsat7_rgb": (LANDSAT7_RGB,),
}


def scene_files(*names: str, more: bool = False) -> list[File]:
    """The files of the scenes ``names`` (default: every scene of `SCENES`, and of `MORE_SCENES`
    with ``more``), in table order."""
    table = {**SCENES, **MORE_SCENES}
    chosen = names or (list(SCENES) + (list(MORE_SCENES) if more else []))
    return [f for name in chosen for f in table[name]]


def split_row(height: int) -> int:
    """The first held-out row of a scene ``height`` rows high."""
    return int(height * TRAIN_FRACTION)


def train_rows(height: int) -> slice:
    """The rows that training may see: the top `TRAIN_FRACTION` of them."""
    return slice(0, split_row(height))


def test_rows(height: int) -> slice:
    """The held-out rows, the evaluation's: all below `train_rows`."""
    return slice(split_row(height), height)


test_rows.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


def zero_is_fill(dtype: np.dtype | type, nodata: float | None) -> bool:
    """Whether a scene's zeros are fill: always for wider than 8-bit scenes (their sensors never
    record 0), for uint8 scenes only when they declare a nodata of 0."""
    return np.dtype(dtype) != np.uint8 or nodata == 0


def read_file(parts: File) -> tuple[np.ndarray, float | None]:
    """All of a shared raster, ``(band, y, x)`` in its own dtype, and its declared nodata."""
    import rasterio

    with rasterio.open(require_path(*parts)) as src:
        return src.read(), src.nodata


def load_scene(name: str, part: Literal["train", "test"] = "test") -> np.ndarray:
    """A scene of `SCENES` (or `MORE_SCENES`), the bands of its files stacked, ``(band, y, x)`` in
    its own dtype: its held-out rows (``"test"``) or its training rows (``"train"``)."""
    rows = {"train": train_rows, "test": test_rows}[part]
    planes = []
    for parts in scene_files(name):
        data, _ = read_file(parts)
        planes.append(data[:, rows(data.shape[1])])
    return np.concatenate(planes)
