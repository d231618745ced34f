"""The shared scenes that training, the benchmarks and the tests use, and the one train/test split.

Pure facts and small readers: which files of the shared data (``dasksr.data``) are the Sentinel-2,
Landsat and aerial scenes, their bands, which of their zeros are fill, and the spatial split that
keeps the evaluation's pixels out of training. Every scene is split alike: the top
`TRAIN_FRACTION` of its rows may be trained on (`train_rows`), the rest is held out for evaluation
(`test_rows`).
"""

from __future__ import annotations

from typing import Any, Literal

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
    "VALIDATION_FRACTION",
    "fit_rows",
    "load_scene",
    "native_training_files",
    "read_file",
    "scene_files",
    "split_row",
    "test_rows",
    "train_rows",
    "validation_rows",
    "zero_is_fill",
]

#: The fraction of each scene's rows, from the top, that training may see.
TRAIN_FRACTION = 0.6
#: The last part of those rows that a training run keeps for validation instead (the native
#: scenes' validation rows, `validation_rows`): rows ``0.45 H`` to ``0.6 H``.
VALIDATION_FRACTION = 0.15

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
    with ``more``), in table order; `NATIVE_SCENES` by name."""
    table = {**SCENES, **MORE_SCENES, **native_scenes()}
    chosen = names or (list(SCENES) + (list(MORE_SCENES) if more else []))
    return [f for name in chosen for f in table[name]]


def split_row(height: int) -> int:
    """The first held-out row of a scene ``height`` rows high."""
    return int(height * TRAIN_FRACTION)


def train_rows(height: int) -> slice:
    """The rows that training may see: the top `TRAIN_FRACTION` of them."""
    return slice(0, split_row(height))


def fit_rows(height: int) -> slice:
    """The training rows a run fits on when it validates on the same scene: the top
    ``TRAIN_FRACTION - VALIDATION_FRACTION`` of them."""
    return slice(0, int(height * (TRAIN_FRACTION - VALIDATION_FRACTION)))


def validation_rows(height: int) -> slice:
    """The training rows kept for validation (choosing checkpoints and recipes), between
    `fit_rows` and `test_rows`."""
    return slice(fit_rows(height).stop, split_row(height))


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


_S2_NATIVE = "sentinel2_l1c_18SVG_20160112_native"
_L8_NATIVE = "landsat8_l1t_020039_20150804_native"

#: The native Sentinel-2 L1C scene's bands (10, 20 and 60 m; uint16 DN, no fill), by band name.
SENTINEL2_NATIVE: dict[str, File] = {
    b: ("rasters", _S2_NATIVE, f"{b}.tif")
    for b in (
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    )
}
#: The native Landsat 8 L1T scene's bands (pan B8 at 15 m, the others at 30 m), by band name.
LANDSAT8_NATIVE: dict[str, File] = {
    f"B{i}": ("rasters", _L8_NATIVE, f"B{i}.tif") for i in range(1, 12)
}


def read_bands(files: list[File]) -> tuple[np.ndarray, Any]:
    """Single-band files stacked ``(band, y, x)`` in their dtype, and the first one's transform."""
    import rasterio

    planes, transform = [], None
    for parts in files:
        with rasterio.open(require_path(*parts)) as src:
            planes.append(src.read(1))
            transform = src.transform if transform is None else transform
    return np.stack(planes), transform


