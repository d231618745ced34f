"""Grid maths of an upscale, pure and separate: shapes, transforms and pixel-centre coordinates.

Pixel-is-area: fine pixel ``j`` (0-based) has its centre at coarse pixel coordinate
``(j + 0.5) / scale - 0.5``. The bounds of the raster do not change.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

__all__ = ["fine_coordinate", "fine_positions", "fine_transform", "format_number", "pixel_centres"]


def fine_transform(transform: Affine, scale: int) -> Affine:
    """Affine transform of the fine grid: ``transform @ Affine.scale(1 / scale)``, exactly.

    The origin is the coarse one, untouched; the pixel sizes (and any rotation terms) are divided
    by the scale. Rotated transforms are scaled the same way.
    """
    return transform @ Affine.scale(1.0 / scale)


def fine_positions(n: int, scale: int) -> np.ndarray:
    """Centres of the ``n * scale`` fine pixels in coarse pixel-index units."""
    return (np.arange(n * scale, dtype=np.float64) + 0.5) / scale - 0.5


def fine_coordinate(coords: np.ndarray, scale: int, step: float | None = None) -> np.ndarray:
    """Fine pixel-centre coordinates from the coarse centres ``coords`` of a regular axis.

    ``step`` is the coarse spacing; it is taken from ``coords`` when there are two or more.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.size >= 2:
        step = (coords[-1] - coords[0]) / (coords.size - 1)
    elif step is None:
        step = 1.0
    return coords[0] + fine_positions(coords.size, scale) * step


def pixel_centres(origin: float, step: float, n: int) -> np.ndarray:
    """The ``n`` pixel centres ``origin + (j + 0.5) * step`` of an axis of a north-up grid.

    The first centre is moved by at most a few units in the last place so that
    ``centres[0] - step / 2 == origin`` exactly: rioxarray (and GDAL-minded readers) recompute
    the transform's origin from the first centre that way, and the origin must stay exact
    (``transform * Affine.scale(1 / s)``), not become 101984.99999999999.

    Examples
    --------
    >>> c = pixel_centres(101985.0, 300.0379266750948 / 2, 3)
    >>> float(c[0] - (300.0379266750948 / 2) / 2.0)
    101985.0
    """
    centres = origin + (np.arange(n, dtype=np.float64) + 0.5) * step
    if n:
        first = centres[0]
        for _ in range(8):
            error = (first - step / 2.0) - origin
            if error == 0:
                break
            first = np.nextafter(first, -np.inf if error > 0 else np.inf)
        if (first - step / 2.0) == origin:
            centres[0] = first
    return centres


def format_number(value: float) -> str:
    """A coordinate as Python writes it back exactly (``%g`` shows 5000047.5 as 5.00005e+06)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
