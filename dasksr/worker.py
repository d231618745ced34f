"""What the embedded cluster's worker processes load before their first task.

The fork server that the worker processes are forked from imports this module once
(:data:`dasksr.cluster.WORKER_PRELOAD`): the readers and writers, and the compiled kernels loaded
from their on-disk cache (0.45 s a process otherwise, in its first task).
"""

from __future__ import annotations

import numpy as np
import rasterio  # noqa: F401  (GDAL and its drivers)
import zarr  # noqa: F401

import dasksr.blockwise
import dasksr.io  # noqa: F401  (with dasksr.blockwise: the modules a task runs)
from dasksr.kernels.loops import polyphase_rows

__all__: list[str] = []


def _warm_up() -> None:
    """Load the compiled polyphase kernel for the float32 working dtype (the common case)."""
    weights = np.full((2, 5), 0.2, np.float32)
    polyphase_rows(np.zeros((8, 8), np.float32), weights)
    polyphase_rows(np.zeros((8, 8), np.float32), weights, np.empty((8, 8), np.uint16), (0, 1))


_warm_up()