def wald_pair(
    coarse: np.ndarray,
    coarse_transform: Any,
    guide: np.ndarray,
    guide_transform: Any,
    ratio: int,
    coarse_sigmas: list[float],
    guide_sigmas: list[float],
) -> dict[str, Any]:
    """Wald's reduced-resolution pair of a coarse/guide product, on the coarse grid.

    The guide is filtered by Gaussian MTFs (``guide_sigmas``, guide pixels) and sampled at the
    centres of the coarse pixels, wherever the two grids' origins lie (Landsat's pan is half a pan
    pixel off the multispectral grid): the reduced guide is on the coarse grid. The coarse bands
    are filtered (``coarse_sigmas``, coarse pixels times ``ratio``) and sampled ``ratio`` times
    coarser on their own grid. The original coarse bands are the reference. Only the coarse
    pixels whose footprint lies inside the guide are kept, in whole ``ratio x ratio`` groups;
    ``offset`` (where the reduced coarse grid starts on the reduced guide's, in its pixels) is
    ``(0, 0)``. ``transform`` is the reduced guide's (the kept coarse pixels').
    """
    from affine import Affine

    from dasksr.kernels.sharpen import down_taps, wald_degrade

    origin = (
        (coarse_transform.f - guide_transform.f) / guide_transform.e,
        (coarse_transform.c - guide_transform.c) / guide_transform.a,
    )
    first, counts = [], []
    for o, n_guide, n_coarse in zip(origin, guide.shape[-2:], coarse.shape[-2:], strict=True):
        j0 = max(0, int(np.ceil(-o / ratio - 1e-9)))
        j1 = min(n_coarse, int(np.floor((n_guide - o) / ratio + 1e-9)))
        first.append(j0)
        counts.append((j1 - j0) // ratio * ratio)
    (y0, x0), (ny, nx) = first, counts
    kept = coarse[:, y0 : y0 + ny, x0 : x0 + nx].astype(np.float64)
    reduced_guide = np.empty((guide.shape[0], ny, nx))
    for i, sigma in enumerate(guide_sigmas):
        halo = int(np.ceil(4.0 * sigma)) + ratio + 2
        padded = np.pad(guide[i].astype(np.float64), halo, mode="symmetric")
        taps = [
            down_taps(n, ratio, o + j * ratio, sigma)
            for n, o, j in zip((ny, nx), origin, (y0, x0), strict=True)
        ]
        rows = _apply(padded, taps[0], -2, halo)
        reduced_guide[i] = _apply(rows, taps[1], -1, halo)
    t = coarse_transform
    return {
        "coarse": wald_degrade(kept, coarse_sigmas, ratio),
        "guide": reduced_guide,
        "reference": kept,
        "offset": (0.0, 0.0),
        "transform": Affine(t.a, 0, t.c + x0 * t.a, 0, t.e, t.f + y0 * t.e),
    }


def _apply(values: np.ndarray, taps: Any, axis: int, shift: int) -> np.ndarray:
    from dasksr.kernels.sharpen import apply_taps

    return apply_taps(values, taps, axis, shift)


#: Sentinel-2 MSI's MTF at Nyquist, per band (Ulfarsson et al., "Sentinel-2 sharpening using a
#: reduced-rank method", IEEE TGRS 2019, from ESA's data quality reports).
SENTINEL2_MTF = {
    "B01": 0.32,
    "B02": 0.26,
    "B03": 0.28,
    "B04": 0.24,
    "B05": 0.38,
    "B06": 0.34,
    "B07": 0.34,
    "B08": 0.26,
    "B8A": 0.33,
    "B09": 0.26,
    "B10": 0.26,
    "B11": 0.22,
    "B12": 0.23,
}


def sentinel2_native_pair(
    coarse_bands: tuple[str, ...], guide_bands: tuple[str, ...], ratio: int, jitter: float = 1.0
) -> dict[str, Any]:
    """`wald_pair` of the native Sentinel-2 scene: the published MTFs' Gaussians, their widths
    times ``jitter`` (the data's blur, which the methods do not know); ``coarse_mtf`` holds the
    published gains (what the methods know)."""
    from dasksr.kernels.sharpen import mtf_sigma

    coarse, ct = read_bands([SENTINEL2_NATIVE[b] for b in coarse_bands])
    guide, gt = read_bands([SENTINEL2_NATIVE[b] for b in guide_bands])
    pair = wald_pair(
        coarse.astype(np.float64),
        ct,
        guide.astype(np.float64),
        gt,
        ratio,
        [mtf_sigma(SENTINEL2_MTF[b], ratio) * jitter for b in coarse_bands],
        [mtf_sigma(SENTINEL2_MTF[b], ratio) * jitter for b in guide_bands],
    )
    pair["coarse_mtf"] = [SENTINEL2_MTF[b] for b in coarse_bands]
    return pair


def native_scenes() -> dict[str, tuple[File, ...]]:
    """The native-resolution scenes the sensor evaluation scores (`dasksr.sensor`), by name:
    Sentinel-2 L1C 18SVG's 10 m bands and its B8A (20 m), and Landsat 8's 15 m pan. Their held-out
    rows are the bottom 40 %, as for every scene; the shipped ``cnn-sensor`` weights read none of
    their rows (see their records' training data)."""
    return {
        "sentinel2_native_B02-B08": tuple(
            SENTINEL2_NATIVE[b] for b in ("B02", "B03", "B04", "B08")
        ),
        "sentinel2_native_B8A": (SENTINEL2_NATIVE["B8A"],),
        "landsat8_native_B8_pan": (LANDSAT8_NATIVE["B8"],),
    }


def native_training_files() -> dict[str, tuple[File, ...]]:
    """The native scenes' bands a sensor model may train on (their `fit_rows`), by name: every
    10 m and 20 m Sentinel-2 band and Landsat 8's pan and 30 m reflective bands. Their
    `validation_rows` validate, their `test_rows` are `native_scenes`' evaluation."""
    return {
        "sentinel2_native_10m": tuple(SENTINEL2_NATIVE[b] for b in ("B02", "B03", "B04", "B08")),
        "sentinel2_native_20m": tuple(
            SENTINEL2_NATIVE[b] for b in ("B05", "B06", "B07", "B8A", "B11", "B12")
        ),
        "landsat8_native_pan": (LANDSAT8_NATIVE["B8"],),
        "landsat8_native_30m": tuple(LANDSAT8_NATIVE[f"B{i}"] for i in range(1, 8)),
    }
