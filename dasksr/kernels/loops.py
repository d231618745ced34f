"""Compiled loops (Numba) for the separable polyphase kernels on NumPy blocks.

The loops perform exactly the arithmetic of the array-at-a-time path in ``interp`` (which CuPy
blocks use): every output value is ``w[p, k0] * x[k0]``, then ``+ w[p, k] * x[k]`` for each
following non-zero tap in increasing ``k``, each product and sum rounded to the working precision.
Numba does not contract a multiply and an add into one fused operation unless asked to
(``fastmath``), so both paths, and every position in a block, give bit-identical results; the
test suite checks that the two paths agree bit for bit.

The functions are compiled on first use and release the GIL, so that Dask's threads run them in
parallel. The compiled code is cached on disk in :func:`kernel_cache_dir` (``$DASKSR_CACHE_DIR``,
else the user's cache folder), never beside the installed sources: a cache inside
``site-packages/dasksr`` outlives ``pip uninstall`` and the leftover folder would shadow a later
editable install.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "polyphase_rows",
    "gather_taps",
    "blur_decimate_planes",
    "kernel_cache_dir",
    "CACHE_DIR_ENV",
]

#: The environment variable that moves dasksr's cache folder (compiled kernels go to ``numba/``).
CACHE_DIR_ENV = "DASKSR_CACHE_DIR"


def kernel_cache_dir() -> Path:
    """The folder of dasksr's on-disk caches: ``$DASKSR_CACHE_DIR``, else the user cache folder.

    The default is ``$XDG_CACHE_HOME/dasksr`` (``~/.cache/dasksr``) on Linux,
    ``~/Library/Caches/dasksr`` on macOS and ``%LOCALAPPDATA%\\dasksr`` on Windows.
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "dasksr"


