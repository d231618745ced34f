"""Choose NumPy or CuPy from an array, without importing CuPy unless the array is a CuPy one."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["array_namespace"]


def array_namespace(array: Any) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) that owns ``array`` or a dask array's meta."""
    meta = getattr(array, "_meta", array)
    module = type(meta).__module__.split(".")[0]
    if module == "cupy":
        import cupy  # loaded lazily: CuPy is optional

        return cupy
    return np
