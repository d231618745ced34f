"""Grid maths of an upscale, pure and separate: shapes, transforms and pixel-centre coordinates.

Pixel-is-area: fine pixel ``j`` (0-based) has its centre at coarse pixel coordinate
``(j + 0.5) / scale - 0.5``. The bounds of the raster do not change.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

__all__ = ["fine_transform", "fine_positions", "fine_coordinate"]


def fine_transform(transform: Affine, scale: int) -> Affine:
    """Affine transform of the fine grid: ``transform @ Affine.scale(1 / scale)``."""
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