def _writable_folder(folder: Path) -> Path | None:
    """``folder``, created if needed, or None when it cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return None
    return folder


def _compiled(**options: Any) -> Callable[[Any], Any]:
    """``numba.njit(**options)`` with its on-disk cache in ``kernel_cache_dir() / 'numba'``.

    Numba picks a function's cache folder when the function is decorated; ``numba.config.CACHE_DIR``
    is set for that moment only, so the user's other Numba functions keep their own cache place.
    When the folder is not writable the kernels are compiled in each process and cached nowhere:
    numba would otherwise fall back to the package's own ``__pycache__``.
    """

    import numba

    def decorate(function: Any) -> Any:
        folder = _writable_folder(kernel_cache_dir() / "numba")
        if folder is None:
            return numba.njit(**options)(function)
        config: Any = numba.config  # its settings are made at run time, unknown to type checkers
        previous = config.CACHE_DIR
        config.CACHE_DIR = str(folder)
        try:
            return numba.njit(cache=True, **options)(function)
        finally:
            config.CACHE_DIR = previous

    return decorate


def _polyphase_rows(
    rows: Any, weights: Any, out: Any, rounding: bool, low: float, high: float
) -> None:  # pragma: no cover - compiled
    scale, ntaps = weights.shape
    halo = (ntaps - 1) // 2
    padded_rows, padded_cols = rows.shape
    n = padded_rows - 2 * halo
    nx = padded_cols - 2 * halo
    width = nx * scale
    across = np.empty((padded_rows, width), dtype=rows.dtype)
    acc = np.empty(max(nx, width), dtype=rows.dtype)
    # Along x: each phase is summed over the taps in a contiguous buffer, then interleaved.
    for r in range(padded_rows):
        src = rows[r]
        dst = across[r]
        for p in range(scale):
            first = True
            for k in range(ntaps):
                w = weights[p, k]
                if w == 0:
                    continue
                if first:
                    for i in range(nx):
                        acc[i] = src[i + k] * w
                    first = False
                else:
                    for i in range(nx):
                        acc[i] = acc[i] + src[i + k] * w
            for i in range(nx):
                dst[i * scale + p] = acc[i]
    # Along y: every fine row is a weighted sum of whole rows of ``across``, summed in place when
    # ``out`` holds floats, or in ``acc`` and then rounded and clipped into ``out``'s integers.
    for i in range(n):
        for p in range(scale):
            if rounding:
                _sum_rows(across, i, weights[p], acc)
                dst = out[i * scale + p]
                for c in range(width):
                    dst[c] = min(max(np.rint(acc[c]), low), high)
            else:
                _sum_rows(across, i, weights[p], out[i * scale + p])


def _sum_rows(rows: Any, first_row: int, weights: Any, dst: Any) -> None:  # pragma: no cover
    """``dst = sum_k weights[k] * rows[first_row + k]`` over the non-zero taps, in order."""
    first = True
    for k in range(weights.shape[0]):
        w = weights[k]
        if w == 0:
            continue
        src = rows[first_row + k]
        if first:
            for c in range(dst.shape[0]):
                dst[c] = src[c] * w
            first = False
        else:
            for c in range(dst.shape[0]):
                dst[c] = dst[c] + src[c] * w


def polyphase_rows(
    rows: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray | None = None,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """Separable polyphase upsampling of one padded 2-D strip ``rows`` with ``weights``.

    ``weights`` has shape ``(scale, 2 * halo + 1)`` in the working dtype; ``rows`` carries ``halo``
    pixels of padding on each side and is converted to that dtype. The fine strip is written into
    ``out`` (default: a new array in the working dtype). When ``out`` holds integers, each value is
    rounded half to even and clipped to ``clip = (low, high)`` before the cast, as
    :func:`dasksr.kernels.values.finalize` does.
    """
    scale, ntaps = weights.shape
    halo = (ntaps - 1) // 2
    rows = np.ascontiguousarray(rows, dtype=weights.dtype)
    n, nx = rows.shape[0] - 2 * halo, rows.shape[1] - 2 * halo
    if out is None:
        out = np.empty((n * scale, nx * scale), dtype=weights.dtype)
    if out.shape != (n * scale, nx * scale):
        raise ValueError(f"out has shape {out.shape}, expected {(n * scale, nx * scale)}")
    rounding = out.dtype.kind in "iu"
    if rounding and clip is None:
        raise ValueError("integer output needs a clip range")
    low, high = clip if clip is not None else (0.0, 0.0)
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    _kernel()(rows, np.ascontiguousarray(weights), out, rounding, low, high)
    return out


_kernel_lock = threading.Lock()
_kernel_compiled: list[Any] = []


def _kernel() -> Any:
    """``_polyphase_rows`` compiled, on first use: importing Numba and loading the cached machine
    code cost about 0.5 s, which a job whose blocks all take the array path never pays."""
    if not _kernel_compiled:
        with _kernel_lock:  # Dask's threads reach here together
            if not _kernel_compiled:
                import numba

                # Numba resolves the inner loop by its global name when it compiles the outer.
                globals()["_sum_rows"] = numba.njit(inline="always")(_sum_rows)
                _kernel_compiled.append(_compiled(nogil=True)(_polyphase_rows))
    return _kernel_compiled[0]


def _gather_taps(values: Any, index: Any, weights: Any, along_rows: bool, out: Any) -> None:
    """``out[.., i, ..] = sum_t weights[i, t] * values[.., index[i, t], ..]`` along the rows or the
    columns of a 2-D array; the first product, then each following one added, in tap order."""
    ntaps = index.shape[1]
    if along_rows:  # pragma: no cover - compiled
        width = values.shape[1]
        for i in range(index.shape[0]):
            dst = out[i]
            src = values[index[i, 0]]
            w = weights[i, 0]
            for c in range(width):
                dst[c] = src[c] * w
            for t in range(1, ntaps):
                src = values[index[i, t]]
                w = weights[i, t]
                for c in range(width):
                    dst[c] = dst[c] + src[c] * w
    else:  # pragma: no cover - compiled
        for r in range(values.shape[0]):
            src = values[r]
            dst = out[r]
            for i in range(index.shape[0]):
                acc = src[index[i, 0]] * weights[i, 0]
                for t in range(1, ntaps):
                    acc = acc + src[index[i, t]] * weights[i, t]
                dst[i] = acc


_gather_compiled: list[Any] = []


def gather_taps(
    values: np.ndarray, index: np.ndarray, weights: np.ndarray, axis: int
) -> np.ndarray:
    """Per-position taps along ``axis`` (-1 or -2) of a NumPy array of two or more dimensions:
    output position ``i`` is ``sum_t weights[i, t] * values[..., index[i, t], ...]``, the first
    product and then each following one added in tap order, each rounded to ``values``' dtype:
    the arithmetic of the array-at-a-time ``apply_taps`` of ``kernels.sharpen``, bit for bit.
    ``index`` must lie inside the axis (the caller checks)."""
    if axis not in (-1, -2):
        raise ValueError(f"taps run along axis -1 or -2, not {axis}")
    if not _gather_compiled:
        with _kernel_lock:
            if not _gather_compiled:
                _gather_compiled.append(_compiled(nogil=True)(_gather_taps))
    kernel = _gather_compiled[0]
    values = np.ascontiguousarray(values)
    index = np.ascontiguousarray(index, dtype=np.int64)
    weights = np.ascontiguousarray(weights, dtype=values.dtype)
    shape = list(values.shape)
    shape[axis] = index.shape[0]
    out = np.empty(shape, dtype=values.dtype)
    planes = values.reshape(-1, *values.shape[-2:])
    for plane, dst in zip(planes, out.reshape(-1, *shape[-2:]), strict=True):
        kernel(plane, index, weights, axis == -2, dst)
    return out


def _blur_decimate_plane(
    values: Any, wy: Any, first_y: int, wx: Any, first_x: int, scale: int, out: Any
) -> None:  # pragma: no cover - compiled
    """One plane of ``blur_decimate_planes``: for each output row, the row taps summed over whole
    input rows into a float64 buffer, then the column taps of that buffer (tap by tap over the
    row); first product, then each following one added, in tap order."""
    ny, nx = out.shape
    width = values.shape[1]
    row = np.empty(width, dtype=np.float64)
    for i in range(ny):
        top = i * scale + first_y
        src = values[top]
        w = wy[0]
        for c in range(width):
            row[c] = np.float64(src[c]) * w
        for t in range(1, wy.shape[0]):
            src = values[top + t]
            w = wy[t]
            for c in range(width):
                row[c] = row[c] + np.float64(src[c]) * w
        dst = out[i]
        w = wx[0]
        for j in range(nx):
            dst[j] = row[j * scale + first_x] * w
        for t in range(1, wx.shape[0]):
            w = wx[t]
            for j in range(nx):
                dst[j] = dst[j] + row[j * scale + first_x + t] * w


_decimate_compiled: list[Any] = []


def blur_decimate_planes(
    values: np.ndarray,
    wy: np.ndarray,
    first_y: int,
    wx: np.ndarray,
    first_x: int,
    scale: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """Separable blur and decimation of the last two axes of a NumPy array, in float64.

    Output pixel ``(i, j)`` of each plane is ``sum_u wx[u] * sum_t wy[t] * values[i * scale +
    first_y + t, j * scale + first_x + u]``: the row taps first (the first product, then each
    following one added), then the column taps the same way, each rounded to float64, as
    ``dasksr.kernels.degrade.blur_decimate``'s array path does. ``values`` is read in its own
    dtype (no float copy of the block); ``shape`` is the output plane's.
    """
    if not _decimate_compiled:
        with _kernel_lock:
            if not _decimate_compiled:
                _decimate_compiled.append(_compiled(nogil=True)(_blur_decimate_plane))
    kernel = _decimate_compiled[0]
    wy = np.ascontiguousarray(wy, dtype=np.float64)
    wx = np.ascontiguousarray(wx, dtype=np.float64)
    out = np.empty((*values.shape[:-2], *shape), dtype=np.float64)
    # Planes are read where they lie: a cropped block (rows not adjacent) is not copied first.
    for lead in np.ndindex(*values.shape[:-2]):
        kernel(values[lead], wy, first_y, wx, first_x, scale, out[lead])
    return out
